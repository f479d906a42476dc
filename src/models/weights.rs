//! Pretrained weights: where they are looked for and how they load into a model by name. The
//! checkpoint's classifier head is dropped; the model keeps its new, freshly initialised head.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tch::{nn, Tensor};

use crate::bail_input;
use crate::models::ModelSpec;

/// The weights folder: `--weights-dir`, else `IMAGE_LEARNER_WEIGHTS`, else the user cache.
pub fn weights_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("IMAGE_LEARNER_WEIGHTS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    cache.join("image-learner").join("weights")
}

/// The files that may hold `spec`'s weights, in the order they are tried.
pub fn candidates(dir: &Path, spec: &ModelSpec) -> Vec<PathBuf> {
    vec![dir.join(format!("{}.safetensors", spec.name)), dir.join(spec.name).join("model.safetensors")]
}

/// Loads the pretrained backbone of `spec` into `vs`. Every backbone parameter must be present
/// with the same shape; the checkpoint's head is ignored. Returns the file used.
pub fn load_pretrained(vs: &mut nn::VarStore, spec: &ModelSpec, dir: &Path) -> Result<PathBuf> {
    let tried = candidates(dir, spec);
    let Some(file) = tried.iter().find(|p| p.is_file()) else {
        bail_input!(
            "--use-pretrained true: no weights for {} in {} (looked for {}). Install them with \
             `image-learner weights import {} <file>` or `image-learner weights fetch {}`, point \
             --weights-dir at them, or train from scratch with --use-pretrained false",
            spec.name,
            dir.display(),
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or "),
            spec.name,
            spec.name
        );
    };
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(file)
        .with_context(|| format!("cannot read the weights file {}", file.display()))?
        .into_iter()
        .collect();
    copy_variables(vs, Some(spec.head_prefix), &tensors).with_context(|| format!("weights file {}", file.display()))?;
    Ok(file.clone())
}

/// Copies every variable of `vs` from `tensors`, by name, except those under `skip_prefix`.
pub fn copy_variables(vs: &mut nn::VarStore, skip_prefix: Option<&str>, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let skip = skip_prefix.map(|p| format!("{p}."));
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vs.variables() {
            if skip.as_ref().is_some_and(|s| name.starts_with(s)) {
                continue;
            }
            let Some(src) = tensors.get(&name) else {
                bail_input!("the checkpoint has no parameter '{name}': it is not for this architecture");
            };
            if src.size() != var.size() {
                bail_input!(
                    "parameter '{name}' has shape {:?} in the checkpoint but {:?} in the model",
                    src.size(),
                    var.size()
                );
            }
            var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
        }
        Ok(())
    })
}
