//! Bad input through the binary: exit code 2, one clear line naming the problem, no outputs.
use std::path::Path;

use crate::common::*;

/// Runs `train` on the given ZIP and CSV with extra flags; asserts failure with `expect` in the
/// message and an output folder with no outputs in it.
fn fails(dir: &Path, zip: &Path, csv: &Path, extra: &[&str], expect: &str) {
    let out = dir.join("out");
    let mut args = vec![
        "train", "--images", zip.to_str().unwrap(), "--metadata", csv.to_str().unwrap(),
        "--device", "cpu", "--output-dir", out.to_str().unwrap(),
    ];
    if !extra.contains(&"--image-size") {
        args.extend(["--image-size", "32"]);
    }
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
    // Offline, so that missing weights stop the run here as on a machine without internet.
    let o = bin().args(&args).env("IMAGE_LEARNER_OFFLINE", "1").output().unwrap();
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
    fails(d, &zip, &csv, &["--epochs", "3", "--warmup-epochs", "3"], "--warmup-epochs 3 leaves no epoch at the full learning rate: it must be below --epochs (3)");
    fails(d, &zip, &csv, &["--warmup-epochs", "-1"], "--warmup-epochs must be 0 or more (got -1)");
    fails(d, &zip, &csv, &["--epochs", "2", "--warmup-epochs", "2.5"], "--warmup-epochs 2.5 leaves no epoch at the full learning rate");
    fails(d, &zip, &csv, &["--lr-schedule", "cosine", "--min-lr", "0.001"], "--min-lr must be at least 0 and below --learning-rate (0.001); got 0.001");
    fails(d, &zip, &csv, &["--lr-schedule", "cosine", "--min-lr=-1e-5"], "--min-lr must be at least 0 and below --learning-rate");
    fails(d, &zip, &csv, &["--min-lr", "1e-5"], "--min-lr is the floor of the cosine schedule: add --lr-schedule cosine");
    fails(d, &zip, &csv, &["--epochs", "3", "--freeze-epochs", "3"], "--freeze-epochs 3 leaves no epoch to train the whole model: it must be below --epochs (3)");
    fails(d, &zip, &csv, &["--epochs", "4", "--freeze-epochs", "2", "--warmup-epochs", "2"], "it must be below --epochs minus --freeze-epochs (2)");
    fails(d, &zip, &csv, &["--backbone-lr-mult", "0"], "--backbone-lr-mult must be above 0 and at most 1 (got 0)");
    fails(d, &zip, &csv, &["--backbone-lr-mult", "1.5"], "--backbone-lr-mult must be above 0 and at most 1 (got 1.5)");
    fails(d, &zip, &csv, &["--layer-decay=-0.7"], "--layer-decay must be above 0 and at most 1 (got -0.7)");
    fails(d, &zip, &csv, &["--layer-decay", "NaN"], "--layer-decay must be above 0 and at most 1 (got NaN)");
    fails(d, &zip, &csv, &["--crop-scale", "0,1"], "--crop-scale '0,1': each share must be above 0 and at most 1");
    fails(d, &zip, &csv, &["--crop-scale", "0.5,1.5"], "--crop-scale '0.5,1.5': each share must be above 0 and at most 1");
    fails(d, &zip, &csv, &["--crop-scale", "0.8,0.5"], "--crop-scale '0.8,0.5': the lower share is above the upper one");
    fails(d, &zip, &csv, &["--crop-scale", "0.5"], "--crop-scale '0.5': two numbers are needed");
    fails(d, &zip, &csv, &["--augmentation", "mixup"], "unknown augmentation 'mixup': use one of horizontal_flip, vertical_flip, rotate, blur, brightness, contrast, random_resized_crop, color_jitter, trivial_augment");
    fails(d, &zip, &csv, &["--tta", "rotate"], "unknown test-time augmentation 'rotate': use auto, none, flip or flip4");
    fails(d, &zip, &csv, &["--ema-decay", "1"], "--ema-decay must be at least 0 and below 1 (got 1)");
    fails(d, &zip, &csv, &["--ema-decay=-0.5"], "--ema-decay must be at least 0 and below 1 (got -0.5)");
    fails(d, &zip, &csv, &["--lr-schedule", "linear"], "unknown learning-rate schedule 'linear': use constant, cosine, onecycle or step");
    fails(d, &zip, &csv, &["--lr-schedule", "step", "--lr-step-epochs", "0"], "--lr-step-epochs must be at least 1");
    fails(d, &zip, &csv, &["--lr-schedule", "step", "--lr-step-gamma", "2"], "--lr-step-gamma must be above 0 and at most 1 (got 2)");
    fails(d, &zip, &csv, &["--split", "50/10/10"], "sum to 70, not 100");
    fails(d, &zip, &csv, &["--split", "110/-10/0"], "give three numbers");
    fails(d, &zip, &csv, &["--task", "binary"], "--task binary needs exactly two classes");
    fails(d, &zip, &csv, &["--threshold", "0.3"], "--threshold applies to --task binary only");
    fails(d, &zip, &csv, &["--threshold", "1.5"], "--threshold '1.5': use auto or a number between 0 and 1");
    fails(d, &zip, &csv, &["--threshold-metric", "auc"], "unknown threshold metric 'auc': use one of f1, accuracy");
    fails(d, &zip, &csv, &["--calibrate", "platt"], "unknown calibration 'platt': use temperature or none");
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

/// `train` on the sample's ZIP with the given CSV text; returns its exit code and stderr.
fn train_csv(dir: &Path, csv: &str, extra: &[&str]) -> (Option<i32>, String) {
    let meta = write(dir, "meta.csv", csv);
    let out = dir.join("out");
    let zip = sample_zip();
    let mut args = vec![
        "train", "--images", zip.to_str().unwrap(), "--metadata", meta.to_str().unwrap(),
        "--model", "resnet18", "--use-pretrained", "false", "--epochs", "1", "--device", "cpu",
        "--output-dir", out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    // Offline, so that missing weights stop the run here as on a machine without internet.
    let o = bin().args(&args).env("IMAGE_LEARNER_OFFLINE", "1").output().unwrap();
    (o.status.code(), stderr(&o))
}

/// Rows that would silently train a wrong model: one image under two spellings or two labels,
/// labels that differ only in case, a `fold` column, a class that only the test split has.
#[test]
fn rows_that_would_train_a_wrong_model_are_merged_with_a_warning_or_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sample = std::fs::read_to_string(sample_csv()).unwrap();
    let small = ["--image-size", "32"];

    // The same image twice under two spellings: used once, and said.
    let (code, err) = train_csv(d, &format!("{sample}images/CIRCLE_000.PNG,circle\n"), &small);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("1 rows of meta.csv name an image that an earlier row, with the same label, already names"), "{err}");
    assert!(err.contains("180 of 181 rows matched"), "{err}");
    // ... and under two labels: stop, naming both lines.
    let (code, err) = train_csv(d, &format!("{sample}images/CIRCLE_000.PNG,square\n"), &small);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("line 2 ('circle_000.png', label 'circle') and line 182 ('images/CIRCLE_000.PNG', label 'square')"), "{err}");

    // `Circle ` and `circle` are one class.
    let renamed = sample.replacen("circle_001.png,circle", "circle_001.png,Circle ", 1);
    let (code, err) = train_csv(d, &renamed, &small);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("differ only in case; they are one class, 'circle'") && err.contains("3 classes"), "{err}");

    // A `fold` column is not a split unless named; the log says how the split was made.
    let mut folded = String::from("image_path,label,fold\n");
    for (i, line) in sample.lines().skip(1).enumerate() {
        folded.push_str(&format!("{line},{}\n", i % 3));
    }
    let (code, err) = train_csv(d, &folded, &["--image-size", "32", "--split", "60/20/20"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("the column 'fold' is not used as a split"), "{err}");
    assert!(err.contains("split method: Stratified random 60/20/20 split by class"), "{err}");

    // A split column that puts a class only in validation and test: stop.
    let mut only_test = String::from("image_path,label,split\n");
    for (i, line) in sample.lines().skip(1).enumerate() {
        let split = if line.ends_with(",triangle") { ["validation", "test"][i % 2] } else { ["train", "test"][i % 2] };
        only_test.push_str(&format!("{line},{split}\n"));
    }
    let (code, err) = train_csv(d, &only_test, &small);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("class 'triangle' has no training image: the split column 'split' puts its 60 image(s) in validation (30) and test (30)"), "{err}");
}

/// Without --image-size the input size comes from the first image that can be read, not from a
/// damaged first row (which gave the model's 224 and a 7x slower run).
#[test]
fn the_input_size_comes_from_an_image_that_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("images.zip");
    std::fs::write(&zip, sample_zip_after(&[("images/aaa_broken.png", b"\x89PNG\r\n\x1a\n broken".to_vec())])).unwrap();
    let csv = format!("image_path,label\naaa_broken.png,circle\n{}", std::fs::read_to_string(sample_csv()).unwrap().split_once('\n').unwrap().1);
    let meta = write(dir.path(), "meta.csv", &csv);
    let out = dir.path().join("out");
    let o = run(&[
        "train", "--images", zip.to_str().unwrap(), "--metadata", meta.to_str().unwrap(), "--model", "resnet18",
        "--use-pretrained", "false", "--epochs", "1", "--device", "cpu", "--output-dir", out.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("aaa_broken.png") && err.contains("input 48x48"), "the sample's 48x48 images set the size: {err}");
}

/// Files that are not what the option asks for, and sizes an architecture cannot take: exit 2
/// at once, naming the file or the size, without hanging on a pipe.
#[test]
fn wrong_files_and_too_small_inputs_stop_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (zip, csv) = (sample_zip(), sample_csv());
    fails(d, &zip, &d.join("missing.csv"), &[], "cannot open the metadata file");
    fails(d, &zip, d, &[], "is a folder; give the file itself");
    let fifo = d.join("pipe.zip");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    fails(d, &fifo, &csv, &[], "is not a regular file");
    fails(d, &csv, &zip, &[], "did you swap the images (--images) and the metadata (--metadata)?");
    fails(d, &csv, &csv, &[], "is a text table, not a ZIP of images: did you swap");
    fails(d, &zip, &csv, &["--model", "vgg16", "--image-size", "28"], "--image-size 28 is too small for vgg16: its downsampling needs at least 32 pixels");
    fails(d, &zip, &csv, &["--model", "densenet121", "--image-size", "16"], "needs at least 29 pixels");
    let weights = d.join("weights");
    std::fs::create_dir_all(&weights).unwrap();
    std::fs::write(weights.join("resnet18.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage").unwrap();
    fails(d, &zip, &csv, &["--use-pretrained", "true", "--weights-dir", weights.to_str().unwrap()], "is not a valid safetensors file");

    // predict: a model file that is not one.
    let garbage = write(d, "best_model.zip", "garbage");
    let o = run(&["predict", "--model", garbage.to_str().unwrap(), "--images", zip.to_str().unwrap(), "--output", d.join("p.csv").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("best_model.zip is not a Best Model made by image-learner"), "{}", stderr(&o));
    assert!(!d.join("p.csv").exists());
}

/// predict's outputs that name one file, however spelled, are refused before anything is read
/// or written: the earlier file stays as it was.
#[test]
fn predict_outputs_that_name_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zip = sample_zip();
    let earlier = write(d, "pred.csv", "earlier");
    let model = write(d, "best_model.zip", "not read");
    let same = earlier.to_str().unwrap().to_string();
    let dotted = format!("{}/./pred.csv", d.display());
    let via_parent = format!("{}/sub/../pred.csv", d.display());
    std::fs::create_dir(d.join("sub")).unwrap();
    let cases: [(Vec<&str>, &str); 3] = [
        (vec!["--explain", "2", "--explanations", &same], "--output ("),
        (vec!["--report", &dotted], "and --report ("),
        (vec!["--explain", "2", "--explanations", &via_parent], "and --explanations ("),
    ];
    for (extra, names) in cases {
        let mut args = vec!["predict", "--model", model.to_str().unwrap(), "--images", zip.to_str().unwrap(), "--output", earlier.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(names) && stderr(&o).contains("name the same file, so one would overwrite the other"), "{}", stderr(&o));
        assert_eq!(std::fs::read_to_string(&earlier).unwrap(), "earlier", "{extra:?}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with(".image-learner")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A regression, or a task of the wrong kind, that cannot be trained.
#[test]
fn targets_and_options_a_regression_cannot_train_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zip = sample_zip();
    let values = repo().join("test-data/sample_metadata_regression.csv");
    fails(
        d, &zip, &sample_csv(), &["--task", "regression"],
        "sample_metadata.csv: no row has a number in the target column 'label' (line 2: 'circle'); a regression needs numeric targets",
    );
    let constant = "image_path,target\ncircle_000.png,5\ncircle_001.png,5.0\nsquare_000.png,NA\nsquare_001.png,5\n";
    fails(d, &zip, &write(d, "constant.csv", constant), &["--task", "regression"], "every target in the column 'target' is 5; a regression needs targets that vary");
    fails(
        d, &zip, &values, &["--task", "regression", "--validation-metric", "accuracy"],
        "--validation-metric accuracy is a classification figure, and this is a regression: use loss, mae, rmse or r2",
    );
    fails(
        d, &zip, &values, &["--task", "regression", "--validation-metric", "balanced_accuracy"],
        "--validation-metric balanced_accuracy is a classification figure, and this is a regression: use loss, mae, rmse or r2",
    );
    fails(
        d, &zip, &sample_csv(), &["--validation-metric", "r2"],
        "--validation-metric r2 is a regression figure, and this is a classification: use loss, accuracy, balanced_accuracy, macro_f1 or roc_auc",
    );
    fails(d, &zip, &values, &["--task", "regression", "--threshold", "0.3"], "--threshold applies to --task binary only, and this is a regression");
    fails(d, &zip, &values, &["--task", "regression", "--loss", "hinge"], "unknown loss 'hinge': use mse, mae or huber");
    fails(d, &zip, &values, &["--task", "regression", "--label-smoothing", "0.1"], "--label-smoothing applies to a classification, and this is a regression");
    fails(d, &zip, &values, &["--task", "regression", "--class-balance", "loss"], "--class-balance applies to a classification, and this is a regression");
    fails(d, &zip, &sample_csv(), &["--class-balance", "smote"], "unknown class balance 'smote': use none, loss, sampler or auto");
    fails(d, &zip, &sample_csv(), &["--label-smoothing", "1"], "--label-smoothing must be at least 0 and below 1 (got 1)");
    fails(d, &zip, &sample_csv(), &["--label-smoothing", "-0.1"], "--label-smoothing must be at least 0 and below 1 (got -0.1)");
    fails(d, &zip, &values, &["--task", "ordinal"], "unknown task 'ordinal': use auto, classification, binary or regression");
    fails(
        d, &zip, &sample_csv(), &["--task", "classification", "--loss", "mae"],
        "--loss mae is a regression loss, and this is a classification (trained with cross-entropy): leave --loss out",
    );
    // Grouped by a column of one or two patients: too few groups for three parts, said as such.
    let text = std::fs::read_to_string(&values).unwrap();
    for patients in [1, 2] {
        let grouped: Vec<String> = text.lines().enumerate().map(|(i, l)| if i == 0 { format!("{l},patient") } else { format!("{l},p{}", i % patients) }).collect();
        let csv = write(d, &format!("grouped{patients}.csv"), &grouped.join("\n"));
        fails(
            d, &zip, &csv, &["--task", "regression", "--group-column", "patient"],
            &format!("the group column 'patient' has {patients} group(s), and a split grouped by it needs at least one group in each of the 3 parts of 70/10/20"),
        );
    }
}
