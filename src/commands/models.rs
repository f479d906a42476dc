//! `image-learner models`: every architecture with its family, default input size, parameter
//! count, whether its pretrained weights are installed, and its reference.
use tch::nn;

use crate::{models, weights};

/// The table `image-learner models` prints: every name with its family, default input size,
/// parameter count, whether weights are present in `weights_dir`, and its reference.
fn listing(weights_dir: &std::path::Path) -> String {
    let row = |name: &str, family: &str, size: &str, params: &str, local: &str, reference: &str| {
        format!("{name:<26} {family:<18} {size:>8} {params:>11} {local:>10}  {reference}")
    };
    let mut lines = vec![row("name", "family", "input", "parameters", "pretrained", "reference")];
    for spec in models::registry() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = spec.build(&vs.root(), 1000);
        let local = weights::candidates(weights_dir, spec).iter().any(|p| p.is_file());
        lines.push(row(
            spec.name,
            spec.family,
            &format!("{0}x{0}", spec.default_size),
            &models::parameter_count(&vs).to_string(),
            if local { "local" } else { "-" },
            &spec.reference,
        ));
    }
    lines.push(format!("(pretrained: weights present in {}; see `image-learner weights`)", weights_dir.display()));
    lines.join("\n")
}

pub fn run() {
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = writeln!(std::io::stdout().lock(), "{}", listing(&weights::weights_dir(None)));
}
