//! Swin Transformer, tiny (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
//! Shifted Windows", 2021) as torchvision builds it, with its parameter names: `features.0` patch
//! embedding (`0` conv, `2` LayerNorm), `features.1/3/5/7` stages of blocks (`norm1`,
//! `attn.{qkv, proj, relative_position_bias_table}`, `norm2`, `mlp.0`, `mlp.3`),
//! `features.2/4/6` patch merging (`norm`, `reduction`), `norm`, `head`.
//!
//! Any input size works: feature maps are padded to whole windows, as torchvision does.
use tch::nn::{self, Init};
use tch::{Kind, Tensor};

use super::layers::{layer_norm, stochastic_depth};
use super::{fixed, torchvision_url, Buffer, Layout, ModelSpec, Network, Tap};

/// A block or a patch merging, in the order the stages run them.
type Layer = Box<dyn Fn(&Tensor, bool, &mut Tap) -> Tensor + Send>;
use crate::data::batches::IMAGENET;

const WINDOW: i64 = 7;
const EMBED: i64 = 96;
const DEPTHS: [i64; 4] = [2, 2, 6, 2];
const HEADS: [i64; 4] = [3, 6, 12, 24];
const DROP_PATH: f64 = 0.2;
const EPS: f64 = 1e-5;

/// For each pair of positions in a window, the row of the relative-position bias table
/// (torchvision keeps it as the buffer `attn.relative_position_index`).
pub fn relative_position_index() -> Tensor {
    let n = WINDOW * WINDOW;
    let index: Vec<i64> = (0..n * n)
        .map(|ij| {
            let (i, j) = (ij / n, ij % n);
            let dh = i / WINDOW - j / WINDOW + WINDOW - 1;
            let dw = i % WINDOW - j % WINDOW + WINDOW - 1;
            dh * (2 * WINDOW - 1) + dw
        })
        .collect();
    Tensor::from_slice(&index)
}

/// The shifted-window attention mask for a padded `h` x `w` map: 0 within a region, -100 across.
fn shift_mask(h: i64, w: i64, shift: [i64; 2], options: (Kind, tch::Device)) -> Tensor {
    let region = |x: i64, size: i64, s: i64| {
        if x < size - WINDOW {
            0
        } else if x < size - s {
            1
        } else {
            2
        }
    };
    let mut labels = vec![0f32; (h * w) as usize];
    for y in 0..h {
        for x in 0..w {
            labels[(y * w + x) as usize] =
                (region(y, h, shift[0]) * 3 + region(x, w, shift[1])) as f32;
        }
    }
    let m = Tensor::from_slice(&labels)
        .reshape([h / WINDOW, WINDOW, w / WINDOW, WINDOW])
        .permute([0, 2, 1, 3])
        .reshape([-1, WINDOW * WINDOW]);
    let diff = m.unsqueeze(1) - m.unsqueeze(2);
    diff.ne(0.0)
        .to_kind(Kind::Float)
        .multiply_scalar(-100.0)
        .to_kind(options.0)
        .to_device(options.1)
}

fn shifted_window_attention(
    p: nn::Path,
    dim: i64,
    heads: i64,
    shift: i64,
) -> impl Fn(&Tensor) -> Tensor {
    let qkv = nn::linear(&p / "qkv", dim, 3 * dim, Default::default());
    let proj = nn::linear(&p / "proj", dim, dim, Default::default());
    let table = p.var(
        "relative_position_bias_table",
        &[(2 * WINDOW - 1) * (2 * WINDOW - 1), heads],
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    );
    let index = relative_position_index();
    move |xs: &Tensor| {
        let (b, h, w, c) = xs.size4().unwrap();
        let pad_r = (WINDOW - w % WINDOW) % WINDOW;
        let pad_b = (WINDOW - h % WINDOW) % WINDOW;
        let x = xs.constant_pad_nd([0, 0, 0, pad_r, 0, pad_b]);
        let (ph, pw) = (h + pad_b, w + pad_r);
        // No shift along an axis that one window already covers.
        let shift = [
            if WINDOW >= ph { 0 } else { shift },
            if WINDOW >= pw { 0 } else { shift },
        ];
        let shifted = shift.iter().any(|&s| s > 0);
        let x = if shifted {
            x.roll([-shift[0], -shift[1]], [1, 2])
        } else {
            x
        };
        let windows = (ph / WINDOW) * (pw / WINDOW);
        let n = WINDOW * WINDOW;
        let x = x
            .reshape([b, ph / WINDOW, WINDOW, pw / WINDOW, WINDOW, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b * windows, n, c]);
        let qkv = x
            .apply(&qkv)
            .reshape([b * windows, n, 3, heads, c / heads])
            .permute([2, 0, 3, 1, 4]);
        let q = qkv.get(0) * ((c / heads) as f64).powf(-0.5);
        let attn = q.matmul(&qkv.get(1).transpose(-2, -1));
        let bias = table
            .index_select(0, &index.to_device(table.device()))
            .reshape([n, n, heads])
            .permute([2, 0, 1]);
        let mut attn = attn + bias.unsqueeze(0);
        if shifted {
            let mask = shift_mask(ph, pw, shift, (attn.kind(), attn.device()));
            attn = (attn.reshape([b, windows, heads, n, n]) + mask.unsqueeze(1).unsqueeze(0))
                .reshape([-1, heads, n, n]);
        }
        let x = attn
            .softmax(-1, attn.kind())
            .matmul(&qkv.get(2))
            .transpose(1, 2)
            .reshape([b * windows, n, c])
            .apply(&proj);
        let x = x
            .reshape([b, ph / WINDOW, pw / WINDOW, WINDOW, WINDOW, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b, ph, pw, c]);
        let x = if shifted {
            x.roll([shift[0], shift[1]], [1, 2])
        } else {
            x
        };
        x.narrow(1, 0, h).narrow(2, 0, w).contiguous()
    }
}

/// One block. Each records its `norm1` output (NHWC), so that the last block's is left in the
/// tap: Grad-CAM's target for Swin.
fn swin_block(p: nn::Path, dim: i64, heads: i64, shift: i64, sd_prob: f64) -> Layer {
    let norm1 = layer_norm(&p / "norm1", dim, EPS);
    let attn = shifted_window_attention(&p / "attn", dim, heads, shift);
    let norm2 = layer_norm(&p / "norm2", dim, EPS);
    let fc1 = nn::linear(&p / "mlp" / 0, dim, 4 * dim, Default::default());
    let fc2 = nn::linear(&p / "mlp" / 3, 4 * dim, dim, Default::default());
    Box::new(move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let normed = xs.apply(&norm1);
        tap.record(&normed, Layout::Nhwc);
        let xs = xs + stochastic_depth(attn(&normed), sd_prob, train);
        let ys = xs.apply(&norm2).apply(&fc1).gelu("none").apply(&fc2);
        &xs + stochastic_depth(ys, sd_prob, train)
    })
}

/// Pads to even height and width, gathers each 2x2 neighbourhood into channels, norm, reduction.
fn patch_merging(p: nn::Path, dim: i64) -> Layer {
    let norm = layer_norm(&p / "norm", 4 * dim, EPS);
    let reduction = nn::linear(
        &p / "reduction",
        4 * dim,
        2 * dim,
        nn::LinearConfig {
            bias: false,
            ..Default::default()
        },
    );
    Box::new(move |xs: &Tensor, _train: bool, _tap: &mut Tap| {
        let (_, h, w, _) = xs.size4().unwrap();
        let x = xs.constant_pad_nd([0, 0, 0, w % 2, 0, h % 2]);
        let part = |dy: i64, dx: i64| x.slice(1, dy, None, 2).slice(2, dx, None, 2);
        Tensor::cat(&[part(0, 0), part(1, 0), part(0, 1), part(1, 1)], -1)
            .apply(&norm)
            .apply(&reduction)
    })
}

pub fn swin_t(p: &nn::Path, num_classes: i64) -> Network {
    let f = p / "features";
    let patch = nn::conv2d(
        &f / 0 / 0,
        3,
        EMBED,
        4,
        nn::ConvConfig {
            stride: 4,
            ..Default::default()
        },
    );
    let patch_norm = layer_norm(&f / 0 / 2, EMBED, EPS);
    let mut body: Vec<Layer> = Vec::new();
    let total: i64 = DEPTHS.iter().sum();
    let mut block_id = 0;
    let mut dim = EMBED;
    for (s, (&depth, &heads)) in DEPTHS.iter().zip(&HEADS).enumerate() {
        for b in 0..depth {
            let sd_prob = DROP_PATH * block_id as f64 / (total - 1) as f64;
            let shift = if b % 2 == 0 { 0 } else { WINDOW / 2 };
            body.push(swin_block(&f / (2 * s + 1) / b, dim, heads, shift, sd_prob));
            block_id += 1;
        }
        if s < 3 {
            body.push(patch_merging(&f / (2 * s + 2), dim));
            dim *= 2;
        }
    }
    let norm = layer_norm(p / "norm", dim, EPS);
    let backbone = move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let ys = xs.apply(&patch).permute([0, 2, 3, 1]).apply(&patch_norm);
        let ys = body.iter().fold(ys, |t, layer| layer(&t, train, tap)).apply(&norm);
        ys.permute([0, 3, 1, 2]).adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    };
    Network::new(
        backbone,
        0.0,
        nn::linear(p / "head", dim, num_classes, Default::default()),
    )
}

/// PyTorch's state dict carries each attention's `relative_position_index`, which the model
/// computes: a saved model writes it beside `relative_position_bias_table`.
fn extra_buffer(variable: &str) -> Option<Buffer> {
    let prefix = variable.strip_suffix(".relative_position_bias_table")?;
    let values = Vec::<i64>::try_from(relative_position_index()).ok()?;
    Some(Buffer { name: format!("{prefix}.relative_position_index"), shape: vec![values.len()], values })
}

/// The family's spec, with torchvision's weights.
pub fn specs() -> Vec<ModelSpec> {
    vec![ModelSpec {
        weights_url: Some(torchvision_url("swin_t-704ceda3.pth")),
        cam_target: "features[-1][-1].norm1",
        // As convnext's: each downsampling (features.2, .4, .6) opens the stage after it.
        stage_key: crate::models::convnext::stage_key,
        extra_buffer: Some(extra_buffer),
        ..fixed("swin_t", "Swin Transformer", "torchvision.models.swin_t", IMAGENET, "head", swin_t)
    }]
}
