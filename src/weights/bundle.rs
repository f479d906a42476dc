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
use crate::config::TrainConfig;
use crate::task::{Task, TaskKind};
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

pub fn to_zip(vs: &nn::VarStore, config: &BundleConfig) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("config.json", stored)?;
    w.write_all(&serde_json::to_vec_pretty(config)?)?;
    w.start_file("model.safetensors", stored)?;
    w.write_all(&safetensors_bytes(vs, crate::models::find(&config.architecture)?)?)?;
    Ok(w.finish()?.into_inner())
}

pub struct Bundle {
    pub config: BundleConfig,
    pub tensors: HashMap<String, Tensor>,
}

impl Bundle {
    /// The task the model was trained for, with its classes and decision rule.
    pub fn task(&self) -> Task {
        Task { kind: self.config.task, classes: self.config.classes.clone(), threshold: self.config.options.threshold }
    }
}

pub fn read(path: &Path) -> Result<Bundle> {
    let name = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| crate::error::input_error(format!("cannot open the model {name}: {e}")))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|_| {
        crate::error::input_error(format!(
            "{name} is not a Best Model made by image-learner (not a ZIP)"
        ))
    })?;
    let mut member = |m: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(m).map_err(|_| {
            crate::error::input_error(format!(
                "{name} has no {m}: it is not a Best Model made by image-learner"
            ))
        })?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(buf)
    };
    let config: BundleConfig = serde_json::from_slice(&member("config.json")?)
        .with_context(|| format!("{name}: config.json is not readable"))?;
    if config.format_version > FORMAT_VERSION {
        bail_input!(
            "{name} was made by a newer image-learner (model format {}); update this tool",
            config.format_version
        );
    }
    let tensors = read_safetensors(&member("model.safetensors")?)?;
    Ok(Bundle { config, tensors })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            options: TrainConfig::new("i.zip".into(), "m.csv".into(), "out".into(), "resnet18"),
        };
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"image_size\":48"), "{json}");
        let old = json.replacen("\"image_size\":48", "\"input_size\":48", 1);
        let read: BundleConfig = serde_json::from_str(&old).unwrap();
        assert_eq!((read.image_size, read.task, read.best_epoch), (48, TaskKind::Binary, 3));
    }
}
