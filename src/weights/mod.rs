//! Checkpoints in and out: pretrained weights (where they are looked for, how they are
//! downloaded (`fetch`) or imported, how they load into a model by name; the checkpoint's
//! classifier head is dropped and the model keeps its new one), PyTorch's pickle format (`torch_pickle`), and the Best Model
//! bundle (`bundle`).
pub mod bundle;
pub mod fetch;
pub mod torch_pickle;

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
    vec![
        dir.join(format!("{}.safetensors", spec.name)),
        dir.join(spec.name).join("model.safetensors"),
    ]
}

/// The installed weights file of `spec` in `dir`, or an error that names the files expected,
/// where they were looked for, and the commands that install them.
pub fn require(spec: &ModelSpec, dir: &Path) -> Result<PathBuf> {
    let tried = candidates(dir, spec);
    match tried.iter().find(|p| p.is_file()) {
        Some(file) => Ok(file.clone()),
        None => {
            bail_input!(
            "--use-pretrained true: no weights for {} in {} (looked for {}). Install them with \
             `image-learner weights import {} <file>` or `image-learner weights fetch {}`, point \
             --weights-dir at them, or train from scratch with --use-pretrained false",
            spec.name,
            dir.display(),
            tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" or "),
            spec.name,
            spec.name
        )
        }
    }
}

/// Loads the pretrained backbone of `spec` into `vs`. Every backbone parameter must be present
/// with the same shape; the checkpoint's head is ignored. Returns the file used.
pub fn load_pretrained(vs: &mut nn::VarStore, spec: &ModelSpec, dir: &Path) -> Result<PathBuf> {
    let file = &require(spec, dir)?;
    let tensors = read_checkpoint(file)?;
    copy_variables(vs, Some(spec.head_prefix), &tensors)
        .with_context(|| format!("weights file {}", file.display()))?;
    Ok(file.clone())
}

/// Copies every variable of `vs` from `tensors`, by name, except those under `skip_prefix`.
pub fn copy_variables(
    vs: &mut nn::VarStore,
    skip_prefix: Option<&str>,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    let skip = skip_prefix.map(|p| format!("{p}."));
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vars {
            if skip.as_ref().is_some_and(|s| name.starts_with(s)) {
                continue;
            }
            let Some(src) = tensors.get(&name) else {
                bail_input!(
                    "the checkpoint has no parameter '{name}': it is not for this architecture"
                );
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

/// A checkpoint's keys in this model's (reference) names: the family renames those of
/// checkpoints published under other names (see each family's `checkpoint_names`).
fn map_names(spec: &ModelSpec, tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    match spec.checkpoint_names {
        Some(rename) => rename(spec, tensors),
        None => tensors,
    }
}

/// Reads a checkpoint: safetensors, or a PyTorch `.pth`/`.pt` state dict as `torch.save` writes
/// it, zip or legacy format (torchvision's, MetaFormer's and timm's `.pth`).
/// Half, bfloat16 and double weights are widened or narrowed to float32.
fn read_checkpoint(file: &Path) -> Result<HashMap<String, Tensor>> {
    use std::io::Read;
    let mut head = Vec::new();
    crate::data::open_input(file, "weights file", 16 << 30)?
        .take(9)
        .read_to_end(&mut head)
        .map_err(|e| crate::error::input_error(format!("cannot read {}: {e}", file.display())))?;
    let tensors: Vec<(String, Tensor)> = if head.len() > 8 && head[8] == b'{' {
        Tensor::read_safetensors(file).map_err(|e| {
            crate::error::input_error(format!("{} is not a valid safetensors file ({e}); download it again", file.display()))
        })?
    } else {
        torch_pickle::read(file)
            .map_err(|e| {
                crate::error::input_error(format!(
                    "{} is neither safetensors nor a PyTorch state dict (torch.save) this tool can read: {e:#}",
                    file.display()
                ))
            })?
            .into_iter()
            .collect()
    };
    use tch::Kind::{BFloat16, Double, Float, Half};
    Ok(tensors
        .into_iter()
        .filter(|(_, t)| matches!(t.kind(), Float | Half | BFloat16 | Double))
        .map(|(k, t)| (k, t.to_kind(Float)))
        .collect())
}

/// `weights import`: checks that `file` holds every backbone parameter of `spec` (after mapping
/// foreign names), and installs it as `<dir>/<model>.safetensors`. Returns the installed path.
pub fn import(spec: &ModelSpec, file: &Path, dir: &Path) -> Result<PathBuf> {
    let target = installable(spec, dir)?;
    let tensors = map_names(spec, read_checkpoint(file)?);
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let _ = spec.build(&vs.root(), 1000);
    copy_variables(&mut vs, Some(spec.head_prefix), &tensors)
        .with_context(|| format!("{} does not fit {}", file.display(), spec.name))?;
    let named: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, t)| (k, t.contiguous()))
        .collect();
    let tmp = dir.join(format!(".{}.safetensors.partial", spec.name));
    let written = Tensor::write_safetensors(&named, &tmp)
        .map_err(|e| e.to_string())
        .and_then(|()| std::fs::rename(&tmp, &target).map_err(|e| e.to_string()));
    if let Err(e) = written {
        if tmp.is_file() {
            let _ = std::fs::remove_file(&tmp);
        }
        bail_input!(
            "cannot install the {} weights in the weights folder {}: {e}. Nothing was installed; give a folder you can write \
             to with --weights-dir",
            spec.name,
            dir.display()
        );
    }
    Ok(target)
}

/// Where `spec`'s weights go in `dir`, once the folder exists and nothing but a file is in the
/// way of that name.
pub fn installable(spec: &ModelSpec, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| {
        crate::error::input_error(format!("cannot create the weights folder {}: {e}; give another --weights-dir", dir.display()))
    })?;
    let target = dir.join(format!("{}.safetensors", spec.name));
    if target.exists() && !target.is_file() {
        bail_input!(
            "cannot install the {} weights: {} is a folder, not a file; remove it, or give another --weights-dir",
            spec.name,
            target.display()
        );
    }
    Ok(target)
}
