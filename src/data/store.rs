//! Where the decoded images live (`--cache`): in memory, decoded once at ingestion (`ram`), or
//! in the ZIP, read and decoded again for each batch (`none`), so that memory grows with the
//! batch rather than with the data set; and the choice between the two (`auto`).
use std::borrow::Cow;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use crate::config::CacheChoice;
use crate::data::archive::EntryReader;
use crate::data::images;
use crate::error::input_error;

/// Memory left for libtorch, the model and its batches when deciding whether the decoded images
/// fit.
pub const ALLOWANCE_MB: u64 = 1024;

/// The decoded images of a data set, each `size` x `size` x 3 bytes.
pub enum Store {
    /// Every image decoded, one after another.
    Ram(Vec<u8>),
    /// Each image's entry in the ZIP, decoded when asked for.
    Zip { reader: EntryReader, entries: Vec<usize> },
}

impl Store {
    /// Image `i` (named `name` in messages), decoded at `size`.
    pub fn image(&self, i: usize, name: &str, size: usize) -> Result<Cow<'_, [u8]>> {
        match self {
            Store::Ram(pixels) => {
                let n = size * size * 3;
                Ok(Cow::Borrowed(&pixels[i * n..(i + 1) * n]))
            }
            Store::Zip { reader, entries } => {
                let again = |e: anyhow::Error| {
                    input_error(format!(
                        "{}: {e:#}. The image was read at the start of the job, so the ZIP changed while the job ran; \
                         run the job again with the file left as it is",
                        reader.display_name()
                    ))
                };
                let bytes = reader.read(entries[i], name).map_err(again)?;
                let (pixels, _) = images::decode_rgb(&bytes, &crate::error::short(name), size as u32).map_err(again)?;
                Ok(Cow::Owned(pixels))
            }
        }
    }

    /// Images `indices`, in that order; read from the ZIP, they are decoded in parallel (the
    /// result does not depend on the number of threads).
    pub fn images<'a>(&'a self, indices: &[usize], names: &[String], size: usize) -> Result<Vec<Cow<'a, [u8]>>> {
        match self {
            Store::Ram(_) => indices.iter().map(|&i| self.image(i, &names[i], size)).collect(),
            Store::Zip { .. } => indices.par_iter().map(|&i| self.image(i, &names[i], size)).collect(),
        }
    }

    /// Bytes of decoded images held in memory.
    pub fn resident_bytes(&self) -> usize {
        match self {
            Store::Ram(p) => p.len(),
            Store::Zip { .. } => 0,
        }
    }
}

/// Which store a run uses, and why, in words for the log, metrics.json and the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CachePlan {
    /// "ram" or "none".
    pub mode: &'static str,
    pub reason: String,
}

impl CachePlan {
    pub fn in_memory(&self) -> bool {
        self.mode == "ram"
    }

    /// Where the images are, and why, in one line.
    pub fn describe(&self) -> String {
        let place = if self.in_memory() { "in memory" } else { "read from the ZIP for each batch" };
        format!("{place} ({})", self.reason)
    }
}

/// The memory a job may use, in MB, and where that figure came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub mb: u64,
    pub source: &'static str,
}

impl Budget {
    /// `GALAXY_MEMORY_MB`, the memory Galaxy grants the job; else the memory available now
    /// (`MemAvailable` in /proc/meminfo); else none known.
    pub fn of_this_job() -> Option<Budget> {
        let galaxy = std::env::var("GALAXY_MEMORY_MB").ok().and_then(|v| v.trim().parse().ok()).filter(|&v: &u64| v > 0);
        if let Some(mb) = galaxy {
            return Some(Budget { mb, source: "GALAXY_MEMORY_MB" });
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kb: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(Budget { mb: kb / 1024, source: "the memory available" })
    }
}

/// How often a command reads each image after ingestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Every epoch (training): worth keeping decoded where memory allows.
    EveryEpoch,
    /// Once (prediction): keeping them would only save the second decoding, at the cost of
    /// memory for all of them.
    Once,
}

/// The store for `images` images at `size` x `size` read as `reads` says, as `choice` asks,
/// within `budget`.
pub fn plan(choice: CacheChoice, reads: Reads, images: usize, size: usize, budget: Option<&Budget>) -> CachePlan {
    let need_mb = (images as u64 * (size * size * 3) as u64).div_ceil(1 << 20);
    let decoded = format!("{images} images at {size}x{size} take {need_mb} MB decoded");
    let room = budget.map(|b| (b.mb.saturating_sub(ALLOWANCE_MB), b));
    // The memory available changes from run to run; the words stay the same, so that a run's
    // metrics.json is the same every time.
    let limit = |(room, b): (u64, &Budget)| match b.source {
        "GALAXY_MEMORY_MB" => format!("{room} MB ({} MB by GALAXY_MEMORY_MB, less {ALLOWANCE_MB} MB for libtorch and the model)", b.mb),
        source => format!("{source} less {ALLOWANCE_MB} MB for libtorch and the model"),
    };
    match choice {
        CacheChoice::Ram => {
            let over = room.filter(|&(r, _)| need_mb > r).map_or(String::new(), |r| {
                format!("; more than the {} this job has, so it may run out of memory: --cache none or auto would read each batch from the ZIP", limit(r))
            });
            CachePlan { mode: "ram", reason: format!("--cache ram: {decoded}, decoded once and kept in memory{over}") }
        }
        CacheChoice::None => CachePlan { mode: "none", reason: format!("--cache none: each batch is read from the ZIP and decoded ({decoded})") },
        CacheChoice::Auto if reads == Reads::Once => {
            CachePlan { mode: "none", reason: format!("auto: each image is predicted once, so each batch is read from the ZIP and decoded ({decoded})") }
        }
        CacheChoice::Auto => match room {
            None => CachePlan { mode: "ram", reason: format!("auto: {decoded}, kept in memory (no memory limit is known)") },
            Some(r) if need_mb <= r.0 => CachePlan { mode: "ram", reason: format!("auto: {decoded}, within {}; kept in memory", limit(r)) },
            Some(r) => CachePlan { mode: "none", reason: format!("auto: {decoded}, more than {}; each batch is read from the ZIP and decoded", limit(r)) },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batches::{make_batch, IMAGENET};
    use crate::data::{archive::Archive, augment::Plan, ImageSet};
    use rand::SeedableRng;

    /// `n` PNG images of 20x14 noise (resized to 16 when read), in a ZIP file in `dir`, with the
    /// same images decoded in memory as ingestion decodes them.
    fn zip_and_ram(dir: &std::path::Path, n: usize) -> (Store, Store, Vec<String>) {
        let mut entries = Vec::new();
        let mut pixels = Vec::new();
        for i in 0..n {
            let img = image::RgbImage::from_fn(20, 14, |x, y| image::Rgb([(x * 13 + y * 7 + i as u32 * 31) as u8, (x * y + i as u32) as u8, ((y * 29) ^ x) as u8]));
            let mut png = std::io::Cursor::new(Vec::new());
            img.write_to(&mut png, image::ImageFormat::Png).unwrap();
            pixels.extend(images::decode_rgb(png.get_ref(), "x", 16).unwrap().0);
            entries.push((format!("img/{i}.png"), png.into_inner()));
        }
        let named: Vec<(&str, &[u8])> = entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        let path = dir.join("images.zip");
        std::fs::write(&path, crate::data::archive::tests::zip_of(&named)).unwrap();
        let archive = Archive::open(&path).unwrap();
        let zip = Store::Zip { reader: archive.entry_reader(), entries: archive.entries.iter().map(|e| e.index).collect() };
        (zip, Store::Ram(pixels), entries.into_iter().map(|(n, _)| n).collect())
    }

    /// Batches made from the ZIP, on pools of 1 and 3 decoding threads, are the batches made from
    /// memory, augmentation included: same bytes whatever the cache mode and the thread count.
    #[test]
    fn the_zip_gives_the_bytes_memory_gives_with_any_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let (zip, ram, names) = zip_and_ram(dir.path(), 12);
        let set = |store| ImageSet { size: 16, store, labels: vec![0; 12], targets: Vec::new(), names: names.clone(), classes: vec!["a".into()] };
        let (zip, ram) = (set(zip), set(ram));
        assert_eq!(zip.store.resident_bytes(), 0);
        let plan = Plan { augs: vec![crate::config::Augmentation::HorizontalFlip, crate::config::Augmentation::RandomResizedCrop, crate::config::Augmentation::ColorJitter], crop_scale: [0.3, 1.0] };
        let order = [7, 2, 11, 0, 5, 5, 9];
        let batch = |s: &ImageSet| make_batch(s, &order, &IMAGENET, &plan, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3)).unwrap().pixels;
        let expected = batch(&ram);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            assert!(pool.install(|| batch(&zip)) == expected, "{threads} threads");
        }
        for i in 0..12 {
            assert_eq!(zip.image(i).unwrap(), ram.image(i).unwrap());
        }
    }

    #[test]
    fn auto_keeps_the_images_in_memory_only_where_they_fit() {
        let galaxy = Budget { mb: 2048, source: "GALAXY_MEMORY_MB" };
        // 1,400 images at 96x96: 37 MB, far within 1024 MB.
        let small = plan(CacheChoice::Auto, Reads::EveryEpoch, 1400, 96, Some(&galaxy));
        assert!(small.in_memory(), "{small:?}");
        assert_eq!(small.reason, "auto: 1400 images at 96x96 take 37 MB decoded, within 1024 MB (2048 MB by GALAXY_MEMORY_MB, less 1024 MB for libtorch and the model); kept in memory");
        // 50,000 at 224x224: 7,178 MB.
        let large = plan(CacheChoice::Auto, Reads::EveryEpoch, 50_000, 224, Some(&galaxy));
        assert_eq!(large.mode, "none");
        assert!(large.reason.contains("take 7178 MB decoded, more than 1024 MB"), "{}", large.reason);
        // Exactly at the limit still fits; one byte more does not.
        let at = 1024 * (1 << 20) / (32 * 32 * 3);
        assert!(plan(CacheChoice::Auto, Reads::EveryEpoch, at, 32, Some(&galaxy)).in_memory());
        assert!(!plan(CacheChoice::Auto, Reads::EveryEpoch, at + 1, 32, Some(&galaxy)).in_memory());
        // A budget under the allowance leaves no room at all.
        assert!(!plan(CacheChoice::Auto, Reads::EveryEpoch, 1, 32, Some(&Budget { mb: 512, source: "GALAXY_MEMORY_MB" })).in_memory());
        assert!(plan(CacheChoice::Auto, Reads::EveryEpoch, 50_000, 224, None).in_memory());
        // Without GALAXY_MEMORY_MB, the words do not carry the figure, which changes run to run.
        let now = |mb| plan(CacheChoice::Auto, Reads::EveryEpoch, 10, 32, Some(&Budget { mb, source: "the memory available" })).reason;
        assert_eq!(now(20_000), now(21_000));
        assert!(now(20_000).ends_with("within the memory available less 1024 MB for libtorch and the model; kept in memory"), "{}", now(20_000));
    }

    #[test]
    fn an_explicit_choice_is_obeyed_and_a_risky_one_says_so() {
        let galaxy = Budget { mb: 2048, source: "GALAXY_MEMORY_MB" };
        let forced = plan(CacheChoice::Ram, Reads::EveryEpoch, 50_000, 224, Some(&galaxy));
        assert!(forced.in_memory());
        assert!(forced.reason.contains("may run out of memory"), "{}", forced.reason);
        assert!(!plan(CacheChoice::Ram, Reads::EveryEpoch, 10, 32, Some(&galaxy)).reason.contains("may run out"));
        assert_eq!(plan(CacheChoice::None, Reads::EveryEpoch, 10, 32, Some(&galaxy)).mode, "none");
        // Prediction reads each image once: auto keeps none, however much memory there is.
        assert_eq!(plan(CacheChoice::Auto, Reads::Once, 10, 32, None).mode, "none");
        assert!(plan(CacheChoice::Ram, Reads::Once, 10, 32, None).in_memory());
    }
}
