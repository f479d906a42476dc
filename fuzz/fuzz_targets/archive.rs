//! The ZIP reader, row matching and image decoding, on any bytes taken as a ZIP: every entry is
//! matched by its own name and by its file name, read (within the size limit) and decoded.
#![no_main]
use std::io::Cursor;

use image_learner::data::archive::Archive;
use image_learner::data::images::decode_rgb;
use image_learner::data::metadata::Row;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut archive) = Archive::from_reader(Cursor::new(data), "fuzz.zip") else { return };
    let rows: Vec<Row> = archive
        .entries
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            let base = e.name.rsplit('/').next().unwrap_or(&e.name).to_string();
            [e.name.clone(), base].map(|image| Row { line: i + 2, image, label: "x".into(), split: None, group: None })
        })
        .collect();
    let Ok(report) = archive.match_rows(&rows) else { return };
    for (_, entry) in report.matched.into_iter().take(8) {
        if let Ok(bytes) = archive.read(entry) {
            if let Ok((px, _)) = decode_rgb(&bytes, "fuzz", 16) {
                assert_eq!(px.len(), 16 * 16 * 3);
            }
        }
    }
});
