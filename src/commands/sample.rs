//! `image-learner sample`: the bundled synthetic data set (images ZIP + metadata CSV).
use anyhow::Result;

use crate::config::SampleConfig;
use crate::synth;

pub fn run(cfg: &SampleConfig) -> Result<()> {
    synth::write_sample(&cfg.output_dir, cfg.per_class, cfg.image_size as u32, cfg.seed, cfg.jpeg)?;
    eprintln!("sample written to {}", cfg.output_dir.display());
    Ok(())
}
