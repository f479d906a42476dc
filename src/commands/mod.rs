//! One file per subcommand, each a short orchestrator over the stages below it.
pub mod models;
pub mod predict;
pub mod sample;
pub mod throughput;
pub mod train;
pub mod weights;
