// Bakes the location of libtorch into the binary (rpath), so that it runs without LD_LIBRARY_PATH.
// tch's own rpath covers only its C++ wrapper; the executable itself needs this one.
use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("IMAGE_LEARNER_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))"])
        .output()
        .ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=IMAGE_LEARNER_PYTHON");
    match torch_lib_dir() {
        Some(dir) => {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
            // Known at run time so that `--device cuda` can load libtorch_cuda.so on demand.
            println!("cargo:rustc-env=IMAGE_LEARNER_TORCH_LIB={}", dir.display());
        }
        None => {
            println!("cargo:warning=libtorch not found: run through scripts/setup.sh (README)");
            println!("cargo:rustc-env=IMAGE_LEARNER_TORCH_LIB=");
        }
    }
}
