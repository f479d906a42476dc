//! MetaFormer (Yu et al., "MetaFormer Baselines for Vision", TPAMI 2023), ported from timm's
//! `metaformer.py` with its parameter names. One block (norm, token mixer, residual scale, MLP)
//! serves every variant; CAFormer, ConvFormer and PoolFormerV2 differ only in the token mixer per
//! stage, the norm, the head, and depths and widths.
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

use super::kernels;
use super::layers::Conv;
use std::collections::HashMap;

use super::{timm_hub, Arch, Layout, ModelSpec, Network, Tap};
use crate::data::batches::IMAGENET;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mixer {
    /// Inverted separable convolution (pwconv1, StarReLU, 7x7 dwconv, pwconv2).
    SepConv,
    /// Multi-head self-attention with 32-wide heads, on tokens.
    Attention,
    /// Average pooling minus the input (PoolFormer).
    Pooling,
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub depths: [i64; 4],
    pub dims: [i64; 4],
    pub mixers: [Mixer; 4],
    /// GroupNorm with one group (PoolFormerV2) instead of LayerNorm in the blocks.
    pub group_norm: bool,
    /// The two-layer MLP head of CAFormer/ConvFormer; a linear head otherwise.
    pub mlp_head: bool,
}

const S: Mixer = Mixer::SepConv;
const A: Mixer = Mixer::Attention;
const P: Mixer = Mixer::Pooling;

const fn former(depths: [i64; 4], dims: [i64; 4], mixers: [Mixer; 4]) -> Config {
    Config { depths, dims, mixers, group_norm: false, mlp_head: true }
}
const fn poolformer(depths: [i64; 4], dims: [i64; 4]) -> Config {
    Config { depths, dims, mixers: [P; 4], group_norm: true, mlp_head: false }
}

/// The variants by timm name.
pub const VARIANTS: &[(&str, Config)] = &[
    ("caformer_s18", former([3, 3, 9, 3], [64, 128, 320, 512], [S, S, A, A])),
    ("caformer_s36", former([3, 12, 18, 3], [64, 128, 320, 512], [S, S, A, A])),
    ("caformer_m36", former([3, 12, 18, 3], [96, 192, 384, 576], [S, S, A, A])),
    ("caformer_b36", former([3, 12, 18, 3], [128, 256, 512, 768], [S, S, A, A])),
    ("convformer_s18", former([3, 3, 9, 3], [64, 128, 320, 512], [S; 4])),
    ("convformer_s36", former([3, 12, 18, 3], [64, 128, 320, 512], [S; 4])),
    ("convformer_m36", former([3, 12, 18, 3], [96, 192, 384, 576], [S; 4])),
    ("convformer_b36", former([3, 12, 18, 3], [128, 256, 512, 768], [S; 4])),
    ("poolformerv2_s12", poolformer([2, 2, 6, 2], [64, 128, 320, 512])),
    ("poolformerv2_s24", poolformer([4, 4, 12, 4], [64, 128, 320, 512])),
    ("poolformerv2_s36", poolformer([6, 6, 18, 6], [64, 128, 320, 512])),
    ("poolformerv2_m36", poolformer([6, 6, 18, 6], [96, 192, 384, 768])),
    ("poolformerv2_m48", poolformer([8, 8, 24, 8], [96, 192, 384, 768])),
];

const EPS: f64 = 1e-6;
/// timm initialises convolutions and linear layers with a (truncated) normal of std 0.02.
const W_INIT: Init = Init::Randn { mean: 0.0, stdev: 0.02 };

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64, groups: i64, bias: bool) -> Conv {
    let cfg = nn::ConvConfig { stride, padding, groups, bias, ws_init: W_INIT, bs_init: Init::Const(0.0), ..Default::default() };
    Conv::new(p, c_in, c_out, k, cfg)
}

fn linear(p: nn::Path, c_in: i64, c_out: i64, bias: bool) -> nn::Linear {
    let bs_init = if bias { Some(Init::Const(0.0)) } else { None };
    nn::linear(p, c_in, c_out, nn::LinearConfig { ws_init: W_INIT, bs_init, bias })
}

/// A norm over channels: LayerNorm on the channel axis of NCHW or on the last axis of tokens, or
/// GroupNorm with one group; weight only unless `bias`.
#[derive(Debug)]
struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
    kind: NormKind,
}

#[derive(Clone, Copy, Debug)]
enum NormKind {
    Channels2d,
    Tokens,
    Group1,
}

impl Norm {
    fn new(p: nn::Path, dim: i64, kind: NormKind, bias: bool) -> Norm {
        Norm { weight: p.ones("weight", &[dim]), bias: bias.then(|| p.zeros("bias", &[dim])), kind }
    }
    fn forward(&self, xs: &Tensor) -> Tensor {
        let dim = self.weight.size()[0];
        match self.kind {
            NormKind::Channels2d => xs
                .permute([0, 2, 3, 1])
                .layer_norm([dim], Some(&self.weight), self.bias.as_ref(), EPS, true)
                .permute([0, 3, 1, 2]),
            NormKind::Tokens => xs.layer_norm([dim], Some(&self.weight), self.bias.as_ref(), EPS, true),
            NormKind::Group1 => xs.group_norm(1, Some(&self.weight), self.bias.as_ref(), EPS, true),
        }
    }
}

/// StarReLU: s * relu(x)^2 + b, with learnable scalars s and b.
#[derive(Debug)]
struct StarRelu {
    scale: Tensor,
    bias: Tensor,
}

impl StarRelu {
    fn new(p: nn::Path) -> StarRelu {
        StarRelu { scale: p.ones("scale", &[1]), bias: p.zeros("bias", &[1]) }
    }

    /// On a dense float32 CPU tensor: one fused pass forward and one backward (`csrc/star_relu.cpp`).
    fn forward(&self, xs: Tensor) -> Tensor {
        match kernels::star_relu(&xs, &self.scale, &self.bias) {
            Some(ys) => ys,
            None => self.forward_aten(xs),
        }
    }

    /// The same with ATen ops (CUDA, bf16 autocast): `xs` is a fresh convolution or linear
    /// output, so the ReLU runs in place; scale and bias are applied in one fused multiply-add.
    fn forward_aten(&self, mut xs: Tensor) -> Tensor {
        let _ = xs.relu_();
        self.bias.addcmul(&xs.square(), &self.scale)
    }
}

fn token_mixer(p: nn::Path, dim: i64, mixer: Mixer) -> Box<dyn Fn(&Tensor) -> Tensor + Send> {
    match mixer {
        Mixer::SepConv => {
            let mid = 2 * dim;
            let pwconv1 = conv(&p / "pwconv1", dim, mid, 1, 1, 0, 1, false);
            let act1 = StarRelu::new(&p / "act1");
            let dwconv = conv(&p / "dwconv", mid, mid, 7, 1, 3, mid, false);
            let pwconv2 = conv(&p / "pwconv2", mid, dim, 1, 1, 0, 1, false);
            Box::new(move |xs| act1.forward(xs.apply(&pwconv1)).apply(&dwconv).apply(&pwconv2))
        }
        Mixer::Attention => {
            let head_dim = 32;
            let heads = (dim / head_dim).max(1);
            let inner = heads * head_dim;
            let qkv = linear(&p / "qkv", dim, 3 * inner, false);
            let proj = linear(&p / "proj", inner, dim, false);
            Box::new(move |xs| {
                let (b, n, _) = xs.size3().expect("tokens are batch x tokens x channels");
                let qkv = xs.apply(&qkv).reshape([b, n, 3, heads, head_dim]).permute([2, 0, 3, 1, 4]);
                let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
                Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false)
                    .transpose(1, 2)
                    .reshape([b, n, inner])
                    .apply(&proj)
            })
        }
        Mixer::Pooling => Box::new(|xs| xs.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None) - xs),
    }
}

/// One MetaFormer block on NCHW maps (`tokens` false) or on tokens (attention stages).
fn block(p: nn::Path, dim: i64, mixer: Mixer, norm: NormKind, res_scale: bool) -> impl ModuleT {
    let tokens = mixer == Mixer::Attention;
    let norm1 = Norm::new(&p / "norm1", dim, norm, false);
    let mix = token_mixer(&p / "token_mixer", dim, mixer);
    let norm2 = Norm::new(&p / "norm2", dim, norm, false);
    let scale_shape: Vec<i64> = if tokens { vec![dim] } else { vec![dim, 1, 1] };
    let res1 = res_scale.then(|| (&p / "res_scale1").ones("scale", &[dim]).view(scale_shape.as_slice()));
    let res2 = res_scale.then(|| (&p / "res_scale2").ones("scale", &[dim]).view(scale_shape.as_slice()));
    let mlp = &p / "mlp";
    let (fc1, fc2): (Box<dyn Fn(&Tensor) -> Tensor + Send>, Box<dyn Fn(&Tensor) -> Tensor + Send>) = if tokens {
        let (a, b) = (linear(&mlp / "fc1", dim, 4 * dim, false), linear(&mlp / "fc2", 4 * dim, dim, false));
        (Box::new(move |x| x.apply(&a)), Box::new(move |x| x.apply(&b)))
    } else {
        let (a, b) = (conv(&mlp / "fc1", dim, 4 * dim, 1, 1, 0, 1, false), conv(&mlp / "fc2", 4 * dim, dim, 1, 1, 0, 1, false));
        (Box::new(move |x| x.apply(&a)), Box::new(move |x| x.apply(&b)))
    };
    let act = StarRelu::new(&mlp / "act");
    let scaled = |x: &Tensor, s: &Option<Tensor>| match s {
        Some(s) => x * s,
        None => x.shallow_clone(),
    };
    nn::func_t(move |xs, _train| {
        let x = scaled(xs, &res1) + mix(&norm1.forward(xs));
        scaled(&x, &res2) + fc2(&act.forward(fc1(&norm2.forward(&x))))
    })
}

fn backbone(p: &nn::Path, cfg: &Config) -> (impl Fn(&Tensor, bool, &mut Tap) -> Tensor + Send, i64) {
    let stem_conv = conv(p / "stem" / "conv", 3, cfg.dims[0], 7, 4, 2, 1, true);
    let stem_norm = Norm::new(p / "stem" / "norm", cfg.dims[0], NormKind::Channels2d, false);
    let mut stages = Vec::new();
    let mut prev = cfg.dims[0];
    for i in 0..4 {
        let sp = p / "stages" / i;
        let dim = cfg.dims[i];
        let downsample = (prev != dim).then(|| {
            let d = &sp / "downsample";
            (Norm::new(&d / "norm", prev, NormKind::Channels2d, false), conv(&d / "conv", prev, dim, 3, 2, 1, 1, true))
        });
        let mixer = cfg.mixers[i];
        let norm = match (cfg.group_norm, mixer) {
            (true, _) => NormKind::Group1,
            (false, Mixer::Attention) => NormKind::Tokens,
            (false, _) => NormKind::Channels2d,
        };
        // timm's default res_scale_init_values: residual scales in the last two stages only.
        let res_scale = i >= 2;
        let mut blocks = nn::seq_t();
        for b in 0..cfg.depths[i] {
            blocks = blocks.add(block(&sp / "blocks" / b, dim, mixer, norm, res_scale));
        }
        stages.push((downsample, blocks, mixer == Mixer::Attention));
        prev = dim;
    }
    let c = cfg.dims[3];
    let head_norm = Norm::new(p / "head" / "norm", c, NormKind::Channels2d, true);
    let mlp = cfg.mlp_head.then(|| {
        let f = p / "head" / "fc";
        (linear(&f / "fc1", c, 4 * c, true), Norm::new(&f / "norm", 4 * c, NormKind::Tokens, true))
    });
    let features = if cfg.mlp_head { 4 * c } else { c };
    let module = move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let mut x = stem_norm.forward(&xs.apply(&stem_conv));
        for (downsample, blocks, tokens) in &stages {
            if let Some((norm, conv)) = downsample {
                x = norm.forward(&x).apply(conv);
            }
            x = if *tokens {
                let (b, c, h, w) = x.size4().expect("NCHW");
                x.reshape([b, c, h * w]).transpose(1, 2).apply_t(blocks, train).transpose(1, 2).reshape([b, c, h, w])
            } else {
                x.apply_t(blocks, train)
            };
        }
        // Grad-CAM's target: the last stage, already NCHW.
        tap.record(&x, Layout::Nchw);
        let x = head_norm.forward(&x.adaptive_avg_pool2d([1, 1])).flatten(1, -1);
        match &mlp {
            // SquaredReLU between fc1 and the norm, as timm's MlpHead.
            Some((fc1, norm)) => norm.forward(&x.apply(fc1).relu().square()),
            None => x,
        }
    };
    (module, features)
}

/// The head's state-dict prefix: the last linear layer, which is replaced for new classes.
pub fn head_prefix(cfg: &Config) -> &'static str {
    if cfg.mlp_head { "head.fc.fc2" } else { "head.fc" }
}

pub fn build(p: &nn::Path, cfg: &Config, num_classes: i64) -> Network {
    let (body, features) = backbone(p, cfg);
    let head = linear(super::sub_path(p, head_prefix(cfg)), features, num_classes, true);
    Network::new(body, 0.0, head)
}

fn family_of(name: &str) -> &'static str {
    if name.starts_with("caformer") {
        "CAFormer"
    } else if name.starts_with("convformer") {
        "ConvFormer"
    } else {
        "PoolFormerV2"
    }
}

/// timm's `checkpoint_filter_fn` for MetaFormer: the original release's names (sail-sg:
/// `downsample_layers`, `stages.S.B`, `head.fc1`) to timm's, and scales reshaped to the model's
/// shape where only the shape differs. timm's own names pass unchanged.
fn checkpoint_names(spec: &ModelSpec, tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    if tensors.contains_key("stem.conv.weight") {
        return tensors;
    }
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _ = spec.build(&vs.root(), 1000);
    let shapes: HashMap<String, Vec<i64>> = vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
    tensors
        .into_iter()
        .map(|(k, v)| {
            let mut parts: Vec<String> = k.split('.').map(str::to_string).collect();
            if parts.len() > 1 && parts[0] == "downsample_layers" {
                parts.splice(0..2, ["stages".to_string(), parts[1].clone(), "downsample".to_string()]);
            }
            // `stages.S.B` -> `stages.S.blocks.B`.
            if let Some(i) = (0..parts.len().saturating_sub(1))
                .find(|&i| [&parts[i], &parts[i + 1]].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
            {
                parts.insert(i + 1, "blocks".to_string());
            }
            let mut name = parts.join(".").replace("downsample.proj", "downsample.conv");
            if let Some(rest) = name.strip_prefix("stages.0.downsample.") {
                name = format!("stem.{rest}");
            }
            name = name.replace("post_norm", "norm").replace("pre_norm", "norm");
            if let Some(rest) = name.strip_prefix("head.") {
                name = format!("head.fc.{rest}");
            } else if name.starts_with("norm.") {
                name = format!("head.{name}");
            }
            let v = match shapes.get(&name) {
                Some(shape) if *shape != v.size() && shape.iter().product::<i64>() == v.numel() as i64 => v.reshape(shape.as_slice()),
                _ => v,
            };
            (name, v)
        })
        .collect()
}

/// The family's specs. CAFormer and ConvFormer come with 384x384 and ImageNet-21k-pretrained
/// weight tags; each is its own name (as in the existing tool), with its own default size and
/// its weights on timm's hub.
pub fn specs() -> Vec<ModelSpec> {
    let mut out = Vec::new();
    for (base, cfg) in VARIANTS {
        let tags: &[(&str, usize, &str)] = if cfg.mlp_head {
            &[
                ("", 224, "sail_in1k"),
                ("_384", 384, "sail_in1k_384"),
                ("_in21ft1k", 224, "sail_in22k_ft_in1k"),
                ("_384_in21ft1k", 384, "sail_in22k_ft_in1k_384"),
            ]
        } else {
            &[("", 224, "sail_in1k")]
        };
        for (suffix, size, tag) in tags {
            let name: &'static str = Box::leak(format!("{base}{suffix}").into_boxed_str());
            out.push(ModelSpec {
                name,
                family: family_of(base),
                reference: format!("timm {base}.{tag}"),
                default_size: *size,
                min_size: crate::config::MIN_IMAGE_SIZE,
                normalization: IMAGENET,
                head_prefix: head_prefix(cfg),
                arch: Arch::MetaFormer(cfg),
                weights_url: Some(timm_hub(&format!("{base}.{tag}"))),
                checkpoint_names: Some(checkpoint_names),
                extra_buffer: None,
                cam_target: "stages[-1]",
                // timm's grouping: the stem, stages.0 to stages.3; the pretrained part of the head
                // (its norm, the MLP's first layer) joins the last stage.
                stage_key: |n| match crate::models::numbered(n, "stages.") {
                    Some(s) => s + 1,
                    None if n.starts_with("head.") => u32::MAX,
                    None => 0,
                },
            });
        }
    }
    out
}
