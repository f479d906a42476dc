//! Bad input through the binary: exit code 2, one clear line naming the problem, no outputs.
mod common;

use std::path::Path;

use common::*;

/// Runs `train` on the given ZIP and CSV with extra flags; asserts failure with `expect` in the
/// message and an output folder with no outputs in it.
fn fails(dir: &Path, zip: &Path, csv: &Path, extra: &[&str], expect: &str) {
    let out = dir.join("out");
    let mut args = vec![
        "train", "--images", zip.to_str().unwrap(), "--metadata", csv.to_str().unwrap(),
        "--image-size", "32", "--device", "cpu", "--output-dir", out.to_str().unwrap(),
    ];
    if !extra.contains(&"--model") {
        args.extend(["--model", "resnet18"]);
    }
    if !extra.contains(&"--use-pretrained") {
        args.extend(["--use-pretrained", "false"]);
    }
    if !extra.contains(&"--epochs") {
        args.extend(["--epochs", "1"]);
    }
    args.extend_from_slice(extra);
    let o = run(&args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{expect}: {err}");
    assert!(err.contains(expect), "expected '{expect}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&out).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "outputs left behind: {left:?}");
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn options_and_tables_that_cannot_train() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zip = sample_zip();
    let csv = sample_csv();
    fails(d, &zip, &csv, &["--model", "resnet19"], "unknown model 'resnet19'. Nearest: resnet18");
    fails(d, &zip, &csv, &["--epochs", "0"], "--epochs must be at least 1");
    fails(d, &zip, &csv, &["--batch-size", "0"], "--batch-size must be at least 1");
    fails(d, &zip, &csv, &["--batch-size", "1"], "resnet18 normalises each batch, which needs at least 2 images per batch");
    fails(d, &zip, &csv, &["--learning-rate", "0"], "--learning-rate must be a number above 0");
    fails(d, &zip, &csv, &["--learning-rate", "NaN"], "--learning-rate must be a number above 0");
    fails(d, &zip, &csv, &["--split", "50/10/10"], "sum to 70, not 100");
    fails(d, &zip, &csv, &["--split", "110/-10/0"], "give three numbers");
    fails(d, &zip, &csv, &["--task", "binary"], "--task binary needs exactly two classes");
    fails(d, &zip, &csv, &["--image-column", "9"], "has only 2 columns");
    let weights = d.join("no-weights");
    fails(
        d, &zip, &csv,
        &["--use-pretrained", "true", "--weights-dir", weights.to_str().unwrap()],
        "no weights for resnet18",
    );
    fails(d, &zip, &csv, &["--use-pretrained", "false", "--fine-tune", "false"], "--fine-tune false freezes the backbone");

    fails(d, &zip, &write(d, "empty.csv", ""), &[], "is empty");
    fails(d, &zip, &write(d, "header.csv", "image_path,label\n"), &[], "no rows");
    fails(d, &zip, &write(d, "nolabel.csv", "image_path,kind\ncircle_000.png,circle\n"), &[], "no label column found");
    fails(d, &zip, &write(d, "one.csv", "image_path,label\ncircle_000.png,circle\ncircle_001.png,circle\n"), &[], "single class ('circle')");
    let few = "image_path,label\ncircle_000.png,circle\ncircle_001.png,circle\nsquare_000.png,square\nsquare_001.png,square\nsquare_002.png,square\n";
    fails(d, &zip, &write(d, "few.csv", few), &[], "class 'circle' has 2 image(s)");
    let bad_split = "image_path,label,split\ncircle_000.png,circle,train\nsquare_000.png,square,holdout\n";
    fails(d, &zip, &write(d, "split.csv", bad_split), &[], "holds 'holdout'");
    fails(d, &zip, &write(d, "none.csv", "image_path,label\nnothing.png,a\nnone.png,b\n"), &[], "no row of none.csv names an image");
    fails(d, &write(d, "notzip.zip", "plain text"), &csv, &[], "is not a readable ZIP archive");
    fails(d, &d.join("missing.zip"), &csv, &[], "cannot open the image ZIP");
}

#[test]
fn rows_without_images_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = std::fs::read_to_string(sample_csv()).unwrap();
    csv.push_str("ghost_1.png,circle\nghost_2.png,square\n");
    let csv_path = write(dir.path(), "meta.csv", &csv);
    let out = dir.path().join("out");
    let o = run(&[
        "train", "--images", sample_zip().to_str().unwrap(), "--metadata", csv_path.to_str().unwrap(),
        "--model", "resnet18", "--use-pretrained", "false",
        "--epochs", "1", "--image-size", "32", "--device", "cpu", "--output-dir", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("180 of 182 rows matched an image in sample_images.zip; 2 rows without an image"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("ghost_1.png"), "the report names the rows without an image");
}
