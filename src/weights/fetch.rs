//! Published weights, downloaded into the weights folder: by `weights fetch`, and by `train
//! --use-pretrained true` when they are not installed yet. The folder is a cache that concurrent
//! jobs share: one job downloads under a lock while the others wait and then use its file. A
//! download is checked (the SHA-256 its source publishes, else its announced size, then a full
//! parse) before it is renamed into place, so the cache never holds a partial or wrong file.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::bail_input;
use crate::error::input_error;
use crate::models::ModelSpec;

/// Set (to anything but empty or 0) to forbid downloads: a missing file is then an error at once.
pub const OFFLINE_ENV: &str = "IMAGE_LEARNER_OFFLINE";
/// Replaces the scheme and host of the published URLs (a mirror, or a test's server).
pub const BASE_URL_ENV: &str = "IMAGE_LEARNER_WEIGHTS_URL";
/// Seconds an answer or a read may stall before the attempt counts as failed (default 60; a
/// connection gets at most 5).
pub const TIMEOUT_ENV: &str = "IMAGE_LEARNER_FETCH_TIMEOUT";

const ATTEMPTS: u32 = 3;
/// The longest stall `TIMEOUT_ENV` may allow: an hour, the whole download's limit.
const LONGEST_STALL: f64 = 3600.0;

/// The seconds of `TIMEOUT_ENV`'s value (60 when unset or empty); anything but a number of
/// seconds above 0 and at most an hour is refused, naming the variable.
fn stall_seconds(value: Option<&str>) -> Result<f64> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(60.0) };
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= LONGEST_STALL => Ok(s),
        _ => crate::bail_input!(
            "{TIMEOUT_ENV}={v} is not a number of seconds above 0 and at most {LONGEST_STALL}: set it to, say, 60, or unset it"
        ),
    }
}
const LARGEST: u64 = 4 << 30;

/// Where `spec`'s weights come from: the published URL, under `BASE_URL_ENV` when it is set.
pub fn source_url(spec: &ModelSpec) -> Option<String> {
    let published = spec.weights_url.as_deref()?;
    let Some(base) = std::env::var(BASE_URL_ENV).ok().filter(|b| !b.is_empty()) else {
        return Some(published.to_string());
    };
    let path = published.split_once("://").map_or(published, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
    Some(format!("{}{path}", base.trim_end_matches('/')))
}

fn offline() -> bool {
    std::env::var(OFFLINE_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The installed weights of `spec` in `dir`, downloaded first when they are missing. It never
/// falls back to random weights: a failed download is an error that says what to do.
pub fn ensure(spec: &ModelSpec, dir: &Path) -> Result<PathBuf> {
    if let Ok(file) = super::require(spec, dir) {
        return Ok(file);
    }
    if offline() || spec.weights_url.is_none() {
        let why = if offline() { format!("{OFFLINE_ENV} is set, so nothing is downloaded") } else { format!("no published weights are known for {}", spec.name) };
        return super::require(spec, dir).map_err(|e| input_error(format!("{e} ({why})")));
    }
    install(spec, dir, true)
}

/// `weights fetch`: downloads and installs the published weights, replacing any installed ones.
pub fn fetch(spec: &ModelSpec, dir: &Path) -> Result<PathBuf> {
    if spec.weights_url.is_none() {
        bail_input!("no published weights are known for {}", spec.name);
    }
    if offline() {
        bail_input!("{OFFLINE_ENV} is set: nothing is downloaded. Install the {} weights with `image-learner weights import {} FILE`", spec.name, spec.name);
    }
    install(spec, dir, false)
}

/// Downloads under the folder's lock for `spec`. With `reuse`, a file that another job installed
/// while this one waited for the lock is taken as it is.
fn install(spec: &ModelSpec, dir: &Path, reuse: bool) -> Result<PathBuf> {
    super::installable(spec, dir)?;
    let lock_path = dir.join(format!(".{}.lock", spec.name));
    let lock = std::fs::File::create(&lock_path).map_err(|e| input_error(format!("cannot write in the weights folder {}: {e}", dir.display())))?;
    if lock.try_lock().is_err() {
        eprintln!("weights: another job is downloading {} into {}; waiting for it", spec.name, dir.display());
        lock.lock().map_err(|e| input_error(format!("cannot lock {}: {e}", lock_path.display())))?;
    }
    if reuse {
        if let Ok(file) = super::require(spec, dir) {
            return Ok(file);
        }
    }
    let url = source_url(spec).unwrap_or_default();
    eprintln!("weights: downloading the {} weights from {url} into {}", spec.name, dir.display());
    let ext = if url.ends_with(".safetensors") { "safetensors" } else { "pth" };
    let download = dir.join(format!(".{}.download.{ext}", spec.name));
    let result = attempts(spec, &url, &download).and_then(|()| {
        super::import(spec, &download, dir).map_err(|e| {
            input_error(format!(
                "the {} weights downloaded from {url} do not load: {e:#}. Nothing was installed, and the run does not train on \
                 random weights. Check {BASE_URL_ENV} if it is set, or install the file with `image-learner weights import {} FILE`",
                spec.name, spec.name
            ))
        })
    });
    let _ = std::fs::remove_file(&download);
    result
}

/// Why one attempt failed, and whether another may succeed.
struct Failure {
    message: String,
    retry: bool,
}

fn attempts(spec: &ModelSpec, url: &str, download: &Path) -> Result<()> {
    let stall = Duration::from_secs_f64(stall_seconds(std::env::var(TIMEOUT_ENV).ok().as_deref())?);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(stall.min(Duration::from_secs(5))))
        .timeout_recv_response(Some(stall))
        .timeout_per_read(Some(stall))
        .timeout_global(Some(Duration::from_secs(3600)))
        .build()
        .into();
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match download_once(&agent, url, download) {
            Ok(()) => return Ok(()),
            Err(f) => {
                let _ = std::fs::remove_file(download);
                last = f.message;
                if !f.retry || attempt == ATTEMPTS {
                    break;
                }
                let wait = Duration::from_secs(1 << (attempt - 1));
                eprintln!("weights: attempt {attempt} of {ATTEMPTS} failed ({last}); trying again in {} s", wait.as_secs());
                std::thread::sleep(wait);
            }
        }
    }
    bail_input!(
        "cannot download the {} weights from {url}: {last}. Nothing was installed, and the run does not train on random weights. \
         Where this machine has no internet, download the file elsewhere and install it with `image-learner weights import {} FILE`, \
         or train from scratch with --use-pretrained false",
        spec.name,
        spec.name
    )
}

/// One GET into `download`, hashing as it writes, then the checks against what the source says.
fn download_once(agent: &ureq::Agent, url: &str, download: &Path) -> std::result::Result<(), Failure> {
    let transient = |message: String| Failure { message, retry: true };
    // A host that cannot be reached now will not be reached in a few seconds either: no retry, so
    // that a machine without internet stops at once.
    let unreachable = |why: String| Failure { message: format!("cannot reach the server ({why})"), retry: false };
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => Failure { message: format!("the server answered HTTP {code}"), retry: code >= 500 || code == 429 },
        ureq::Error::HostNotFound => unreachable("host not found".into()),
        ureq::Error::ConnectionFailed => unreachable("connection failed".into()),
        ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => unreachable("no connection within the time limit".into()),
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => unreachable("connection refused".into()),
        ureq::Error::Timeout(_) => transient("no answer within the time limit".into()),
        other => transient(other.to_string()),
    })?;
    let headers = response.headers();
    let announced: Option<u64> = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let expected = published_sha256(url, headers);
    let mut file = std::fs::File::create(download).map_err(|e| Failure { message: format!("cannot write {}: {e}", download.display()), retry: false })?;
    let mut body = response.body_mut().with_config().limit(LARGEST).reader();
    let (mut hasher, mut size, mut buf) = (Sha256::new(), 0u64, vec![0u8; 1 << 20]);
    loop {
        let n = body.read(&mut buf).map_err(|e| transient(format!("the download broke off after {size} bytes ({e})")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| Failure { message: format!("cannot write {}: {e}", download.display()), retry: false })?;
        size += n as u64;
    }
    file.sync_all().map_err(|e| Failure { message: format!("cannot write {}: {e}", download.display()), retry: false })?;
    if let Some(n) = announced.filter(|&n| n != size) {
        return Err(transient(format!("the download has {size} bytes where the server announced {n}")));
    }
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    match expected {
        Some(want) if !digest.starts_with(&want) => {
            Err(transient(format!("its SHA-256 is {digest} where the source publishes {want}: the file is corrupt")))
        }
        _ => Ok(()),
    }
}

/// The SHA-256 (or its first hex digits) the source publishes: the Hugging Face hub gives the
/// whole digest as the ETag of a large file, and torchvision puts its first digits in the file
/// name (`resnet18-f37072fd.pth`), as `torch.hub` checks it.
fn published_sha256(url: &str, headers: &ureq::http::HeaderMap) -> Option<String> {
    let tag = ["x-linked-etag", "etag"].iter().find_map(|h| headers.get(*h)).and_then(|v| v.to_str().ok());
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some(tag) = tag.map(|t| t.trim_start_matches("W/").trim_matches('"').to_ascii_lowercase()).filter(|t| t.len() == 64 && hex(t)) {
        return Some(tag);
    }
    let stem = url.rsplit('/').next()?.strip_suffix(".pth")?;
    let (_, prefix) = stem.rsplit_once('-')?;
    (prefix.len() >= 8 && hex(prefix)).then(|| prefix.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_timeout_is_a_number_of_seconds_up_to_an_hour() {
        assert_eq!(stall_seconds(None).unwrap(), 60.0);
        assert_eq!(stall_seconds(Some(" ")).unwrap(), 60.0);
        assert_eq!(stall_seconds(Some("2.5")).unwrap(), 2.5);
        for bad in ["inf", "1e20", "0", "-3", "NaN", "soon"] {
            let e = stall_seconds(Some(bad)).unwrap_err();
            assert_eq!(crate::error::kind_of(&e), crate::error::ErrorKind::BadInput, "{bad}");
            assert!(e.to_string().contains(&format!("{TIMEOUT_ENV}={bad} is not a number of seconds")), "{e}");
        }
    }

    #[test]
    fn the_published_digest_comes_from_the_etag_or_the_torchvision_file_name() {
        let mut h = ureq::http::HeaderMap::new();
        let digest = "ab".repeat(32);
        assert_eq!(published_sha256("https://download.pytorch.org/models/resnet18-f37072fd.pth", &h).as_deref(), Some("f37072fd"));
        assert_eq!(published_sha256("https://x/models/efficientnet_b5_lukemelas-1a07897c.pth", &h).as_deref(), Some("1a07897c"));
        assert_eq!(published_sha256("https://huggingface.co/timm/a/resolve/main/model.safetensors", &h), None, "no digest: size and parse only");
        assert_eq!(published_sha256("https://x/models/vgg-net.pth", &h), None, "not hex");
        h.insert("etag", format!("\"{}\"", digest.to_uppercase()).parse().unwrap());
        assert_eq!(published_sha256("https://huggingface.co/timm/a/resolve/main/model.safetensors", &h), Some(digest.clone()));
        h.insert("etag", "\"33-abc\"".parse().unwrap());
        assert_eq!(published_sha256("https://h/model.safetensors", &h), None, "a short ETag is no digest");
        h.insert("x-linked-etag", format!("\"{digest}\"").parse().unwrap());
        assert_eq!(published_sha256("https://h/model.safetensors", &h), Some(digest), "the hub's linked ETag first");
    }
}
