//! `image-learner throughput`: steady-state training throughput of one model on random batches,
//! exactly the step `train` runs (channels-last input, forward and loss in the chosen
//! precision, backward, fused Adam step), so that it can be set against PyTorch's in the benchmark
//! (`bench/run.sh`). Timing belongs here and in `bench/`, never in the tests.
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use tch::{nn, Kind, Tensor};

use crate::config::{ColumnRef, OptimizerKind, ThroughputConfig};
use crate::data::{self, metadata::ColumnChoice, SizePolicy};
use crate::optimizer::Optimizer;
use crate::precision::Compute;
use crate::{device, models, runtime};

/// Prints one JSON line: the ingestion's figures with --images, else the model's training step.
pub fn run(cfg: &ThroughputConfig) -> Result<()> {
    runtime::configure(cfg.threads);
    let mut compute = Compute::resolve(device::resolve(cfg.device)?, cfg.precision)?;
    compute.channels_last = !cfg.contiguous;
    let line = match (&cfg.images, &cfg.metadata, &cfg.model) {
        (Some(images), Some(metadata), _) => serde_json::to_string(&ingestion(images, metadata, cfg.label_column.clone(), cfg.image_size)?)?,
        (_, _, Some(model)) => serde_json::to_string(&throughput(model, cfg, &compute)?)?,
        _ => crate::bail_input!("name a model, or --images and --metadata"),
    };
    println!("{line}");
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub model: String,
    pub precision: String,
    pub batch_size: usize,
    pub image_size: usize,
    pub steps: usize,
    pub ema_decay: f64,
    pub images_per_second: f64,
    /// The share of the timed steps' wall time spent updating the moving average (on a CPU,
    /// where each update has finished when its call returns).
    pub ema_share: f64,
}

#[derive(Debug, Serialize)]
pub struct Ingestion {
    pub images: usize,
    pub image_size: usize,
    pub seconds: f64,
    pub images_per_second: f64,
    /// The decoded set's pixel bytes (held as 8-bit RGB).
    pub pixel_bytes: usize,
}

/// Times what `train` does before the first epoch: read the metadata, read the ZIP, decode and
/// resize every image to `size` x `size` (in parallel, as `train` does).
pub fn ingestion(
    images: &Path,
    metadata: &Path,
    label: Option<ColumnRef>,
    size: usize,
) -> Result<Ingestion> {
    let started = Instant::now();
    let choice = ColumnChoice { label, ..ColumnChoice::default() };
    let meta = data::metadata::read_metadata(metadata, &choice)?;
    let ing = data::ingest(images, meta, SizePolicy::Fixed(size), data::Labels::Classes(None), (crate::config::CacheChoice::Ram, data::store::Reads::EveryEpoch))?;
    let seconds = started.elapsed().as_secs_f64();
    let n = ing.images.len();
    Ok(Ingestion {
        images: n,
        image_size: size,
        seconds,
        images_per_second: n as f64 / seconds,
        pixel_bytes: ing.images.store.resident_bytes(),
    })
}

/// Times `cfg.steps` training steps of `name` after `cfg.warmup` untimed ones.
pub fn throughput(name: &str, cfg: &ThroughputConfig, compute: &Compute) -> Result<Throughput> {
    let (batch, size, warmup, steps) = (cfg.batch_size, cfg.image_size, cfg.warmup, cfg.steps);
    let spec = models::find(name)?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(compute.device);
    let net = spec.build(&vs.root(), 7);
    compute.prepare(&vs);
    let mut opt = Optimizer::new(&vs, OptimizerKind::Adam, 1e-3, 0.0, |_| 1.0)?;
    let mut ema = crate::ema::Ema::new(&vs, cfg.ema_decay);
    let (b, s) = (batch as i64, size as i64);
    let x = compute.input(Tensor::randn([b, 3, s, s], (Kind::Float, tch::Device::Cpu)));
    let y = Tensor::randint(7, [b], (Kind::Int64, compute.device));
    let mut started = Instant::now();
    let mut ema_seconds = 0.0;
    for step in 0..warmup + steps {
        if step == warmup {
            if let tch::Device::Cuda(n) = compute.device {
                tch::Cuda::synchronize(n as i64);
            }
            started = Instant::now();
        }
        let loss = compute.run(|| net.forward(&x, true, false).cross_entropy_for_logits(&y));
        opt.backward_step(&loss)?;
        if let Some(e) = &mut ema {
            let t = Instant::now();
            e.update();
            if step >= warmup {
                ema_seconds += t.elapsed().as_secs_f64();
            }
        }
    }
    let _ = Vec::<f32>::try_from(vs.trainable_variables()[0].flatten(0, -1).narrow(0, 0, 1))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Throughput {
        model: name.to_string(),
        precision: compute.describe(),
        batch_size: batch,
        image_size: size,
        steps,
        ema_decay: cfg.ema_decay,
        images_per_second: (batch as f64 * steps as f64) / seconds,
        ema_share: ema_seconds / seconds,
    })
}
