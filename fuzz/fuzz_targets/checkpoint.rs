//! The PyTorch checkpoint reader (zip and legacy formats) on any bytes: an error or tensors,
//! never a panic, and never an allocation the bytes do not pay for.
#![no_main]
use image_learner::weights::torch_pickle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tensors) = torch_pickle::read_bytes(data) {
        for t in tensors.values() {
            let _ = t.numel();
        }
    }
});
