//! Plots as inline SVG, drawn by plotters. Every point, bar and curve end gets an SVG `<title>`
//! so that hovering shows the exact value without any script.
use plotters::prelude::*;

pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub colour: RGBColor,
    pub dashed: bool,
    /// Hover text per point; empty for none.
    pub hover: Vec<String>,
}

pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub series: Vec<Series>,
    /// A vertical marker (e.g. the best epoch) with its label.
    pub marker: Option<(f64, String)>,
    /// Draw the chance diagonal (ROC).
    pub diagonal: bool,
    pub integer_x: bool,
}

/// Inserts `extra` SVG just before the closing tag.
fn with_overlay(svg: String, extra: &str) -> String {
    match svg.rfind("</svg>") {
        Some(i) => format!("{}{}{}", &svg[..i], extra, &svg[i..]),
        None => svg,
    }
}

pub fn line_chart(c: &LineChart) -> String {
    let (w, h) = (560u32, 360u32);
    let mut svg = String::new();
    let mut overlay = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let mut chart = ChartBuilder::on(&root)
            .caption(c.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(c.x_range.0..c.x_range.1, c.y_range.0..c.y_range.1)
            .expect("valid ranges");
        let integer_x = c.integer_x;
        let small_y = c.y_range.1.abs() < 0.05;
        let _ = chart
            .configure_mesh()
            .x_desc(c.x_label)
            .y_desc(c.y_label)
            .x_labels(if integer_x { ((c.x_range.1 - c.x_range.0) as usize + 1).min(12) } else { 6 })
            .x_label_formatter(&|v| if integer_x { format!("{v:.0}") } else { format!("{v:.1}") })
            .y_label_formatter(&|v| if small_y { format!("{v:.1e}") } else { format!("{v:.2}") })
            .light_line_style(RGBColor(235, 235, 235))
            .draw();
        if c.diagonal {
            let _ = chart.draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                ShapeStyle::from(&RGBColor(170, 170, 170)).stroke_width(1),
            ));
        }
        if let Some((x, label)) = &c.marker {
            let _ = chart
                .draw_series(LineSeries::new([(*x, c.y_range.0), (*x, c.y_range.1)], ShapeStyle::from(&BLACK.mix(0.4)).stroke_width(1)))
                .map(|s| s.label(label.clone()).legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.4))));
        }
        for s in &c.series {
            let style = ShapeStyle::from(&s.colour).stroke_width(if s.dashed { 1 } else { 2 });
            let col = s.colour;
            if let Ok(anno) = chart.draw_series(LineSeries::new(s.points.iter().copied(), style)) {
                anno.label(s.label.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], ShapeStyle::from(&col).stroke_width(2)));
            }
            for (p, text) in s.points.iter().zip(&s.hover) {
                if text.is_empty() {
                    continue;
                }
                let (px, py) = chart.backend_coord(p);
                overlay.push_str(&format!(
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"5\" fill=\"{}\" fill-opacity=\"0.25\" data-series=\"{}\"><title>{}</title></circle>",
                    hex(s.colour),
                    esc(&s.label),
                    esc(text)
                ));
            }
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 11))
            .draw();
        let _ = root.present();
    }
    with_overlay(svg, &overlay)
}

/// A scatter plot: `points` as dots with hover text (`hover[i]`, at most one per point), a
/// reference line from `line.0` to `line.1` (identity, zero) labelled `line_label`, and the axes
/// spanning `x_range` and `y_range`.
pub struct Scatter<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub points: &'a [(f64, f64)],
    pub hover: &'a [String],
    pub line: ((f64, f64), (f64, f64)),
    pub line_label: &'a str,
}

pub fn scatter(c: &Scatter) -> String {
    let (w, h) = (560u32, 420u32);
    let mut svg = String::new();
    let mut overlay = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let mut chart = ChartBuilder::on(&root)
            .caption(c.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(c.x_range.0..c.x_range.1, c.y_range.0..c.y_range.1)
            .expect("valid ranges");
        let _ = chart
            .configure_mesh()
            .x_desc(c.x_label)
            .y_desc(c.y_label)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw();
        let grey = RGBColor(120, 120, 120);
        if let Ok(a) = chart.draw_series(LineSeries::new([c.line.0, c.line.1], ShapeStyle::from(&grey).stroke_width(1))) {
            a.label(c.line_label).legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], grey));
        }
        let dot = colour(0);
        let _ = chart.draw_series(c.points.iter().map(|&p| Circle::new(p, 3, dot.mix(0.55).filled())));
        for (p, text) in c.points.iter().zip(c.hover) {
            let (px, py) = chart.backend_coord(p);
            overlay.push_str(&format!("<circle cx=\"{px}\" cy=\"{py}\" r=\"4\" fill-opacity=\"0\"><title>{}</title></circle>", esc(text)));
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 11))
            .draw();
        let _ = root.present();
    }
    with_overlay(svg, &overlay)
}

/// Side-by-side bars per bin for a few groups (e.g. correct vs wrong), with hover counts.
pub fn histogram(title: &str, x_label: &str, bin_name: &str, bins: &[f64], groups: &[(String, Vec<usize>, RGBColor)]) -> String {
    let (w, h) = (560u32, 320u32);
    let max = groups.iter().flat_map(|g| g.1.iter().copied()).max().unwrap_or(1).max(1) as f64;
    let mut svg = String::new();
    let mut overlay = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(bins[0]..bins[bins.len() - 1], 0.0..max * 1.1)
            .expect("valid ranges");
        let _ = chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc("images")
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw();
        let g = groups.len() as f64;
        for (gi, (label, counts, col)) in groups.iter().enumerate() {
            let col = *col;
            let rects: Vec<_> = counts
                .iter()
                .enumerate()
                .map(|(b, &n)| {
                    let width = (bins[b + 1] - bins[b]) / g;
                    let x0 = bins[b] + width * gi as f64;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.9, n as f64)], col.mix(0.8).filled())
                })
                .collect();
            if let Ok(a) = chart.draw_series(rects) {
                a.label(label.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], col.filled()));
            }
            for (b, &n) in counts.iter().enumerate() {
                let width = (bins[b + 1] - bins[b]) / g;
                let x0 = bins[b] + width * gi as f64;
                let (ax, ay) = chart.backend_coord(&(x0, n as f64));
                let (bx, by) = chart.backend_coord(&(x0 + width * 0.9, 0.0));
                overlay.push_str(&format!(
                    "<rect x=\"{ax}\" y=\"{}\" width=\"{}\" height=\"{}\" fill-opacity=\"0\"><title>{}: {n} images with {} {:.1}-{:.1}</title></rect>",
                    ay.min(by - 3),
                    (bx - ax).max(1),
                    (by - ay).max(3),
                    esc(label),
                    esc(bin_name),
                    bins[b],
                    bins[b + 1]
                ));
            }
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 11))
            .draw();
        let _ = root.present();
    }
    with_overlay(svg, &overlay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scatter_has_its_points_line_and_hover_text() {
        let pts = [(1.0, 1.5), (2.0, 1.8), (3.0, 3.3)];
        let hover: Vec<String> = (0..3).map(|i| format!("image {i}")).collect();
        let svg = scatter(&Scatter {
            title: "True vs predicted",
            x_label: "true",
            y_label: "predicted",
            x_range: (0.0, 4.0),
            y_range: (0.0, 4.0),
            points: &pts,
            hover: &hover,
            line: ((0.0, 0.0), (4.0, 4.0)),
            line_label: "identity",
        });
        assert_eq!(svg.matches("<title>image ").count(), 3);
        assert!(svg.contains("identity"));
        assert!(svg.matches("<circle").count() >= 6, "a dot and a hover target per point");
    }

    #[test]
    fn charts_are_svg_with_hover_titles() {
        let svg = line_chart(&LineChart {
            title: "Loss",
            x_label: "epoch",
            y_label: "loss",
            x_range: (1.0, 3.0),
            y_range: (0.0, 2.0),
            series: vec![Series {
                label: "train <a>".into(),
                points: vec![(1.0, 1.5), (2.0, 1.0), (3.0, 0.5)],
                colour: colour(0),
                dashed: false,
                hover: vec!["epoch 1: 1.5000".into(), "epoch 2: 1.0000".into(), "epoch 3: 0.5000".into()],
            }],
            marker: Some((2.0, "best epoch".into())),
            diagonal: false,
            integer_x: true,
        });
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>epoch").count(), 3);
        assert!(svg.contains("train &lt;a&gt;"));
        assert!(svg.contains("<polyline") || svg.contains("<path"));
        let h = histogram("Confidence", "confidence", "confidence", &[0.0, 0.5, 1.0], &[("correct".into(), vec![2, 5], colour(2))]);
        assert!(h.contains("correct: 5 images with confidence 0.5-1.0"));
    }
}
