//! `image-learner weights fetch|import`: pretrained weights installed into the weights folder.
use anyhow::Result;

use crate::config::WeightsConfig;
use crate::{models, weights};

pub fn run(cfg: &WeightsConfig) -> Result<()> {
    let path = match cfg {
        WeightsConfig::Fetch { model, weights_dir } => {
            weights::fetch(models::find(model)?, &weights::weights_dir(weights_dir.as_deref()))?
        }
        WeightsConfig::Import { model, file, weights_dir } => {
            weights::import(models::find(model)?, file, &weights::weights_dir(weights_dir.as_deref()))?
        }
    };
    eprintln!("{} weights installed: {}", path.file_stem().unwrap_or_default().to_string_lossy(), path.display());
    Ok(())
}
