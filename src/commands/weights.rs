//! `image-learner weights fetch|import`: pretrained weights installed into the weights folder.
use anyhow::Result;

use crate::config::WeightsConfig;
use crate::{models, weights};

pub fn run(cfg: &WeightsConfig) -> Result<()> {
    let (WeightsConfig::Fetch { model, weights } | WeightsConfig::Import { model, weights, .. }) = cfg;
    let (spec, dir) = (models::find(model)?, weights::weights_dir(weights.weights_dir.as_deref()));
    let path = match cfg {
        WeightsConfig::Fetch { .. } => weights::fetch::fetch(spec, &dir)?,
        WeightsConfig::Import { file, .. } => weights::import(spec, file, &dir)?,
    };
    eprintln!("{} weights installed: {}", spec.name, path.display());
    Ok(())
}
