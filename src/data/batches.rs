//! Batches for the trainer: indices in a seeded order, decoded (when the images are read from the
//! ZIP), augmented and normalised to float CHW in a background thread, a few batches ahead, so that
//! the model does not wait on the data.
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::augment::{self, Plan};
use crate::data::ImageSet;

/// Per-channel mean and standard deviation, on the 0..1 scale.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

pub const IMAGENET: Normalization =
    Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/// One batch: images as float N x 3 x S x S (row-major), labels (regression: targets), and
/// which images.
pub struct Batch {
    pub pixels: Vec<f32>,
    pub labels: Vec<i64>,
    /// Regression: the images' true values; empty otherwise.
    pub targets: Vec<f64>,
    pub indices: Vec<usize>,
}

/// Converts images `indices` of `set` to a normalised float batch, augmenting when asked. The
/// images are decoded first (in parallel where they come from the ZIP), then augmented in order,
/// so that the random stream, and the batch, are the same however the images are held.
pub fn make_batch(
    set: &ImageSet,
    indices: &[usize],
    norm: &Normalization,
    augs: &Plan,
    rng: &mut ChaCha8Rng,
) -> Result<Batch> {
    let s = set.size;
    let plane = s * s;
    let mut pixels = vec![0f32; indices.len() * 3 * plane];
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * norm.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| norm.mean[c] / norm.std[c]);
    let decoded = set.images(indices)?;
    let mut scratch = Vec::new();
    for (b, image) in decoded.iter().enumerate() {
        let img: &[u8] = if augs.is_empty() {
            image
        } else {
            scratch.clear();
            scratch.extend_from_slice(image);
            augment::apply(&mut scratch, s, augs, rng);
            &scratch
        };
        let out = &mut pixels[b * 3 * plane..(b + 1) * 3 * plane];
        for (p, px) in img.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + p] = px[c] as f32 * scale[c] - shift[c];
            }
        }
    }
    let targets = if set.targets.is_empty() { Vec::new() } else { set.values(indices) };
    Ok(Batch { pixels, labels: indices.iter().map(|&i| set.labels[i] as i64).collect(), targets, indices: indices.to_vec() })
}

/// The seed of epoch `epoch`'s order and augmentation stream.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch as u64 + 1)
}

/// The batches of one epoch, made in a background thread, at most `AHEAD` batches in advance; an
/// image that cannot be read again ends the epoch with its error.
pub struct EpochBatches {
    rx: Receiver<Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

/// The batches of a training epoch over `images` images: a last batch of one is dropped.
pub fn training_steps(images: usize, batch_size: usize) -> usize {
    let n = images.div_ceil(batch_size);
    if n > 1 && images % batch_size == 1 { n - 1 } else { n }
}

impl EpochBatches {
    /// Training order: a seeded shuffle of `indices` (with `balanced`, a seeded draw of as many
    /// in which every class comes up equally often), augmented. A last batch of one image is
    /// dropped (batch norm cannot train on it).
    #[allow(clippy::too_many_arguments)]
    pub fn training(
        set: Arc<ImageSet>,
        indices: &[usize],
        batch_size: usize,
        norm: Normalization,
        augs: Plan,
        seed: u64,
        epoch: usize,
        balanced: bool,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed(seed, epoch));
        let order = if balanced {
            super::balance::balanced_draw(indices, &set.labels, &mut rng)
        } else {
            let mut order = indices.to_vec();
            order.shuffle(&mut rng);
            order
        };
        let mut chunks: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
        chunks.truncate(training_steps(order.len(), batch_size));
        Self::spawn(set, chunks, norm, augs, rng)
    }

    /// Evaluation order: `indices` as given, no augmentation.
    pub fn evaluation(set: Arc<ImageSet>, indices: &[usize], batch_size: usize, norm: Normalization) -> Self {
        let chunks = indices.chunks(batch_size).map(<[usize]>::to_vec).collect();
        Self::spawn(set, chunks, norm, Plan::none(), ChaCha8Rng::seed_from_u64(0))
    }

    fn spawn(
        set: Arc<ImageSet>,
        chunks: Vec<Vec<usize>>,
        norm: Normalization,
        augs: Plan,
        mut rng: ChaCha8Rng,
    ) -> Self {
        let (tx, rx) = sync_channel(AHEAD);
        let handle = std::thread::spawn(move || {
            for chunk in chunks {
                let batch = make_batch(&set, &chunk, &norm, &augs, &mut rng);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        EpochBatches { rx, handle: Some(handle) }
    }
}

/// Batches made ahead of the one in use: enough to hide a slow decode, few enough that memory
/// grows with the batch and not with the data set.
const AHEAD: usize = 3;

impl Iterator for EpochBatches {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        self.rx.recv().ok()
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        // Unblock the producer, then wait for it.
        let (_, dummy) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dummy));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Arc<ImageSet> {
        let size = 2;
        let n = 5;
        Arc::new(ImageSet {
            size,
            store: crate::data::store::Store::Ram((0..n * size * size * 3).map(|i| (i * 7 % 256) as u8).collect()),
            labels: (0..n).map(|i| i % 2).collect(),
            targets: Vec::new(),
            names: (0..n).map(|i| format!("{i}.png")).collect(),
            classes: vec!["a".into(), "b".into()],
        })
    }

    #[test]
    fn normalises_to_chw() {
        let s = set();
        let norm = Normalization { mean: [0.5, 0.0, 0.0], std: [0.5, 1.0, 2.0] };
        let b = make_batch(&s, &[1], &norm, &Plan::none(), &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        let img = s.image(1).unwrap();
        for p in 0..4 {
            assert!((b.pixels[p] - (img[p * 3] as f32 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
            assert!((b.pixels[4 + p] - img[p * 3 + 1] as f32 / 255.0).abs() < 1e-6);
            assert!((b.pixels[8 + p] - img[p * 3 + 2] as f32 / 255.0 / 2.0).abs() < 1e-6);
        }
        assert_eq!(b.labels, [1]);
    }

    #[test]
    fn epochs_are_seeded_shuffles_covering_all() {
        let s = set();
        let order = |seed, epoch| -> Vec<usize> {
            EpochBatches::training(s.clone(), &[0, 1, 2, 3, 4], 2, IMAGENET, Plan::none(), seed, epoch, false)
                .flat_map(|b| b.unwrap().indices)
                .collect()
        };
        let a = order(1, 0);
        // Five images in batches of two: the last single image is dropped.
        assert_eq!(a.len(), 4);
        assert_eq!(a, order(1, 0));
        assert!((0..5).any(|e| order(1, e) != a));
        let eval: Vec<usize> = EpochBatches::evaluation(s, &[4, 0, 2], 2, IMAGENET).flat_map(|b| b.unwrap().indices).collect();
        assert_eq!(eval, [4, 0, 2]);
    }
}
