//! The Best Model reader as `predict` uses it (ZIP, config.json, safetensors) on any bytes: an
//! error or a bundle whose configuration passed every check, never a panic.
//!
//! Inputs whose first byte is odd are a config.json and a safetensors file separated by a 0xFF
//! byte, zipped here: the ZIP's checksums would otherwise stop almost every mutation before the
//! configuration and weight readers see it.
#![no_main]
use image_learner::weights::bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let cut = rest.iter().position(|&b| b == 0xFF).unwrap_or(rest.len());
            bundle::zip_members(&rest[..cut], rest.get(cut + 1..).unwrap_or_default()).expect("a ZIP in memory")
        }
        _ => data.to_vec(),
    };
    if let Ok(b) = bundle::from_bytes(&bytes, "fuzz.zip") {
        assert!(b.config.classes.len() >= 2);
        assert!((16..=1024).contains(&b.config.image_size));
        assert!(b.config.eval_batch_size >= 1);
        let _ = b.task();
    }
});
