//! The Best Model: one ZIP with `model.safetensors` (reference parameter names, so it also loads
//! in PyTorch) and `config.json` (architecture, classes, input size, normalisation, options).
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use safetensors::tensor::{Dtype, TensorView, View};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::bail_input;
use crate::error::input_error;
use crate::config::TrainConfig;
use crate::task::{Classifier, Target, Task, TaskKind};
use crate::data::batches::Normalization;
use crate::models::ModelSpec;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BundleConfig {
    pub format_version: u32,
    pub tool_version: String,
    pub architecture: String,
    pub task: TaskKind,
    pub classes: Vec<String>,
    /// Square input size in pixels (`input_size` in bundles before 0.1.0's restructuring).
    #[serde(alias = "input_size")]
    pub image_size: usize,
    pub normalization: Normalization,
    pub best_epoch: usize,
    /// Batch size used for evaluation, so that `predict` reproduces the test predictions.
    pub eval_batch_size: usize,
    pub options: TrainConfig,
    /// The logits are divided by this before the softmax (`decisions`; 1 in earlier bundles).
    #[serde(default = "uncalibrated")]
    pub temperature: f32,
    /// Binary: the decision threshold on the second class's probability, and where it came
    /// from (earlier bundles: `options.threshold`).
    #[serde(default)]
    pub threshold: Option<f32>,
    #[serde(default)]
    pub threshold_source: Option<String>,
    /// Regression: the target column, its training mean and standard deviation, and the loss.
    #[serde(default)]
    pub target: Option<Target>,
    /// A cross-validated Best Model: its fold models, whose scores it averages (none: one model,
    /// in `model.safetensors`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

/// One fold model of a cross-validated Best Model: its weights' file in the ZIP (a state dict
/// with the reference's names, as `model.safetensors` is), its best epoch and its temperature.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Member {
    pub weights: String,
    pub fold: usize,
    pub best_epoch: usize,
    pub temperature: f32,
}

/// The ZIP member of fold `fold`'s weights (1-based).
pub fn member_file(fold: usize) -> String {
    format!("fold_{fold}.safetensors")
}

/// The most members a Best Model has (`--cross-validation`'s most folds).
const MAX_MEMBERS: usize = 10;

fn uncalibrated() -> f32 {
    1.0
}

struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Safetensors bytes of every variable of `vs` (a `spec` model), on the CPU, as float32, with the
/// integer buffers PyTorch's state dicts carry and ours computes instead: each batch norm's
/// `num_batches_tracked`, and the family's own (`ModelSpec::extra_buffer`).
pub fn safetensors_bytes(vs: &nn::VarStore, spec: &ModelSpec) -> Result<Vec<u8>> {
    let int64 = |shape: Vec<usize>, values: &[i64]| Raw { dtype: Dtype::I64, shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let mut raws: Vec<(String, Raw)> = Vec::new();
    for (name, t) in vs.variables() {
        let t = t
            .detach()
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let values = Vec::<f32>::try_from(t.flatten(0, -1))?;
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let shape = t.size().iter().map(|&d| d as usize).collect();
        if let Some(prefix) = name.strip_suffix(".running_mean") {
            raws.push((format!("{prefix}.num_batches_tracked"), int64(vec![], &[0])));
        }
        if let Some(buffer) = spec.extra_buffer.and_then(|f| f(&name)) {
            raws.push((buffer.name, int64(buffer.shape, &buffer.values)));
        }
        raws.push((
            name,
            Raw {
                dtype: Dtype::F32,
                shape,
                data,
            },
        ));
    }
    Ok(safetensors::tensor::serialize(
        raws.iter().map(|(n, r)| (n.as_str(), r)),
        &None,
    )?)
}

/// Float tensors by name from safetensors bytes (integer buffers are skipped).
pub fn read_safetensors(bytes: &[u8]) -> Result<HashMap<String, Tensor>> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .context("the weights are not valid safetensors")?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let view: TensorView = view;
        if view.dtype() != Dtype::F32 {
            continue;
        }
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.insert(
            name,
            Tensor::f_from_data_size(view.data(), &shape, Kind::Float)?,
        );
    }
    Ok(out)
}

/// A Best Model's ZIP in memory (`write_zip`).
pub fn to_zip(vs: &[&nn::VarStore], config: &BundleConfig) -> Result<Vec<u8>> {
    Ok(write_zip(Cursor::new(Vec::new()), vs, config)?.into_inner())
}

/// Writes a Best Model's ZIP into `out`: config.json, then one model's weights (`vs` alone) or
/// a cross-validated ensemble's, one variable store per member of `config.members`, in that
/// order, stored uncompressed (weights barely compress). Each member is serialised and written
/// before the next, so at most one member's bytes are held, never the archive's: written to a
/// file, five members of a 100 MB model cost 100 MB, not a gigabyte.
/// Errors are I/O errors, of the kind the file gave (a full disk stays `StorageFull`).
pub fn write_zip<W: Write + std::io::Seek>(out: W, vs: &[&nn::VarStore], config: &BundleConfig) -> std::io::Result<W> {
    let spec = crate::models::find(&config.architecture).map_err(std::io::Error::other)?;
    let names: Vec<String> = if config.members.is_empty() { vec!["model.safetensors".into()] } else { config.members.iter().map(|m| m.weights.clone()).collect() };
    if names.len() != vs.len() {
        return Err(std::io::Error::other(format!("{} weights for {} members", vs.len(), names.len())));
    }
    let config_json = serde_json::to_vec_pretty(config)?;
    let members = names.iter().zip(vs).map(|(name, v)| Ok((name.as_str(), Cow::Owned(safetensors_bytes(v, spec).map_err(std::io::Error::other)?))));
    write_members(out, &config_json, members)
}

/// The archive's one layout: config.json, then each member's weights in turn, stored
/// uncompressed. A member's bytes are asked for only when its turn comes.
fn write_members<'a, W: Write + std::io::Seek>(out: W, config_json: &[u8], members: impl IntoIterator<Item = std::io::Result<(&'a str, Cow<'a, [u8]>)>>) -> std::io::Result<W> {
    let mut w = zip::ZipWriter::new(Abandoning { inner: out, failed: false, at: 0 });
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("config.json", stored)?;
    w.write_all(config_json)?;
    for member in members {
        let (name, bytes) = member?;
        w.start_file(name, stored)?;
        w.write_all(&bytes)?;
    }
    Ok(w.finish()?.inner)
}

/// A writer that, after its first error, takes every later write and seek as done without doing
/// it. The zip crate's writer finishes its archive when dropped, and prints its own message when
/// that fails too; once a write has failed (a full disk), the archive is abandoned and its file
/// removed, so the finish must not reach the file again nor add a second message to ours.
struct Abandoning<W> {
    inner: W,
    failed: bool,
    /// The position, kept on after a failure so that the abandoned finish sees consistent offsets.
    at: u64,
}

impl<W: Write> Write for Abandoning<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed {
            self.at += buf.len() as u64;
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Ok(n) => {
                self.at += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed {
            return Ok(());
        }
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}

impl<W: std::io::Seek> std::io::Seek for Abandoning<W> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        use std::io::SeekFrom;
        if self.failed {
            self.at = match to {
                SeekFrom::Start(n) => n,
                SeekFrom::Current(d) | SeekFrom::End(d) => self.at.saturating_add_signed(d),
            };
            return Ok(self.at);
        }
        match self.inner.seek(to) {
            Ok(p) => {
                self.at = p;
                Ok(p)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

/// A Best Model's ZIP in memory from bytes already made: config.json's and each member's, by
/// name (tests use it to write edited or older bundles).
pub fn zip_members(config_json: &[u8], weights: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let members = weights.iter().map(|&(name, bytes)| Ok((name, Cow::Borrowed(bytes))));
    Ok(write_members(Cursor::new(Vec::new()), config_json, members)?.into_inner())
}

pub struct Bundle {
    pub config: BundleConfig,
    /// The weights by name: one map, or one per member of a cross-validated Best Model.
    pub weights: Vec<HashMap<String, Tensor>>,
}

impl Bundle {
    /// The task the model was trained for, with its classes and decision rule. An ensemble's
    /// decides on its members' averaged scores, each already calibrated (`member_tasks`).
    pub fn task(&self) -> Task {
        self.task_at(self.config.temperature)
    }

    fn task_at(&self, temperature: f32) -> Task {
        let c = &self.config;
        match &c.target {
            Some(t) => Task::Regress(t.clone()),
            None => Task::Classify(Classifier {
                kind: c.task,
                classes: c.classes.clone(),
                threshold: c.threshold.or(c.options.threshold.fixed()),
                temperature,
            }),
        }
    }

    /// The task each set of weights scores with: the model's own, or each member's, with its
    /// fold's temperature.
    pub fn member_tasks(&self) -> Vec<Task> {
        if self.config.members.is_empty() {
            return vec![self.task()];
        }
        self.config.members.iter().map(|m| self.task_at(m.temperature)).collect()
    }
}

/// The largest Best Model read, and the largest config.json in it.
const MAX_BUNDLE_BYTES: u64 = 8 << 30;
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads a Best Model. Everything in it is checked as untrusted input: a damaged or edited file
/// is an error that names it, never a crash.
pub fn read(path: &Path) -> Result<Bundle> {
    let name = path.display().to_string();
    let mut bytes = Vec::new();
    crate::data::open_input(path, "model", MAX_BUNDLE_BYTES)?
        .read_to_end(&mut bytes)
        .map_err(|e| input_error(format!("cannot read the model {name}: {e}")))?;
    from_bytes(&bytes, &name)
}

/// A Best Model from its bytes (`name` for messages).
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Bundle> {
    let not_ours = |why: &str| input_error(format!("{name} is not a Best Model made by image-learner ({why})"));
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| not_ours(&format!("not a readable ZIP: {e}")))?;
    let mut member = |m: &str, limit: u64| -> Result<Vec<u8>> {
        let f = zip.by_name(m).map_err(|e| match e {
            zip::result::ZipError::FileNotFound => not_ours(&format!("it has no {m}")),
            e => input_error(format!("{name}: {m} cannot be read ({e}); the file is damaged")),
        })?;
        let mut buf = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| input_error(format!("{name}: {m} is damaged ({e}); download or train the model again")))?;
        if buf.len() as u64 > limit {
            bail_input!("{name}: {m} is larger than {} MiB; it is not one image-learner wrote", limit >> 20);
        }
        Ok(buf)
    };
    let config_bytes = member("config.json", MAX_CONFIG_BYTES)?;
    let config: BundleConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| input_error(format!("{name}: config.json is not a Best Model's configuration ({e})")))?;
    check_config(&config, name)?;
    let files: Vec<String> = if config.members.is_empty() { vec!["model.safetensors".into()] } else { config.members.iter().map(|m| m.weights.clone()).collect() };
    let mut weights = Vec::with_capacity(files.len());
    for file in &files {
        let bytes = member(file, MAX_BUNDLE_BYTES)?;
        let tensors = read_safetensors(&bytes).map_err(|e| input_error(format!("{name}: {file} {e:#}")))?;
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        for n in names {
            if tch::no_grad(|| tensors[n].isfinite().all().int64_value(&[])) == 0 {
                bail_input!("{name}: the weight '{}' holds NaN or infinite values; the model is damaged: train it again", crate::error::short(n));
            }
        }
        weights.push(tensors);
    }
    Ok(Bundle { config, weights })
}

/// The configuration's values, each within what a training run can have written.
fn check_config(c: &BundleConfig, name: &str) -> Result<()> {
    let bad = |what: String| input_error(format!("{name}: config.json {what}; the file was edited or damaged: use the Best Model as training wrote it"));
    if c.format_version > FORMAT_VERSION {
        bail_input!("{name} was made by a newer image-learner (model format {}); update this tool", c.format_version);
    }
    let spec = crate::models::find(&c.architecture).map_err(|e| bad(format!("names an architecture this tool lacks ({e:#})")))?;
    if !(crate::config::MIN_IMAGE_SIZE..=crate::config::MAX_IMAGE_SIZE).contains(&c.image_size) || c.image_size < spec.min_size {
        return Err(bad(format!(
            "has image_size {}, outside {}..{} for {}",
            c.image_size,
            crate::config::MIN_IMAGE_SIZE.max(spec.min_size),
            crate::config::MAX_IMAGE_SIZE,
            spec.name
        )));
    }
    match (c.task, &c.target) {
        (TaskKind::Regression, None) => return Err(bad("says regression but has no target".into())),
        (TaskKind::Regression, Some(t)) => {
            if !(t.mean.is_finite() && t.sd.is_finite() && t.sd > 0.0) {
                return Err(bad(format!("has the target mean {} and standard deviation {}", t.mean, t.sd)));
            }
            if !c.classes.is_empty() {
                return Err(bad(format!("says regression but lists {} classes", c.classes.len())));
            }
        }
        (TaskKind::Auto, _) => return Err(bad("has the task 'auto', which a trained model never has".into())),
        (_, Some(_)) => return Err(bad(format!("says {} but has a regression target", c.task.name()))),
        (_, None) if c.classes.len() < 2 || c.classes.len() > 100_000 => {
            return Err(bad(format!("lists {} classes", c.classes.len())));
        }
        (_, None) => {}
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = c.classes.iter().find(|k| k.is_empty() || !seen.insert(k.as_str())) {
        return Err(bad(format!("lists the class '{}' twice or empty", crate::error::short(dup))));
    }
    if c.task == TaskKind::Binary && c.classes.len() != 2 {
        return Err(bad(format!("says binary but lists {} classes", c.classes.len())));
    }
    if !(1..=65_536).contains(&c.eval_batch_size) {
        return Err(bad(format!("has eval_batch_size {}", c.eval_batch_size)));
    }
    let n = &c.normalization;
    if !n.mean.iter().chain(&n.std).all(|v| v.is_finite()) || n.std.iter().any(|&v| v <= 0.0) {
        return Err(bad(format!("has the normalisation mean {:?}, std {:?}", n.mean, n.std)));
    }
    if let Some(t) = c.threshold.or(c.options.threshold.fixed()) {
        if !(t > 0.0 && t < 1.0) {
            return Err(bad(format!("has the threshold {t}")));
        }
    }
    if !(c.temperature.is_finite() && c.temperature > 0.0) {
        return Err(bad(format!("has the temperature {}", c.temperature)));
    }
    if c.members.len() == 1 || c.members.len() > MAX_MEMBERS {
        return Err(bad(format!("lists {} members (an ensemble has 2 to {MAX_MEMBERS})", c.members.len())));
    }
    for (i, m) in c.members.iter().enumerate() {
        if m.weights != member_file(i + 1) || m.fold != i + 1 {
            return Err(bad(format!("lists the member '{}' (fold {}) where fold {}'s is expected", crate::error::short(&m.weights), m.fold, i + 1)));
        }
        if !(m.temperature.is_finite() && m.temperature > 0.0) {
            return Err(bad(format!("has the temperature {} for fold {}", m.temperature, m.fold)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BundleConfig {
        BundleConfig {
            format_version: FORMAT_VERSION,
            tool_version: "0.1.0".into(),
            architecture: "resnet18".into(),
            task: TaskKind::Classification,
            classes: vec!["a".into(), "b".into(), "c".into()],
            image_size: 32,
            normalization: crate::data::batches::IMAGENET,
            best_epoch: 1,
            eval_batch_size: 64,
            options: TrainConfig::new("i.zip".into(), "m.csv".into(), "out".into(), "resnet18"),
            temperature: 1.0,
            threshold: None,
            threshold_source: None,
            target: None,
            members: Vec::new(),
        }
    }

    fn zip_with(config_json: &[u8], weights: &[u8]) -> Vec<u8> {
        zip_members(config_json, &[("model.safetensors", weights)]).unwrap()
    }

    fn refused(bytes: &[u8]) -> String {
        let e = from_bytes(bytes, "best_model.zip").err().expect("refused");
        assert_eq!(crate::error::kind_of(&e), crate::error::ErrorKind::BadInput, "{e:#}");
        let text = format!("{e:#}");
        assert!(text.contains("best_model.zip"), "names the file: {text}");
        text
    }

    /// A disk that fills up part-way through the weights: the error keeps the file's kind (so the
    /// run says the disk is full), and the abandoned archive writes nothing more after it.
    #[test]
    fn a_full_disk_part_way_is_reported_as_full_and_written_no_further() {
        /// A file on a disk with `room` bytes.
        struct Disk {
            file: Cursor<Vec<u8>>,
            room: u64,
            writes_after_full: usize,
        }
        impl Write for Disk {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if self.file.position() + buf.len() as u64 > self.room {
                    self.writes_after_full += 1;
                    return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
                }
                self.file.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl std::io::Seek for Disk {
            fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
                self.file.seek(to)
            }
        }
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _net = crate::models::find("resnet18").unwrap().build(&vs.root(), 3);
        let mut disk = Disk { file: Cursor::new(Vec::new()), room: 1 << 20, writes_after_full: 0 };
        let e = write_zip(&mut disk, &[&vs], &config()).err().expect("the weights do not fit in 1 MB");
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
        assert_eq!(disk.writes_after_full, 1, "the writer was dropped without trying to finish on the full disk");
        let mut roomy = Disk { file: Cursor::new(Vec::new()), room: 1 << 30, writes_after_full: 0 };
        write_zip(&mut roomy, &[&vs], &config()).unwrap();
        let bytes = roomy.file.into_inner();
        assert_eq!(from_bytes(&bytes, "best_model.zip").unwrap().weights[0].len(), vs.variables().len());
    }

    /// Everything in a Best Model is untrusted: an edited config.json, damaged weights, a damaged
    /// ZIP, NaN weights. Each is a bad-input error that names the file, never a crash.
    #[test]
    fn a_damaged_or_edited_best_model_is_refused_by_name() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let spec = crate::models::find("resnet18").unwrap();
        let _net = spec.build(&vs.root(), 3);
        let good = to_zip(&[&vs], &config()).unwrap();
        assert_eq!(from_bytes(&good, "best_model.zip").unwrap().config.classes.len(), 3);
        let weights = safetensors_bytes(&vs, spec).unwrap();
        let json = |c: &BundleConfig| serde_json::to_vec(c).unwrap();

        assert!(refused(b"not a zip").contains("not a Best Model made by image-learner"));
        for size in [100_000usize, 0, 8] {
            let c = BundleConfig { image_size: size, ..config() };
            assert!(refused(&zip_with(&json(&c), &weights)).contains(&format!("has image_size {size}, outside")));
        }
        let text = String::from_utf8(json(&config())).unwrap().replace("\"image_size\":32", "\"image_size\":-1");
        assert!(refused(&zip_with(text.as_bytes(), &weights)).contains("config.json is not a Best Model's configuration"));
        assert!(refused(&zip_with(b"{ not json", &weights)).contains("config.json is not a Best Model's configuration"));
        for (c, why) in [
            (BundleConfig { classes: vec!["a".into()], ..config() }, "lists 1 classes"),
            (BundleConfig { classes: vec!["a".into(), "a".into()], ..config() }, "lists the class 'a' twice"),
            (BundleConfig { eval_batch_size: 0, ..config() }, "eval_batch_size 0"),
            (BundleConfig { temperature: 0.0, ..config() }, "the temperature 0"),
            (BundleConfig { temperature: -2.0, ..config() }, "the temperature -2"),
            (BundleConfig { task: TaskKind::Binary, classes: vec!["a".into(), "b".into()], threshold: Some(1.5), ..config() }, "the threshold 1.5"),
            (BundleConfig { architecture: "resnet19".into(), ..config() }, "names an architecture this tool lacks"),
            (BundleConfig { task: TaskKind::Binary, ..config() }, "says binary but lists 3 classes"),
        ] {
            assert!(refused(&zip_with(&json(&c), &weights)).contains(why), "{why}");
        }
        let mut nan_std = config();
        nan_std.normalization.std[1] = 0.0;
        assert!(refused(&zip_with(&json(&nan_std), &weights)).contains("normalisation"));
        assert!(refused(&zip_with(&json(&config()), b"garbage weights")).contains("model.safetensors"));
        // A flipped byte inside the stored weights: the ZIP's checksum catches it.
        let mut damaged = good.clone();
        let at = damaged.len() / 2;
        damaged[at] ^= 0xFF;
        assert!(refused(&damaged).contains("model.safetensors is damaged"), "{}", refused(&damaged));
        // NaN weights.
        tch::no_grad(|| {
            let _ = vs.variables()["fc.bias"].shallow_clone().fill_(f64::NAN);
        });
        assert!(refused(&to_zip(&[&vs], &config()).unwrap()).contains("the weight 'fc.bias' holds NaN"));
    }

    /// A cross-validated Best Model: one weights file per member, each read back, each member
    /// deciding with its own temperature; members that do not match their files are refused.
    #[test]
    fn an_ensembles_members_read_back_and_edited_members_are_refused() {
        let spec = crate::models::find("resnet18").unwrap();
        let stores: Vec<nn::VarStore> = (0..2)
            .map(|i| {
                tch::manual_seed(i);
                let vs = nn::VarStore::new(tch::Device::Cpu);
                let _net = spec.build(&vs.root(), 3);
                vs
            })
            .collect();
        let member = |fold: usize, temperature: f32| Member { weights: member_file(fold), fold, best_epoch: fold, temperature };
        let two = BundleConfig { members: vec![member(1, 1.5), member(2, 0.8)], ..config() };
        let bytes = to_zip(&[&stores[0], &stores[1]], &two).unwrap();
        let b = from_bytes(&bytes, "best_model.zip").unwrap();
        assert_eq!(b.weights.len(), 2);
        assert_eq!(b.member_tasks().iter().map(Task::temperature).collect::<Vec<_>>(), [1.5, 0.8]);
        let w = |i: usize| b.weights[i]["fc.weight"].shallow_clone();
        assert!(w(0).allclose(&stores[0].variables()["fc.weight"], 0.0, 0.0, false));
        assert!(!w(0).allclose(&w(1), 1e-3, 1e-3, false), "each member keeps its own weights");
        assert!(to_zip(&[&stores[0]], &two).is_err(), "one store for two members");
        let weights = safetensors_bytes(&stores[0], spec).unwrap();
        let json = |c: &BundleConfig| serde_json::to_vec(c).unwrap();
        for (c, why) in [
            (BundleConfig { members: vec![member(1, 1.0)], ..config() }, "lists 1 members"),
            (BundleConfig { members: vec![member(1, 1.0), member(3, 1.0)], ..config() }, "where fold 2's is expected"),
            (BundleConfig { members: vec![member(1, 1.0), member(2, 0.0)], ..config() }, "the temperature 0 for fold 2"),
        ] {
            let files: Vec<(String, &[u8])> = c.members.iter().map(|m| (m.weights.clone(), weights.as_slice())).collect();
            let named: Vec<(&str, &[u8])> = files.iter().map(|(n, w)| (n.as_str(), *w)).collect();
            assert!(refused(&zip_members(&json(&c), &named).unwrap()).contains(why), "{why}");
        }
        // A member named in config.json but missing from the ZIP.
        let only_one = zip_members(&json(&two), &[("fold_1.safetensors", &weights)]).unwrap();
        assert!(refused(&only_one).contains("it has no fold_2.safetensors"));
    }

    #[test]
    fn bundles_written_before_the_input_size_was_renamed_still_read() {
        let config = BundleConfig {
            format_version: FORMAT_VERSION,
            tool_version: "0.1.0".into(),
            architecture: "resnet18".into(),
            task: TaskKind::Binary,
            classes: vec!["a".into(), "b".into()],
            image_size: 48,
            normalization: crate::data::batches::IMAGENET,
            best_epoch: 3,
            eval_batch_size: 64,
            options: TrainConfig { threshold: crate::config::ThresholdChoice(Some(0.3)), ..TrainConfig::new("i.zip".into(), "m.csv".into(), "out".into(), "resnet18") },
            temperature: 1.5,
            threshold: Some(0.4),
            threshold_source: Some("tuned".into()),
            target: None,
            members: Vec::new(),
        };
        let json = serde_json::to_string(&config).unwrap();
        // Before the temperature and the tuned threshold: the manual threshold of the options.
        let mut before: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in ["temperature", "threshold", "threshold_source"] {
            before.as_object_mut().unwrap().remove(key);
        }
        before["options"].as_object_mut().unwrap().remove("calibrate");
        let read: BundleConfig = serde_json::from_value(before).unwrap();
        let b = Bundle { config: read, weights: Vec::new() };
        assert_eq!((b.task().threshold(), b.task().temperature()), (Some(0.3), 1.0));
        assert_eq!(b.config.options.calibrate, crate::config::CalibrationChoice::None);
        let b = Bundle { config: serde_json::from_str(&json).unwrap(), weights: Vec::new() };
        assert_eq!((b.task().threshold(), b.task().temperature()), (Some(0.4), 1.5));
        assert!(json.contains("\"image_size\":48"), "{json}");
        let old = json.replacen("\"image_size\":48", "\"input_size\":48", 1);
        let read: BundleConfig = serde_json::from_str(&old).unwrap();
        assert_eq!((read.image_size, read.task, read.best_epoch), (48, TaskKind::Binary, 3));
    }
}
