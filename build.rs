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

// The C++ shim (every csrc/*.cpp: automatic mixed precision, the fused Adam step, the CPU
// kernels; declared on the Rust side in src/shim.rs), compiled against the headers of the same
// libtorch. Only the main crate has it (the fuzz crate includes this file for the
// rpath alone and links the shim through the library).
fn compile_shim(lib: &std::path::Path) {
    let csrc = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("csrc");
    let Ok(listing) = std::fs::read_dir(&csrc) else {
        return;
    };
    let mut sources: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cpp"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        return;
    }
    // The folder itself, so that a new source file is picked up; and every file in it.
    println!("cargo:rerun-if-changed={}", csrc.display());
    for entry in std::fs::read_dir(&csrc).into_iter().flatten().flatten() {
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
    let include = lib.join("../include");
    let python = std::env::var("IMAGE_LEARNER_PYTHON").unwrap_or_else(|_| "python3".into());
    let abi = Command::new(python)
        .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "1".into());
    cc::Build::new()
        .cpp(true)
        .files(&sources)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        // at::parallel_for is a header template: without OpenMP it compiles to a serial loop.
        .flag("-fopenmp")
        .opt_level(3)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false)
        .compile("image_learner_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    // The OpenMP runtime that libtorch itself runs on (the wheel ships its own, found first in the
    // search path above), so that the shim's parallel loops share libtorch's threads; the
    // system's otherwise. A link-lib, unlike a link-arg, also reaches crates that link the
    // library (the fuzz targets).
    if lib.join("libgomp.so.1").is_file() {
        println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
    } else {
        println!("cargo:rustc-link-lib=dylib=gomp");
    }
}

// The tch version Cargo.lock pins, for the report's Software line.
fn tch_version() -> String {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"tch\"" {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return v.trim_end_matches('"').to_string();
            }
        }
    }
    "unknown".into()
}

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rustc-env=IMAGE_LEARNER_TCH_VERSION={}", tch_version());
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=IMAGE_LEARNER_PYTHON");
    match torch_lib_dir() {
        Some(dir) => {
            compile_shim(&dir);
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
