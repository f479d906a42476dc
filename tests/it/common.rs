//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image_learner::config::TrainConfig;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_zip() -> PathBuf {
    repo().join("test-data/sample_images.zip")
}

pub fn sample_csv() -> PathBuf {
    repo().join("test-data/sample_metadata.csv")
}

/// A small, quick configuration on the bundled sample.
pub fn quick_config(out: &Path, epochs: usize) -> TrainConfig {
    let mut cfg = TrainConfig::new(sample_zip(), sample_csv(), out.to_path_buf(), "resnet18");
    cfg.epochs = epochs;
    cfg.batch_size = 16;
    cfg.image_size = Some(32);
    cfg.runtime.threads = Some(2);
    cfg.use_pretrained = false;
    cfg
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_image-learner"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Rows of a CSV file as string vectors, header first.
pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_path(path).unwrap();
    r.records().map(|rec| rec.unwrap().iter().map(String::from).collect()).collect()
}

/// A ZIP of `first` entries, then the bundled sample's images, in their order.
pub fn sample_zip_after(first: &[(&str, Vec<u8>)]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut src = zip::ZipArchive::new(std::fs::File::open(sample_zip()).unwrap()).unwrap();
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for (name, data) in first {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        w.start_file(f.name(), opts).unwrap();
        w.write_all(&buf).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Reads the stderr of `child` (spawned with it piped) up to and including the first line that
/// starts with `prefix`: what was read, and the lines still to come.
pub fn stderr_until(child: &mut std::process::Child, prefix: &str) -> (String, std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with(prefix) {
            break;
        }
    }
    (seen, lines)
}
