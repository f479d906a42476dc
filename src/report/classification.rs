//! A classification's parts of the report: its headline rows, the accuracy per epoch, and the
//! test section (confusion matrices, ROC and precision-recall curves, confidence, reliability,
//! the decision threshold and the most confident mistakes).
use super::plots::{self, colour, LineChart, Series};
use super::{f4, matrices, per_class_table, png_uri, with_interval, Plot, ReportInput, Row, TaskPart, Thumb};
use crate::data::split::Split;
use crate::metrics::{self, Intervals, Metrics};
use crate::task::Classifier;

/// How the classification figures are computed, for the note under the headline table.
const HEADLINE_NOTE: &str = "Macro averages weigh every class equally, weighted averages by class size. Following scikit-learn, \
         macro averages run over the classes present in the truth or the predictions, a ratio whose denominator \
         is zero counts as 0, and ROC-AUC is averaged over the classes that have both positive and negative test images.";

/// The report's classification parts, for the test figures `test`.
pub fn part(input: &ReportInput, c: &Classifier, test: &Metrics) -> anyhow::Result<TaskPart> {
    let (matrix_counts, matrix_percent) = matrices(test, &c.classes);
    let gallery = gallery(input, c)?;
    let (test_plots, confidence_plot) = test_plots(input, c, test);
    Ok(TaskPart {
        loss_name: "cross-entropy".to_string(),
        figure_plot: accuracy_plot(input),
        explained_output: "the class named",
        split_header: "Class",
        headline_note: HEADLINE_NOTE,
        regression: false,
        classes: c.classes.clone(),
        matrix_counts,
        matrix_percent,
        test_plots,
        confidence_plot,
        per_class: per_class_table(test),
        calibration_plots: calibration_plots(input, c),
        threshold_plots: threshold_plots(input, c),
        gallery_note: if gallery.is_empty() {
            "No test image was misclassified.".into()
        } else {
            format!("The {} misclassified test images the model was most sure about: worth a look for label errors or confusing cases.", gallery.len())
        },
        gallery,
    })
}

/// Train and validation accuracy, and validation macro F1, per epoch.
fn accuracy_plot(input: &ReportInput) -> Plot {
    let (x_range, best) = super::epochs::epoch_axis(input);
    let h = input.history;
    let acc: Vec<Series> = [
        super::epochs::epoch_series(h, "train accuracy", 0, false, &|r| r.train[0]),
        super::epochs::epoch_series(h, "validation accuracy", 1, false, &|r| r.validation.and_then(|v| v[0])),
        super::epochs::epoch_series(h, "validation macro F1", 2, true, &|r| r.validation.and_then(|v| v[1])),
    ]
    .into_iter()
    .flatten()
    .collect();
    Plot {
        svg: plots::line_chart(&LineChart { title: "Accuracy per epoch", x_label: "epoch", y_label: "fraction", x_range, y_range: (0.0, 1.02), series: acc, marker: best, diagonal: false, integer_x: true }),
        guide: "Higher is better. A large gap between train and validation accuracy is a sign of overfitting; validation figures rising and falling from epoch to epoch mean the validation set is small.".into(),
    }
}

pub fn headline_rows(per_split: &[(Split, &Metrics)], test_intervals: Option<&Intervals>) -> Vec<Row> {
    let ci = |s: Split| if s == Split::Test { test_intervals } else { None };
    type F<'f> = Box<dyn Fn(&Metrics, Option<&Intervals>) -> String + 'f>;
    let mut rows: Vec<(String, F)> = vec![
        ("Accuracy".into(), Box::new(|m, c| with_interval(m.accuracy, c, "accuracy"))),
        ("Balanced accuracy".into(), Box::new(|m, _| f4(m.balanced_accuracy))),
        ("Precision (macro)".into(), Box::new(|m, _| f4(m.macro_precision))),
        ("Recall (macro)".into(), Box::new(|m, _| f4(m.macro_recall))),
        ("F1 (macro)".into(), Box::new(|m, c| with_interval(m.macro_f1, c, "macro_f1"))),
        ("F1 (weighted)".into(), Box::new(|m, _| f4(m.weighted_f1))),
        (
            "ROC-AUC (one-vs-rest, macro)".into(),
            Box::new(|m, c| match m.roc_auc_macro {
                Some(v) => with_interval(v, c, "roc_auc_macro"),
                None => "n/a".into(),
            }),
        ),
    ];
    // Every split has the same classes, so the same k.
    let ks: Vec<usize> = per_split.first().map_or(Vec::new(), |(_, m)| m.top_k_accuracy.iter().map(|t| t.k).collect());
    for (i, k) in ks.into_iter().enumerate() {
        rows.push((format!("Top-{k} accuracy"), Box::new(move |m, _| m.top_k_accuracy.get(i).map_or("n/a".into(), |t| f4(t.accuracy)))));
    }
    rows.extend([
        ("Cohen's kappa".to_string(), Box::new(|m: &Metrics, _: Option<&Intervals>| f4(m.cohen_kappa)) as F),
        ("Matthews correlation".into(), Box::new(|m, _| f4(m.matthews_corrcoef))),
        ("Log loss".into(), Box::new(|m, _| f4(m.log_loss))),
        ("Brier score".into(), Box::new(|m, _| f4(m.brier_score))),
        (format!("Expected calibration error ({} bins)", metrics::calibration::RELIABILITY_BINS), Box::new(|m, _| f4(m.ece))),
        ("Images".into(), Box::new(|m, _| m.n.to_string())),
    ]);
    rows.iter()
        .map(|(name, f)| Row { name: name.clone(), values: per_split.iter().map(|(s, m)| f(m, ci(*s))).collect(), class: String::new() })
        .collect()
}

fn curve_series(label: String, i: usize, pts: Vec<(f64, f64)>, dashed: bool, what: (&str, &str)) -> Series {
    // Hover text on every point, up to 400 per curve (evenly spread beyond that, so that the
    // report of a large test set stays small).
    let step = pts.len().div_ceil(400).max(1);
    let hover = pts
        .iter()
        .enumerate()
        .map(|(k, (x, y))| if k % step == 0 || k + 1 == pts.len() { format!("{label}: {} {x:.3}, {} {y:.3}", what.0, what.1) } else { String::new() })
        .collect();
    Series { label, points: pts, colour: colour(i), dashed, hover }
}

/// Test images per tenth of confidence (the probability of the decided class), right and wrong,
/// decided as the task decides (a binary threshold included), as the confusion matrix is.
fn confidence_counts(input: &ReportInput, c: &Classifier) -> (Vec<usize>, Vec<usize>) {
    let mut right = vec![0usize; 10];
    let mut wrong = vec![0usize; 10];
    for (p, &t) in input.test_probs.iter().zip(input.test_truth) {
        let pred = c.decide(p);
        let b = ((p[pred] * 10.0) as usize).min(9);
        if pred == t { right[b] += 1 } else { wrong[b] += 1 }
    }
    (right, wrong)
}

/// ROC and precision-recall curves per class, then the confidence histogram.
fn test_plots(input: &ReportInput, cl: &Classifier, m: &Metrics) -> (Vec<Plot>, Plot) {
    let k = cl.classes.len();
    let probs = input.test_probs;
    let mut roc = Vec::new();
    let mut pr = Vec::new();
    let mut grid: Vec<f64> = Vec::new();
    let mut per_class_roc = Vec::new();
    for c in 0..k {
        let scores: Vec<f64> = probs.iter().map(|p| p[c] as f64).collect();
        let pos: Vec<bool> = input.test_truth.iter().map(|&t| t == c).collect();
        let cm = &m.per_class[c];
        if let Some(auc) = cm.roc_auc {
            let pts = metrics::roc_curve(&scores, &pos);
            grid.extend(pts.iter().map(|p| p.0));
            per_class_roc.push(pts.clone());
            roc.push(curve_series(format!("{} (AUC {auc:.3})", cl.classes[c]), c, pts, false, ("FPR", "TPR")));
        }
        if let Some(ap) = cm.average_precision {
            pr.push(curve_series(format!("{} (AP {ap:.3})", cl.classes[c]), c, metrics::pr_curve(&scores, &pos), false, ("recall", "precision")));
        }
    }
    if k > 2 && !per_class_roc.is_empty() {
        // Micro average: every (image, class) pair as one binary decision.
        let scores: Vec<f64> = probs.iter().flat_map(|p| p.iter().map(|&v| v as f64)).collect();
        let pos: Vec<bool> = input.test_truth.iter().flat_map(|&t| (0..k).map(move |c| c == t)).collect();
        let micro_auc = metrics::roc_auc(&scores, &pos).unwrap_or(f64::NAN);
        roc.push(curve_series(format!("micro average (AUC {micro_auc:.3})"), 7, metrics::roc_curve(&scores, &pos), true, ("FPR", "TPR")));
        // Macro average: the mean of the per-class curves on a common FPR grid.
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        let interp = |pts: &[(f64, f64)], x: f64| -> f64 {
            // The highest TPR reached at or before FPR x (step interpolation from the right).
            let mut y = 0.0;
            for w in pts.windows(2) {
                if w[1].0 <= x {
                    y = w[1].1;
                } else if w[0].0 <= x && w[1].0 > x {
                    let t = if w[1].0 > w[0].0 { (x - w[0].0) / (w[1].0 - w[0].0) } else { 1.0 };
                    y = y.max(w[0].1 + t * (w[1].1 - w[0].1));
                }
            }
            y
        };
        let macro_pts: Vec<(f64, f64)> = grid.iter().map(|&x| (x, per_class_roc.iter().map(|c| interp(c, x)).sum::<f64>() / per_class_roc.len() as f64)).collect();
        let auc = m.roc_auc_macro.map_or(String::new(), |a| format!(" (AUC {a:.3})"));
        roc.push(curve_series(format!("macro average{auc}"), 9, macro_pts, true, ("FPR", "TPR")));
    }
    let out = vec![
        Plot {
            svg: plots::line_chart(&LineChart { title: "ROC curves (one class vs the rest)", x_label: "false positive rate", y_label: "true positive rate", x_range: (0.0, 1.0), y_range: (0.0, 1.02), series: roc, marker: None, diagonal: true, integer_x: false }),
            guide: "Each curve shows how many images of a class are found (up) against how many others are wrongly flagged (right) as the threshold moves. A curve hugging the top-left corner (AUC near 1) is good; the grey diagonal (AUC 0.5) is guessing.".into(),
        },
        Plot {
            svg: plots::line_chart(&LineChart { title: "Precision-recall curves", x_label: "recall", y_label: "precision", x_range: (0.0, 1.0), y_range: (0.0, 1.02), series: pr, marker: None, diagonal: false, integer_x: false }),
            guide: "For rare classes this is more telling than the ROC curve: a good curve stays high (precise) as it moves right (finding more of the class). AP is the area under it; a class's prevalence is what guessing would give.".into(),
        },
    ];
    let bins: Vec<f64> = (0..=10).map(|i| i as f64 / 10.0).collect();
    let (right, wrong) = confidence_counts(input, cl);
    let confidence = Plot {
        svg: plots::histogram("Confidence of correct and wrong predictions", "confidence (probability of the predicted class)", "confidence", &bins, &[("correct".into(), right, colour(2)), ("wrong".into(), wrong, colour(3))]),
        guide: "A trustworthy model is confident when right (green bars to the right) and unsure when wrong (red bars to the left). Many confident wrong predictions mean the confidence should not be taken at face value.".into(),
    };
    (out, confidence)
}

/// Reliability diagrams of the test images: the top label (after and, if there is one, before
/// the temperature), then one-vs-rest per class for up to 10 classes.
fn calibration_plots(input: &ReportInput, c: &Classifier) -> Vec<Plot> {
    use metrics::calibration::{reliability, top_label, Bin, RELIABILITY_BINS};
    let points = |bins: &[Bin]| -> Vec<(f64, f64)> { bins.iter().map(|b| (b.mean_score, b.hit_rate)).collect() };
    let hover = |label: &str, bins: &[Bin], what: &str| -> Vec<String> {
        bins.iter().map(|b| format!("{label}: mean {what} {:.3}, observed {:.3}, {} images", b.mean_score, b.hit_rate, b.count)).collect()
    };
    let top = |probs: &[Vec<f32>]| {
        let decided: Vec<usize> = probs.iter().map(|p| c.decide(p)).collect();
        let conf: Vec<f64> = probs.iter().zip(&decided).map(|(p, &d)| p[d] as f64).collect();
        let right: Vec<bool> = decided.iter().zip(input.test_truth).map(|(d, t)| d == t).collect();
        top_label(&conf, &right)
    };
    let after = top(input.test_probs);
    let mut series = Vec::new();
    let mut add = |label: String, i: usize, bins: &[Bin], dashed: bool| {
        let hover = hover(&label, bins, "confidence");
        series.push(Series { label, points: points(bins), colour: colour(i), dashed, hover });
    };
    let calibrated = input.test_probs_uncalibrated.is_some();
    add(format!("{} (ECE {:.3})", if calibrated { "after temperature" } else { "model" }, after.ece), 0, &after.bins, false);
    if let Some(before) = input.test_probs_uncalibrated {
        let b = top(before);
        add(format!("before temperature (ECE {:.3})", b.ece), 3, &b.bins, true);
    }
    let mut out = vec![Plot {
        svg: plots::line_chart(&LineChart { title: "Reliability: confidence against accuracy (test)", x_label: "confidence (probability of the decided class)", y_label: "share decided right", x_range: (0.0, 1.0), y_range: (0.0, 1.02), series, marker: None, diagonal: true, integer_x: false }),
        guide: format!(
            "Test images binned by confidence ({RELIABILITY_BINS} equal bins; a point per non-empty bin). On the grey diagonal, a model that says 80% is right 80% of the time. Below it the model is overconfident, above it underconfident. ECE is the images-weighted mean gap to the diagonal."
        ),
    }];
    let k = c.classes.len();
    if k <= 10 {
        let mut per_class = Vec::new();
        for class in 0..k {
            let scores: Vec<f64> = input.test_probs.iter().map(|p| p[class] as f64).collect();
            let hits: Vec<bool> = input.test_truth.iter().map(|&t| t == class).collect();
            let bins = reliability(&scores, &hits, RELIABILITY_BINS);
            let label = c.classes[class].clone();
            let hover = hover(&label, &bins, "probability");
            per_class.push(Series { label, points: points(&bins), colour: colour(class), dashed: false, hover });
        }
        out.push(Plot {
            svg: plots::line_chart(&LineChart { title: "Reliability per class (one vs the rest, test)", x_label: "predicted probability of the class", y_label: "share that is the class", x_range: (0.0, 1.0), y_range: (0.0, 1.02), series: per_class, marker: None, diagonal: true, integer_x: false }),
            guide: "For each class, images binned by the probability given to that class, against how many of them really are that class. Curves near the diagonal mean the class's probabilities can be read as they are.".into(),
        });
    }
    out
}

/// Binary `--threshold auto`: the validation metric against the threshold, the choice marked.
fn threshold_plots(input: &ReportInput, c: &Classifier) -> Vec<Plot> {
    let (Some((metric, curve)), Some(t)) = (input.threshold_curve, c.threshold) else { return Vec::new() };
    let series = curve_series(format!("validation {metric}"), 0, curve.to_vec(), false, ("threshold", metric));
    let low = curve.iter().map(|p| p.1).fold(0f64, f64::min);
    vec![Plot {
        svg: plots::line_chart(&LineChart { title: "Decision threshold (validation split)", x_label: "threshold on the probability of the second class", y_label: metric, x_range: (0.0, 1.0), y_range: (low.min(0.0), 1.02), series: vec![series], marker: Some((f64::from(t), format!("chosen {t:.3}"))), diagonal: false, integer_x: false }),
        guide: format!("Each candidate threshold (a midpoint between neighbouring validation scores) against the validation {metric} it gives; the marked one is the Best Model's, used for the test figures above and by predict. A flat top means many thresholds do as well."),
    }]
}

/// The most confidently misclassified test images, decided as the task decides.
pub(super) fn gallery(input: &ReportInput, c: &Classifier) -> anyhow::Result<Vec<Thumb>> {
    let mut wrong: Vec<(usize, f32)> = input
        .test_probs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let pred = c.decide(p);
            (pred != input.test_truth[i]).then_some((i, p[pred]))
        })
        .collect();
    wrong.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    wrong
        .iter()
        .take(12)
        .map(|&(i, conf)| {
            let pred = c.decide(&input.test_probs[i]);
            Ok(Thumb {
                uri: png_uri(&(input.test_pixels)(i)?, input.image_size),
                caption: format!(
                    "{}: true {}, predicted {} ({:.1}%)",
                    crate::error::short(&input.test_names[i]),
                    crate::error::short(&c.classes[input.test_truth[i]]),
                    crate::error::short(&c.classes[pred]),
                    100.0 * conf
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Figures;
    use crate::task::{Task, TaskKind};

    #[test]
    fn with_a_threshold_the_gallery_and_histogram_agree_with_the_confusion_matrix() {
        let classes = vec!["benign".to_string(), "malignant".to_string()];
        let c = &Classifier::new(TaskKind::Binary, &classes, Some(0.3), "label", "m.csv").unwrap();
        let task = Task::Classify(c.clone());
        // Image 0 is malignant with p(malignant) = 0.35: argmax says benign (a mistake), the
        // threshold 0.3 says malignant (right). Image 1 is benign with p(malignant) = 0.32: argmax
        // is right, the threshold makes it a mistake at confidence 0.32.
        let probs = vec![vec![0.65, 0.35], vec![0.68, 0.32]];
        let truth = vec![1, 0];
        let m = c.metrics(&truth, &probs);
        assert_eq!(m.confusion_matrix, vec![vec![0, 1], vec![0, 1]]);
        let m = Figures::Classification(m);
        // A name of a megabyte is shortened in the caption.
        let long = format!("{}b.png", "x".repeat(1 << 20));
        let names = vec!["a.png".to_string(), long];
        let pixels = |_: usize| Ok(vec![0u8; 4 * 4 * 3]);
        let input = ReportInput {
            title: String::new(),
            run: Vec::new(),
            command_line: String::new(),
            data: Vec::new(),
            warnings: Vec::new(),
            split_method: String::new(),
            task: &task,
            split_counts: vec![[1, 0, 1], [1, 0, 1]],
            history: &[],
            cross_validation: None,
            schedule: String::new(),
            best_epoch: 1,
            validation_metric: "loss",
            stopped_early: false,
            per_split: vec![(Split::Test, &m)],
            train_from_training_pass: true,
            test_intervals: None,
            test_truth: &truth,
            test_values: &[],
            test_probs: &probs,
            test_names: &names,
            test_pixels: &pixels,
            image_size: 4,
            test_probs_uncalibrated: None,
            calibration: None,
            calibration_note: String::new(),
            threshold_curve: None,
            explanations: &[],
            explanation_method: String::new(),
            tta: crate::config::Tta::None,
        };
        let shown: Vec<String> = gallery(&input, c).unwrap().into_iter().map(|t| t.caption).collect();
        assert_eq!(shown.len(), 1);
        assert!(shown[0].starts_with("xxx") && shown[0].ends_with("xb.png (1048581 characters): true benign, predicted malignant (32.0%)"), "{}", &shown[0][..40]);
        assert!(shown[0].len() < 250);
        let (right, wrong) = confidence_counts(&input, c);
        assert_eq!((right[3], wrong[3]), (1, 1), "one right at 0.35, one wrong at 0.32: {right:?} {wrong:?}");
        assert_eq!(right.iter().sum::<usize>() + wrong.iter().sum::<usize>(), 2);
    }
}
