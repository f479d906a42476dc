//! Weights that arrive by themselves, against a server this test starts on 127.0.0.1 with the
//! hub's URL layout. It serves an EfficientNet-Lite0 checkpoint made here, or a broken copy of
//! it.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::common::*;
use sha2::{Digest, Sha256};

const PATH: &str = "/timm/efficientnet_lite0.ra_in1k/resolve/main/model.safetensors";

/// What the server does with a request for the weights.
#[derive(Clone, Copy)]
enum Serve {
    /// The file, its length and its SHA-256 as the ETag, after a delay.
    Good(Duration),
    /// The file with one byte changed, under the good file's ETag.
    Corrupt,
    /// The good length announced, half the bytes sent, the connection closed.
    Truncated,
    /// Bytes that are no checkpoint, with no ETag (only the parse can tell).
    Garbage,
    /// Nothing, ever.
    Silent,
    Missing,
}

/// EfficientNet-Lite0 weights as the hub would serve them: a seeded initialisation with the
/// ImageNet head, in timm's names. What is checked here is the download, not the values (the real
/// weights' import is `reference::checkpoints`). Made once per test binary.
fn weights_file() -> &'static Vec<u8> {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let spec = image_learner::models::find("efficientnet_lite0").unwrap();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _ = spec.build(&vs.root(), 1000);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.safetensors");
        let mut named: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        tch::Tensor::write_safetensors(&named, &file).unwrap();
        std::fs::read(file).unwrap()
    })
}

/// Starts the server; returns its base URL and the count of requests for the weights.
fn server(mode: Serve) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let file = weights_file().clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (file, counter) = (file.clone(), counter.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap_or(0);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let mut out = stream;
                if !request.contains(PATH) {
                    let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let digest: String = Sha256::digest(&file).iter().map(|b| format!("{b:02x}")).collect();
                let head = |len: usize, etag: bool| {
                    let tag = if etag { format!("ETag: \"{digest}\"\r\n") } else { String::new() };
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{tag}Connection: close\r\n\r\n")
                };
                let _ = match mode {
                    Serve::Good(delay) => {
                        std::thread::sleep(delay);
                        out.write_all(head(file.len(), true).as_bytes()).and_then(|_| out.write_all(&file))
                    }
                    Serve::Corrupt => {
                        let mut bad = file.clone();
                        let i = bad.len() / 2;
                        bad[i] ^= 0x55;
                        out.write_all(head(bad.len(), true).as_bytes()).and_then(|_| out.write_all(&bad))
                    }
                    Serve::Truncated => out.write_all(head(file.len(), true).as_bytes()).and_then(|_| out.write_all(&file[..file.len() / 2])),
                    Serve::Garbage => out.write_all(head(1000, false).as_bytes()).and_then(|_| out.write_all(&[7u8; 1000])),
                    Serve::Silent => {
                        std::thread::sleep(Duration::from_secs(60));
                        Ok(())
                    }
                    Serve::Missing => out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            });
        }
    });
    (base, hits)
}

fn command(base: &str, dir: &Path, args: &[&str]) -> std::process::Command {
    let mut c = bin();
    c.args(args).args(["--weights-dir", dir.to_str().unwrap()]);
    c.env("IMAGE_LEARNER_WEIGHTS_URL", base).env_remove("IMAGE_LEARNER_OFFLINE").env_remove("IMAGE_LEARNER_FETCH_TIMEOUT");
    c
}

fn train_args(out: &Path) -> Vec<String> {
    [
        "train", "--images", sample_zip().to_str().unwrap(), "--metadata", sample_csv().to_str().unwrap(),
        "--model", "efficientnet_lite0", "--use-pretrained", "true", "--epochs", "1", "--image-size", "32",
        "--threads", "1", "--device", "cpu", "--output-dir", out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// The files a failed download may not leave in the weights folder (its lock file aside).
fn left_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| !p.to_string_lossy().ends_with(".lock")).collect())
        .unwrap_or_default()
}

/// Two jobs that need the same missing weights at once: one download, both train, and the
/// installed file holds the served weights.
#[test]
fn missing_weights_are_fetched_once_for_jobs_that_start_together() {
    let (base, hits) = server(Serve::Good(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("cache");
    let jobs: Vec<_> = (0..2)
        .map(|i| {
            let args = train_args(&dir.path().join(format!("out{i}")));
            command(&base, &weights, &args.iter().map(String::as_str).collect::<Vec<_>>()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let logs: Vec<String> = jobs.into_iter().map(|j| {
        let o = j.wait_with_output().unwrap();
        let err = stderr(&o);
        assert!(o.status.success(), "{err}");
        err
    }).collect();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one download for both jobs: {logs:?}");
    assert_eq!(logs.iter().filter(|l| l.contains("weights: downloading the efficientnet_lite0 weights from http://127.0.0.1")).count(), 1, "{logs:?}");
    let installed = weights.join("efficientnet_lite0.safetensors");
    let served_file = dir.path().join("served.safetensors");
    std::fs::write(&served_file, weights_file()).unwrap();
    let served: std::collections::HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(&served_file).unwrap().into_iter().collect();
    let got: std::collections::HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(&installed).unwrap().into_iter().collect();
    assert_eq!(served.len(), got.len());
    for (name, t) in &served {
        assert!(t.equal(&got[name]), "{name} installed as served");
    }
    for i in 0..2 {
        let html = std::fs::read_to_string(dir.path().join(format!("out{i}/report.html"))).unwrap();
        assert!(html.contains("efficientnet_lite0.safetensors"), "the report names the pretrained file");
    }
    // A third job finds them installed and asks the server for nothing.
    let o = command(&base, &weights, &train_args(&dir.path().join("out2")).iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
    assert!(o.status.success() && !stderr(&o).contains("downloading"), "{}", stderr(&o));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

/// Downloads that fail: a clear error, exit 2, nothing installed, and never a run on random
/// weights. A 404 is not retried; a corrupt, cut or unparseable file or a silent server is
/// tried three times.
#[test]
fn failed_downloads_leave_nothing_and_say_why() {
    let cases: [(Serve, &str, usize); 5] = [
        (Serve::Missing, "the server answered HTTP 404", 1),
        (Serve::Corrupt, "where the source publishes", 3),
        (Serve::Truncated, "the download", 3),
        (Serve::Garbage, "efficientnet_lite0", 1),
        (Serve::Silent, "no answer within the time limit", 3),
    ];
    for (mode, expect, requests) in cases {
        let (base, hits) = server(mode);
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("cache");
        let started = Instant::now();
        let o = command(&base, &weights, &["weights", "fetch", "efficientnet_lite0"]).env("IMAGE_LEARNER_FETCH_TIMEOUT", "1").output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(expect) && err.contains("Nothing was installed"), "expected '{expect}' in: {err}");
        assert!(left_in(&weights).is_empty(), "left behind: {:?}", left_in(&weights));
        assert_eq!(hits.load(Ordering::SeqCst), requests, "{err}");
        assert!(started.elapsed() < Duration::from_secs(30), "gives up in time: {:?}", started.elapsed());
        // Training with those weights stops the same way, before any data is read.
        let out = dir.path().join("out");
        let o = command(&base, &weights, &train_args(&out).iter().map(String::as_str).collect::<Vec<_>>())
            .env("IMAGE_LEARNER_FETCH_TIMEOUT", "1")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("does not train on random weights"), "{}", stderr(&o));
        assert!(!out.join("best_model.zip").exists());
    }
}

/// Offline, a missing file stops the run at once with the message that says how to install it,
/// and the server hears nothing.
#[test]
fn offline_runs_stop_at_once_without_asking_the_server() {
    let (base, hits) = server(Serve::Good(Duration::ZERO));
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("cache");
    let started = Instant::now();
    let o = command(&base, &weights, &train_args(&dir.path().join("out")).iter().map(String::as_str).collect::<Vec<_>>())
        .env("IMAGE_LEARNER_OFFLINE", "1")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no weights for efficientnet_lite0") && err.contains("IMAGE_LEARNER_OFFLINE is set, so nothing is downloaded"), "{err}");
    assert!(err.contains("weights import efficientnet_lite0"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// A weights folder that cannot take the file: a folder where the file goes, or a write that
/// fails. Import and fetch stop with exit 2, naming the folder; nothing is left behind, and the
/// server is not asked for a file that could not be installed.
#[test]
fn a_weights_folder_that_cannot_take_the_file_is_named() {
    let (base, hits) = server(Serve::Good(Duration::ZERO));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lite0.safetensors");
    std::fs::write(&file, weights_file()).unwrap();
    let weights = dir.path().join("cache");
    std::fs::create_dir_all(weights.join("efficientnet_lite0.safetensors")).unwrap();
    for args in [vec!["weights", "import", "efficientnet_lite0", file.to_str().unwrap()], vec!["weights", "fetch", "efficientnet_lite0"]] {
        let o = command(&base, &weights, &args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("efficientnet_lite0.safetensors is a folder, not a file; remove it, or give another --weights-dir"), "{}", stderr(&o));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing downloaded for a file that cannot be installed");
    assert_eq!(left_in(&weights), vec![weights.join("efficientnet_lite0.safetensors")]);
    // The write itself fails (its temporary's name is taken by a folder).
    let blocked = dir.path().join("blocked");
    std::fs::create_dir_all(blocked.join(".efficientnet_lite0.safetensors.partial")).unwrap();
    let o = command(&base, &blocked, &["weights", "import", "efficientnet_lite0", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("cannot install the efficientnet_lite0 weights in the weights folder {}", blocked.display())), "{}", stderr(&o));
    assert_eq!(left_in(&blocked), vec![blocked.join(".efficientnet_lite0.safetensors.partial")], "no file left but the folder in the way");
}
