//! The Best Model reader as `predict` uses it (ZIP, config.json, safetensors) on any bytes: an
//! error or a bundle whose configuration passed every check, never a panic.
#![no_main]
use image_learner::weights::bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = bundle::from_bytes(data, "fuzz.zip") {
        assert!(b.config.classes.len() >= 2);
        assert!((16..=1024).contains(&b.config.image_size));
        assert!(b.config.eval_batch_size >= 1);
        let _ = b.task();
    }
});
