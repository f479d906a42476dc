//! `--cache`: images kept in memory and images read from the ZIP for each batch give the same
//! outputs, byte for byte; a ZIP that changes under a job reading it stops the job with exit 2
//! naming the file, and nothing written.
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Stdio;

use image_learner::outputs;

use crate::common::*;

/// The bytes of member `name` of the ZIP at `path`.
fn member(path: &Path, name: &str) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    z.by_name(name).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn train_with_cache(dir: &Path, cache: &str) -> (std::path::PathBuf, serde_json::Value) {
    let out = dir.join(cache);
    let o = run(&[
        "train", "--images", sample_zip().to_str().unwrap(), "--metadata", sample_csv().to_str().unwrap(),
        "--model", "resnet18", "--use-pretrained", "false", "--epochs", "2", "--batch-size", "16", "--image-size", "32",
        "--augmentation", "horizontal_flip,random_resized_crop,color_jitter", "--tta", "flip", "--predictions", "all",
        "--explain", "3", "--threads", "2", "--device", "cpu", "--cache", cache, "--output-dir", out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = serde_json::from_slice(&std::fs::read(out.join(outputs::METRICS)).unwrap()).unwrap();
    (out, metrics)
}

/// Same seed, same bytes, whether the images were kept in memory or read from the ZIP for every
/// batch: the Best Model (weights and configuration), every image's prediction, the history and
/// the figures; and `predict` reading from the ZIP predicts what it predicts from memory.
#[test]
fn the_cache_mode_changes_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let (ram, ram_m) = train_with_cache(dir.path(), "ram");
    let (zip, zip_m) = train_with_cache(dir.path(), "none");
    assert_eq!(ram_m["image_cache"]["mode"], "ram");
    assert_eq!(zip_m["image_cache"]["mode"], "none");
    assert!(zip_m["image_cache"]["reason"].as_str().unwrap().starts_with("--cache none: each batch is read from the ZIP"));
    let weights = |p: &Path| member(&p.join(outputs::BEST_MODEL), "model.safetensors");
    assert!(weights(&ram) == weights(&zip), "the Best Model's weights differ");
    // The configuration, but for where the run wrote and how it was called.
    let config = |p: &Path| {
        let mut c: serde_json::Value = serde_json::from_slice(&member(&p.join(outputs::BEST_MODEL), "config.json")).unwrap();
        let options = c["options"].as_object_mut().unwrap();
        assert!(options.remove("output_dir").is_some() && options.remove("command_line").is_some());
        c
    };
    assert_eq!(config(&ram), config(&zip));
    let text = |p: &Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    assert_eq!(text(&ram, outputs::PREDICTIONS), text(&zip, outputs::PREDICTIONS));
    let timeless = |p: &Path| -> Vec<Vec<String>> {
        csv_rows(&p.join(outputs::HISTORY)).into_iter().map(|mut r| { r.drain(outputs::history::TIME_COLUMNS); r }).collect()
    };
    assert_eq!(timeless(&ram), timeless(&zip));
    let figures = |mut m: serde_json::Value| { m.as_object_mut().unwrap().remove("image_cache"); m };
    assert_eq!(figures(ram_m), figures(zip_m));
    let html = text(&zip, outputs::REPORT);
    assert!(html.contains("read from the ZIP for each batch (--cache none"), "the report's Run table says where the images were");
    assert!(html.contains("Where the model looked, for 3 test images"), "the explanations read their images from the ZIP");

    let predict = |cache: &str| {
        let csv = dir.path().join(format!("predict-{cache}.csv"));
        let o = run(&[
            "predict", "--model", ram.join(outputs::BEST_MODEL).to_str().unwrap(), "--images", sample_zip().to_str().unwrap(),
            "--metadata", sample_csv().to_str().unwrap(), "--threads", "2", "--cache", cache, "--output", csv.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("decoded images: {}", if cache == "ram" { "in memory" } else { "read from the ZIP" })), "{}", stderr(&o));
        std::fs::read_to_string(csv).unwrap()
    };
    assert_eq!(predict("ram"), predict("none"));
}

/// A job reading its images from the ZIP (`--cache none`) whose ZIP is then truncated, or has
/// bytes overwritten inside it, by another process: exit 2 with a message naming the file and
/// saying it changed, no panic, and no output written.
#[test]
fn a_zip_that_changes_under_a_running_job_stops_it_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for change in ["truncated", "overwritten"] {
        let images = dir.path().join(format!("{change}.zip"));
        std::fs::copy(sample_zip(), &images).unwrap();
        let out = dir.path().join(change);
        let mut child = bin()
            .args(["train", "--images", images.to_str().unwrap(), "--metadata", sample_csv().to_str().unwrap(),
                   "--model", "resnet18", "--use-pretrained", "false", "--epochs", "40", "--image-size", "32",
                   "--threads", "2", "--device", "cpu", "--cache", "none", "--output-dir", out.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (log, lines) = stderr_until(&mut child, "epoch 1/40:");
        assert!(log.contains("decoded images: read from the ZIP for each batch"), "{log}");
        let mut f = std::fs::OpenOptions::new().write(true).open(&images).unwrap();
        let len = f.metadata().unwrap().len();
        if change == "truncated" {
            f.set_len(len / 3).unwrap();
        } else {
            // The middle third holds image data: every entry there fails its checksum or its decoding.
            f.seek(SeekFrom::Start(len / 3)).unwrap();
            f.write_all(&vec![0x5a; (len / 3) as usize]).unwrap();
        }
        drop(f);
        let status = child.wait().unwrap();
        let rest: String = lines.map(|l| l.unwrap() + "\n").collect();
        assert_eq!(status.code(), Some(2), "{change}: {rest}");
        assert!(rest.contains(&format!("{change}.zip:")) && rest.contains("the ZIP changed while the job ran"), "{change}: {rest}");
        assert!(!rest.contains("panicked"), "{rest}");
        let left: Vec<_> = std::fs::read_dir(&out).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{change}: nothing written, found {left:?}");
    }
}
