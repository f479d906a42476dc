//! The integration tests, in one binary so that libtorch is linked once and every test shares
//! one pool of test threads. One module per subject. Two groups need more than the build:
//! `reference::` compares with the Python reference packages and `browser::` renders in
//! Chromium, both installed by `scripts/setup-test.sh`; `scripts/test.sh --quick` leaves them
//! out, and without them they fail with a message saying so (never a silent pass).
//! `tests/allocator.rs` stays a binary of its own: it must run on the process's main thread.
mod common;

mod bad_input;
mod cross_validation;
mod browser;
mod end_to_end;
mod explanations;
mod layers;
mod pretrained;
mod reference;
mod reliability;
mod streaming;
mod weights_fetch;
