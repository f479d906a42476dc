//! The README's bad-input table, end to end through the binary: images and ZIPs that are
//! damaged or hostile, divergence, full disks, unwritable folders, signals and memory limits.
//! (Table and option problems with a one-line error are in bad_input.rs and the unit tests.)
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// The sample's images plus `extra` entries, and a CSV naming all of them.
fn zip_with(dir: &Path, extra: &[(&str, Vec<u8>, &str)]) -> (PathBuf, PathBuf) {
    let mut w = zip::ZipWriter::new_append(Cursor::new(sample_zip_after(&[]))).unwrap();
    let opts = zip::write::SimpleFileOptions::default();
    let mut csv = std::fs::read_to_string(sample_csv()).unwrap();
    for (name, data, label) in extra {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
        let base = name.rsplit('/').next().unwrap();
        csv.push_str(&format!("{base},{label}\n"));
    }
    let zip = dir.join("images.zip");
    std::fs::write(&zip, w.finish().unwrap().into_inner()).unwrap();
    let meta = dir.join("meta.csv");
    std::fs::write(&meta, csv).unwrap();
    (zip, meta)
}

fn train(zip: &Path, meta: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train", "--images", zip.to_str().unwrap(), "--metadata", meta.to_str().unwrap(),
        "--model", "resnet18", "--use-pretrained", "false",
        "--epochs", "1", "--image-size", "32", "--device", "cpu", "--threads", "2",
        "--output-dir", out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// `train` on the bundled sample with one environment variable set.
fn train_sample_with_env(var: (&str, &str), out: &Path, epochs: &str, size: &str) -> std::process::Output {
    bin()
        .env(var.0, var.1)
        .args(["train", "--images", sample_zip().to_str().unwrap(), "--metadata", sample_csv().to_str().unwrap(),
               "--model", "resnet18", "--use-pretrained", "false",
               "--epochs", epochs, "--image-size", size, "--device", "cpu", "--output-dir", out.to_str().unwrap()])
        .output()
        .unwrap()
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([120, 30, 200]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn outputs_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}

const OUTPUTS: [&str; 5] = ["best_model.zip", "metrics.json", "predictions.csv", "report.html", "training_history.csv"];

#[test]
fn damaged_images_are_left_out_with_a_warning_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let full = png(20, 20);
    let mut bomb = png(8, 8);
    bomb[16..20].copy_from_slice(&40000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&40000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let (zip, meta) = zip_with(dir.path(), &[
        ("images/truncated.png", full[..full.len() / 2].to_vec(), "circle"),
        ("images/empty.png", Vec::new(), "circle"),
        ("images/text.png", b"this is not a picture".to_vec(), "square"),
        ("images/bomb.png", bomb, "square"),
        ("images/tiny.png", png(1, 1), "triangle"),
        ("../escape/evil.png", png(16, 16), "triangle"),
        ("/absolute/abs.png", png(16, 16), "circle"),
    ]);
    let out = dir.path().join("out");
    let o = train(&zip, &meta, &out, &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("4 image(s) in images.zip could not be used and were left out"), "{err}");
    for (name, why) in [("truncated.png", "damaged or truncated"), ("empty.png", "empty file"), ("text.png", "not an image"), ("bomb.png", "above the limit")] {
        assert!(err.contains(name) && err.contains(why), "{name}: {why}: {err}");
    }
    assert!(err.contains("1 image(s) are smaller than 8x8 pixels"), "{err}");
    assert!(err.contains("183 of 187 rows matched"), "the ../ and absolute entries are matched by name: {err}");
    // Nothing is ever extracted: no file appears outside the output folder.
    assert!(!dir.path().join("escape").exists() && !Path::new("/absolute").exists() && !Path::new("../escape").exists());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("could not be used and were left out"));
}

#[test]
fn hostile_and_damaged_zips_stop_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fails = |zip: &Path, meta: &Path, expect: &str| {
        let out = d.join("out");
        let o = train(zip, meta, &out, &[]);
        assert_eq!(o.status.code(), Some(2), "{expect}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "expected '{expect}': {}", stderr(&o));
        assert!(outputs_in(&out).is_empty(), "{:?}", outputs_in(&out));
    };
    // A ZIP bomb: one entry that inflates past the per-entry limit, refused while reading.
    let sub = d.join("bomb");
    std::fs::create_dir_all(&sub).unwrap();
    let (zip, meta) = zip_with(&sub, &[("images/huge.png", vec![0u8; (256 << 20) + 4096], "circle")]);
    assert!(std::fs::metadata(&zip).unwrap().len() < 5 << 20, "the bomb is small on disk");
    fails(&zip, &meta, "decompresses to more than 256 MiB");
    // Truncated ZIP.
    let bytes = std::fs::read(sample_zip()).unwrap();
    let cut = d.join("cut.zip");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(&cut, &sample_csv(), "is not a readable ZIP archive");
    // Encrypted ZIP: the encryption flag set on every entry.
    let mut enc = bytes.clone();
    for sig in [&b"PK\x03\x04"[..], &b"PK\x01\x02"[..]] {
        let off = if sig[2] == 3 { 6 } else { 8 };
        let mut i = 0;
        while let Some(p) = enc[i..].windows(4).position(|w| w == sig) {
            enc[i + p + off] |= 1;
            i += p + 4;
        }
    }
    let enc_path = d.join("enc.zip");
    std::fs::write(&enc_path, &enc).unwrap();
    fails(&enc_path, &sample_csv(), "encrypted");
}

#[test]
fn nan_loss_keeps_the_best_earlier_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = train_sample_with_env(("IMAGE_LEARNER_FAULT_NAN_EPOCH", "2"), &out, "4", "32");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("epoch 2: the training loss became NaN"));
    let hist = csv_rows(&out.join("training_history.csv"));
    assert_eq!(hist.len(), 2, "one epoch recorded before the divergence");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("became NaN or infinite in epoch 2"));
    // NaN in the very first epoch leaves no model to keep: an error, no outputs.
    let out1 = dir.path().join("out1");
    let o = train_sample_with_env(("IMAGE_LEARNER_FAULT_NAN_EPOCH", "1"), &out1, "2", "32");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no model to keep"));
    assert!(outputs_in(&out1).is_empty());
}

#[test]
fn unwritable_folder_and_full_disk_exit_4_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = train(&sample_zip(), &sample_csv(), &file.join("out"), &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write"));

    // A 2 MB disk: the Best Model does not fit.
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"]).arg(&small).status().unwrap();
    assert!(mounted.success(), "mounting a small tmpfs needs root, as on CI");
    let o = train(&sample_zip(), &sample_csv(), &small, &[]);
    let listing = outputs_in(&small);
    let _ = Command::new("umount").arg(&small).status();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("the disk is full"), "{}", stderr(&o));
    assert!(listing.is_empty(), "nothing half-written: {listing:?}");
}

#[test]
fn signals_leave_all_outputs_or_none() {
    use std::time::{Duration, Instant};
    // With the images read from the ZIP, the decoding threads end with the job too.
    for (sig, code, cache) in [(libc::SIGTERM, 143, "none"), (libc::SIGINT, 130, "ram")] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut child = bin()
            .args(["train", "--images", sample_zip().to_str().unwrap(), "--metadata", sample_csv().to_str().unwrap(),
                   "--model", "resnet18", "--use-pretrained", "false", "--cache", cache,
                   "--epochs", "50", "--image-size", "48", "--device", "cpu", "--output-dir", out.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until training has started, then stop it.
        let started = Instant::now();
        while !out.exists() && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1500));
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "signal {sig}");
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(err.contains("no output was written"), "{err}");
        assert!(outputs_in(&out).is_empty(), "{:?}", outputs_in(&out));
    }
}

/// An earlier run's five outputs, each holding "old <name>".
fn earlier_outputs(out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for f in OUTPUTS {
        std::fs::write(out.join(f), format!("old {f}")).unwrap();
    }
}

/// How many of the five outputs are the earlier run's; panics unless the folder holds exactly
/// the five names, with no temporary beside them.
fn earlier_left(out: &Path) -> usize {
    let mut names = outputs_in(out);
    names.sort();
    assert_eq!(names, OUTPUTS.to_vec(), "exactly the five outputs, nothing staged left");
    OUTPUTS.iter().filter(|f| std::fs::read(out.join(f)).unwrap() == format!("old {f}").as_bytes()).count()
}

fn quick_train(out: &Path) -> Command {
    let mut c = bin();
    c.args(["train", "--images", sample_zip().to_str().unwrap(), "--metadata", sample_csv().to_str().unwrap(),
            "--model", "resnet18", "--use-pretrained", "false", "--epochs", "1", "--image-size", "32",
            "--device", "cpu", "--threads", "2", "--output-dir", out.to_str().unwrap()]);
    c
}

/// A rename that fails part-way through the commit, and a folder in the way of an output: the
/// earlier run's files stay exactly as they were, and nothing staged is left.
#[test]
fn a_failed_commit_leaves_the_earlier_outputs_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    earlier_outputs(&out);
    // Steps 1..10 are: move earlier file aside, put new file in place, for each of five outputs.
    let o = quick_train(&out).env("IMAGE_LEARNER_FAULT_COMMIT_STEP", "6").output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("fault injected at commit step 6"), "{}", stderr(&o));
    assert_eq!(earlier_left(&out), 5);

    let blocked = dir.path().join("blocked");
    std::fs::create_dir_all(blocked.join("report.html")).unwrap();
    std::fs::write(blocked.join("predictions.csv"), "old").unwrap();
    let o = quick_train(&blocked).output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("report.html: a folder of that name is in the way"), "{}", stderr(&o));
    let mut left = outputs_in(&blocked);
    left.sort();
    assert_eq!(left, ["predictions.csv", "report.html"]);
    assert_eq!(std::fs::read_to_string(blocked.join("predictions.csv")).unwrap(), "old");
}

/// Starts `quick_train` with its commit slowed, and returns it once training has ended (its
/// last epoch's line is out), with the instant that line came and the rest of its stderr to come.
fn train_until_last_epoch(out: &Path) -> (std::process::Child, std::time::Instant, std::thread::JoinHandle<String>) {
    const PAUSE_MS: &str = "120"; // per rename: the commit's ten renames take about 1.2 s
    let mut child = quick_train(out)
        .env("IMAGE_LEARNER_FAULT_COMMIT_PAUSE_MS", PAUSE_MS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (seen, lines) = stderr_until(&mut child, "epoch 1/1:");
    let at = std::time::Instant::now();
    let rest = std::thread::spawn(move || seen + &lines.map(|l| l.unwrap() + "\n").collect::<String>());
    (child, at, rest)
}

/// SIGTERM at instants spread over the last second or so of a run (from the end of training to
/// the exit; the commit slowed so that some land inside it): every time, the folder holds the
/// earlier five outputs or the complete new five.
#[test]
fn sigterm_over_the_final_second_leaves_the_old_outputs_or_all_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    // One run without a signal times the final stretch: evaluation, report, staging, commit.
    let out = dir.path().join("timing");
    earlier_outputs(&out);
    let (mut child, trained, rest) = train_until_last_epoch(&out);
    assert!(child.wait().unwrap().success(), "{}", rest.join().unwrap());
    let stretch = trained.elapsed();
    assert_eq!(earlier_left(&out), 0, "an undisturbed run replaces all five");

    let steps = 10;
    let (mut old, mut new) = (0, 0);
    for k in 0..steps {
        let out = dir.path().join(format!("sweep{k}"));
        earlier_outputs(&out);
        let (mut child, trained, rest) = train_until_last_epoch(&out);
        let at = stretch.mul_f64(k as f64 / (steps - 1) as f64 * 1.1);
        std::thread::sleep(at.saturating_sub(trained.elapsed()));
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        let err = rest.join().unwrap();
        let earlier = earlier_left(&out);
        assert!(earlier == 0 || earlier == 5, "signal {at:?} after training: {earlier} of 5 outputs are the earlier run's: {err}");
        match status.code() {
            Some(143) if earlier == 5 => {
                assert!(err.contains("no output was written"), "{err}");
                old += 1;
            }
            // A signal during the commit waits for it, then exits 143; the run may also reach its
            // own exit first (it ends at once after committing), with 0. All new, either way.
            Some(143) => {
                assert!(err.contains("after every output was written"), "{err}");
                new += 1;
            }
            Some(0) => {
                assert_eq!(earlier, 0);
                new += 1;
            }
            other => panic!("exit {other:?} for a signal {at:?} after training: {err}"),
        }
    }
    assert!(old > 0 && new > 0, "the sweep reached both sides of the commit: {old} old, {new} new");
}

#[test]
fn memory_limit_and_oversized_batches() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Memory that runs out inside a training step (libtorch's allocation fails): exit 3, one
    // line without libtorch's C++ trace, no outputs.
    let o = train_sample_with_env(("IMAGE_LEARNER_FAULT_OOM_STEP", "2"), &out, "1", "32");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("memory ran out while computing (") && err.contains("can't allocate memory"), "{err}");
    assert!(err.contains("use a smaller --batch-size or --image-size"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("frame #") && !err.contains("Result::unwrap"), "{err}");
    assert!(outputs_in(&out).is_empty(), "{:?}", outputs_in(&out));

    // Decoded images that would not fit the memory Galaxy grants are read from the ZIP for each
    // batch instead (180 images at 128x128 take 9 MB; 1030 MB leaves 6 MB beside libtorch).
    let o = train_sample_with_env(("GALAXY_MEMORY_MB", "1030"), &out, "1", "128");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("decoded images: read from the ZIP for each batch (auto: 180 images at 128x128 take 9 MB decoded, more than 6 MB (1030 MB by GALAXY_MEMORY_MB"), "{}", stderr(&o));
    std::fs::remove_dir_all(&out).unwrap();

    let o = train(&sample_zip(), &sample_csv(), &out, &["--batch-size", "1000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("--batch-size 1000 is larger than the training set (126 images); using 126"));
    for f in OUTPUTS {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert_eq!(outputs_in(&out).len(), OUTPUTS.len(), "no staging folder or temporary file is left");
}

/// Class names are the user's text: in the report they are shown as text, never as markup, in
/// every place they appear (tables, plots, captions, explanations).
#[test]
fn markup_in_class_names_is_shown_as_text_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = [("circle", "<b>circle</b>"), ("square", "<img src=x onerror=alert(1)>"), ("triangle", "tri & \"angle\"")];
    let sample = std::fs::read_to_string(sample_csv()).unwrap();
    let mut csv = String::from("image_path,label\n");
    for line in sample.lines().skip(1) {
        let (image, label) = line.split_once(',').unwrap();
        let name = hostile.iter().find(|(plain, _)| *plain == label).unwrap().1;
        csv += &format!("{image},\"{}\"\n", name.replace('"', "\"\""));
    }
    let meta = dir.path().join("meta.csv");
    std::fs::write(&meta, csv).unwrap();
    let out = dir.path().join("out");
    let o = train(&sample_zip(), &meta, &out, &["--explain", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join(image_learner::outputs::REPORT)).unwrap();
    for raw in ["<b>circle", "<img src=x", "tri & \"angle\""] {
        assert!(!html.contains(raw), "'{raw}' reached the page as markup");
    }
    for escaped in ["&lt;b&gt;circle&lt;/b&gt;", "&lt;img src=x onerror=alert(1)&gt;"] {
        assert!(html.matches(escaped).count() >= 3, "'{escaped}' is shown in the tables, the plots and the captions");
    }
}
