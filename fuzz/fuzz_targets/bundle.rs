//! The Best Model reader as `predict` uses it (ZIP, config.json, safetensors) on any bytes: an
//! error or a bundle whose configuration passed every check, never a panic.
//!
//! Inputs whose first byte is odd are a config.json and a safetensors file separated by a 0xFF
//! byte, zipped here: the ZIP's checksums would otherwise stop almost every mutation before the
//! configuration and weight readers see it.
#![no_main]
use std::io::Write;

use image_learner::weights::bundle;
use libfuzzer_sys::fuzz_target;

fn zip_of(config: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("config.json", opts).unwrap();
    w.write_all(config).unwrap();
    w.start_file("model.safetensors", opts).unwrap();
    w.write_all(weights).unwrap();
    w.finish().unwrap().into_inner()
}

fuzz_target!(|data: &[u8]| {
    let bytes = match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => {
            let cut = rest.iter().position(|&b| b == 0xFF).unwrap_or(rest.len());
            zip_of(&rest[..cut], rest.get(cut + 1..).unwrap_or_default())
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
