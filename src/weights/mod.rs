//! Checkpoints in and out: pretrained weights (where they are looked for, how they are fetched or
//! imported, how they load into a model by name; the checkpoint's classifier head is dropped and
//! the model keeps its new one), PyTorch's pickle format (`torch_pickle`), and the Best Model
//! bundle (`bundle`).
pub mod bundle;
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
    let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(file)
        .with_context(|| format!("cannot read the weights file {}", file.display()))?
        .into_iter()
        .collect();
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

/// Where each architecture's published ImageNet weights live: safetensors on timm's hub for the
/// timm models and the ResNets (torchvision's own ResNet weights are published there as
/// `.tv_in1k`, with the same names), torchvision's `.pth` files for the other torchvision models.
pub fn published_url(spec: &ModelSpec) -> Option<String> {
    let timm_repo =
        |id: &str| format!("https://huggingface.co/timm/{id}/resolve/main/model.safetensors");
    match spec.name {
        "resnet18" | "resnet34" | "resnet50" | "resnet101" | "resnet152" | "resnext50_32x4d"
        | "wide_resnet50_2" => Some(timm_repo(&format!("{}.tv_in1k", spec.name))),
        "efficientnet_lite0" => Some(timm_repo("efficientnet_lite0.ra_in1k")),
        _ => spec
            .reference
            .strip_prefix("timm ")
            .map(timm_repo)
            .or_else(|| {
                // torchvision's DEFAULT ImageNet weights (as listed by torchvision 0.28).
                let file = match spec.name {
                    "efficientnet_b0" => "efficientnet_b0_rwightman-7f5810bc.pth",
                    "efficientnet_b1" => "efficientnet_b1-c27df63c.pth",
                    "efficientnet_b2" => "efficientnet_b2_rwightman-c35c1473.pth",
                    "efficientnet_b3" => "efficientnet_b3_rwightman-b3899882.pth",
                    "efficientnet_b4" => "efficientnet_b4_rwightman-23ab8bcd.pth",
                    "efficientnet_b5" => "efficientnet_b5_lukemelas-1a07897c.pth",
                    "efficientnet_b6" => "efficientnet_b6_lukemelas-24a108a5.pth",
                    "efficientnet_b7" => "efficientnet_b7_lukemelas-c5b4e57e.pth",
                    "mobilenet_v2" => "mobilenet_v2-7ebf99e0.pth",
                    "mobilenet_v3_small" => "mobilenet_v3_small-047dcff4.pth",
                    "mobilenet_v3_large" => "mobilenet_v3_large-5c1a4163.pth",
                    "densenet121" => "densenet121-a639ec97.pth",
                    "vgg16" => "vgg16-397923af.pth",
                    "vgg16_bn" => "vgg16_bn-6c64b313.pth",
                    "convnext_tiny" => "convnext_tiny-983f1562.pth",
                    "convnext_small" => "convnext_small-0c510722.pth",
                    "convnext_base" => "convnext_base-6075fbad.pth",
                    "vit_b_16" => "vit_b_16-c867db91.pth",
                    "swin_t" => "swin_t-704ceda3.pth",
                    _ => return None,
                };
                Some(format!("https://download.pytorch.org/models/{file}"))
            }),
    }
}

/// Renames a checkpoint's keys to this model's (reference) names where it follows another
/// naming scheme: efficientnet_pytorch's EfficientNet-Lite (`_conv_stem`, `_blocks.N`, ...), the
/// original MetaFormer release's (sail-sg: `downsample_layers`, `stages.S.B`, `head.fc1`), and
/// the 2017 names of torchvision's own DenseNet file (`denselayer1.norm.1`, which torchvision
/// renames to `denselayer1.norm1` when it loads it).
fn map_names(spec: &ModelSpec, tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    if spec.name.starts_with("densenet") {
        return tensors
            .into_iter()
            .map(|(k, v)| (densenet_name(&k), v))
            .collect();
    }
    if matches!(spec.arch, crate::models::Arch::MetaFormer(_))
        && !tensors.contains_key("stem.conv.weight")
    {
        return metaformer_names(spec, tensors);
    }
    if spec.name != "efficientnet_lite0" || !tensors.contains_key("_conv_stem.weight") {
        return tensors;
    }
    // efficientnet_pytorch numbers blocks 0..15 in one run; timm as stage.block.
    const STAGES: [usize; 7] = [1, 2, 2, 3, 3, 4, 1];
    let position = |flat: usize| {
        let mut left = flat;
        for (s, &n) in STAGES.iter().enumerate() {
            if left < n {
                return (s, left);
            }
            left -= n;
        }
        (usize::MAX, 0)
    };
    tensors
        .into_iter()
        .map(|(k, v)| {
            let name = if let Some(rest) = k.strip_prefix("_blocks.") {
                let (flat, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let flat: usize = flat.parse().unwrap_or(usize::MAX);
                let (s, b) = position(flat);
                let (layer, param) = tail.split_once('.').unwrap_or((tail, ""));
                let layer = match (s, layer) {
                    (0, "_depthwise_conv") => "conv_dw",
                    (0, "_bn1") => "bn1",
                    (0, "_project_conv") => "conv_pw",
                    (0, "_bn2") => "bn2",
                    (_, "_expand_conv") => "conv_pw",
                    (_, "_bn0") => "bn1",
                    (_, "_depthwise_conv") => "conv_dw",
                    (_, "_bn1") => "bn2",
                    (_, "_project_conv") => "conv_pwl",
                    (_, "_bn2") => "bn3",
                    (_, other) => other,
                };
                format!("blocks.{s}.{b}.{layer}.{param}")
            } else {
                let (layer, param) = k.split_once('.').unwrap_or((&k, ""));
                let layer = match layer {
                    "_conv_stem" => "conv_stem",
                    "_bn0" => "bn1",
                    "_conv_head" => "conv_head",
                    "_bn1" => "bn2",
                    "_fc" => "classifier",
                    other => other,
                };
                format!("{layer}.{param}")
            };
            (name, v)
        })
        .collect()
}

fn densenet_name(k: &str) -> String {
    let mut name = k.to_string();
    if k.contains(".denselayer") {
        for layer in ["norm", "relu", "conv"] {
            for i in ["1", "2"] {
                name = name.replace(&format!(".{layer}.{i}."), &format!(".{layer}{i}."));
            }
        }
    }
    name
}

/// timm's `checkpoint_filter_fn` for MetaFormer: the sail-sg release's names to timm's, and
/// scales reshaped to the model's shape where only the shape differs.
fn metaformer_names(spec: &ModelSpec, tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _ = spec.build(&vs.root(), 1000);
    let shapes: HashMap<String, Vec<i64>> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect();
    tensors
        .into_iter()
        .map(|(k, v)| {
            let mut parts: Vec<String> = k.split('.').map(str::to_string).collect();
            if parts.len() > 1 && parts[0] == "downsample_layers" {
                parts.splice(
                    0..2,
                    [
                        "stages".to_string(),
                        parts[1].clone(),
                        "downsample".to_string(),
                    ],
                );
            }
            // `stages.S.B` -> `stages.S.blocks.B`.
            if let Some(i) = (0..parts.len().saturating_sub(1)).find(|&i| {
                [&parts[i], &parts[i + 1]]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            }) {
                parts.insert(i + 1, "blocks".to_string());
            }
            let mut name = parts
                .join(".")
                .replace("downsample.proj", "downsample.conv");
            if let Some(rest) = name.strip_prefix("stages.0.downsample.") {
                name = format!("stem.{rest}");
            }
            name = name
                .replace("post_norm", "norm")
                .replace("pre_norm", "norm");
            if let Some(rest) = name.strip_prefix("head.") {
                name = format!("head.fc.{rest}");
            } else if name.starts_with("norm.") {
                name = format!("head.{name}");
            }
            let v = match shapes.get(&name) {
                Some(shape)
                    if *shape != v.size() && shape.iter().product::<i64>() == v.numel() as i64 =>
                {
                    v.reshape(shape.as_slice())
                }
                _ => v,
            };
            (name, v)
        })
        .collect()
}

/// Reads a checkpoint: safetensors, or a PyTorch `.pth`/`.pt` state dict as `torch.save` writes
/// it, zip or legacy format (torchvision's, MetaFormer's and timm's `.pth`).
/// Half, bfloat16 and double weights are widened or narrowed to float32.
fn read_checkpoint(file: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(file)
        .map_err(|e| crate::error::input_error(format!("cannot read {}: {e}", file.display())))?;
    let tensors: Vec<(String, Tensor)> = if bytes.len() > 8 && bytes[8] == b'{' {
        Tensor::read_safetensors(file)
            .with_context(|| format!("{} is not a valid safetensors file", file.display()))?
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
    let tensors = map_names(spec, read_checkpoint(file)?);
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let _ = spec.build(&vs.root(), 1000);
    copy_variables(&mut vs, Some(spec.head_prefix), &tensors)
        .with_context(|| format!("{} does not fit {}", file.display(), spec.name))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| crate::error::input_error(format!("cannot create {}: {e}", dir.display())))?;
    let target = dir.join(format!("{}.safetensors", spec.name));
    let named: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, t)| (k, t.contiguous()))
        .collect();
    let tmp = dir.join(format!(".{}.safetensors.partial", spec.name));
    Tensor::write_safetensors(&named, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}

/// `weights fetch`: downloads the published weights and imports them. Fails within seconds
/// where the network does not reach the hub.
pub fn fetch(spec: &ModelSpec, dir: &Path) -> Result<PathBuf> {
    let Some(url) = published_url(spec) else {
        bail_input!("no published weights are known for {}", spec.name);
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(10)))
        .timeout_global(Some(std::time::Duration::from_secs(1800)))
        .build()
        .into();
    let fail = |e: &dyn std::fmt::Display| {
        crate::error::input_error(format!(
            "cannot download the {} weights from {url} ({e}). Where this machine has no internet, download \
             the file elsewhere and install it with `image-learner weights import {} FILE`",
            spec.name, spec.name
        ))
    };
    let mut response = agent.get(&url).call().map_err(|e| fail(&e))?;
    let bytes = response
        .body_mut()
        .with_config()
        .limit(2 << 30)
        .read_to_vec()
        .map_err(|e| fail(&e))?;
    std::fs::create_dir_all(dir)?;
    let ext = if url.ends_with(".safetensors") {
        "safetensors"
    } else {
        "pth"
    };
    let download = dir.join(format!(".{}.download.{ext}", spec.name));
    std::fs::write(&download, bytes)?;
    let result = import(spec, &download, dir);
    let _ = std::fs::remove_file(&download);
    result
}
