//! The report of a real training run, rendered in headless Chromium: no console error, no
//! failed request, every section and plot present after the script ran, a PNG screenshot
//! (target/report-screenshot.png). Also: the page holds no external URL, and still has every
//! section with the script stripped, as Galaxy's sanitiser would.
use std::process::Command;

use crate::common::*;
use image_learner::outputs;
use image_learner::commands::train::run as run_train;

const HEADINGS: [&str; 3] = ["Config and Overall Performance Summary", "Training and Validation Results", "Test Results"];

fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--enable-logging=stderr", "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test renders the report in Chromium, which does not run here ({e}): install it with \
                 scripts/test.sh (the whole suite), or leave this test out with scripts/test.sh --quick \
                 (cargo test -- --skip browser::)"
            )
        })
}

#[test]
fn report_renders_in_chromium_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = quick_config(&out, 3);
    cfg.predictions = image_learner::config::PredictionsScope::All;
    run_train(&cfg).unwrap();
    let report = out.join(outputs::REPORT);
    let html = std::fs::read_to_string(&report).unwrap();

    // Self-contained: no external URL in any src or href, nothing fetched.
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "url(http", "@import"] {
        assert!(!html.contains(attr), "external reference {attr}");
    }
    for h in HEADINGS {
        assert!(html.contains(&format!("<h2>{h}</h2>")), "{h}");
    }
    // Eight plots (loss, accuracy, learning rate, ROC, PR, confidence, reliability of the top
    // label and per class) as inline SVG with hover titles.
    assert_eq!(html.matches("<svg").count(), 8);
    assert!(html.matches("<title>").count() > 30);
    assert!(html.contains("data:image/png;base64,"), "thumbnails of mistakes are inline");

    let url = format!("file://{}", report.display());
    let dom = chromium(&["--dump-dom", &url], &dir.path().join("profile1"));
    let log = String::from_utf8_lossy(&dom.stderr);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(!log.contains("net::ERR"), "a request failed: {log}");
    let dom = String::from_utf8_lossy(&dom.stdout);
    for h in HEADINGS {
        assert!(dom.contains(&format!(">{h}</button>")), "the script made a tab for {h}");
    }
    assert_eq!(dom.matches("<svg").count(), 8);
    assert!(dom.matches("<polyline").count() + dom.matches("<path").count() >= 10, "plots have their lines");

    // Scripts stripped (Galaxy's default sanitising): every section and plot is still there.
    let start = html.find("<script>").unwrap();
    let end = html.find("</script>").unwrap() + "</script>".len();
    let stripped = format!("{}{}", &html[..start], &html[end..]);
    for h in HEADINGS {
        assert!(stripped.contains(&format!("<h2>{h}</h2>")));
    }
    assert_eq!(stripped.matches("<svg").count(), 8);

    let shot = repo().join("target/report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let o = chromium(&["--window-size=1300,2400", &format!("--screenshot={}", shot.display()), &url], &dir.path().join("profile2"));
    assert!(o.status.success());
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(png.len() > 20_000 && png.starts_with(b"\x89PNG"), "a real screenshot");

    // --predictions all: every image with its split.
    let preds = csv_rows(&out.join(outputs::PREDICTIONS));
    assert_eq!(preds[0][..3], ["image_path", "split", "true_label"]);
    assert_eq!(preds.len() - 1, 180);
    for s in ["train", "validation", "test"] {
        assert!(preds.iter().any(|r| r[1] == s), "{s}");
    }
}
