//! The metadata reader: delimiter sniffing, encodings, CSV parsing and column detection, on any
//! bytes. It must return a table or an error, never panic.
#![no_main]
use image_learner::config::ColumnRef;
use image_learner::data::metadata::{parse_metadata, ColumnChoice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_metadata(data, "fuzz.csv", &ColumnChoice::default());
    let choice = ColumnChoice {
        image: Some(ColumnRef::Number(1)),
        label: Some(ColumnRef::Name("label".into())),
        split: None,
        group: Some(ColumnRef::Number(3)),
        label_optional: true,
        empty_labels: true,
    };
    if let Ok(m) = parse_metadata(data, "fuzz.csv", &choice) {
        assert!(!m.rows.is_empty());
    }
});
