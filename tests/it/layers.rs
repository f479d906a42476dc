//! The modules depend downward only: each `crate::` path in a module's files names a module of
//! its own layer or one below. The layers, bottom up, are the data flow of lib.rs.
use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &["error", "shim"],
    &["config"],
    &["device", "precision", "runtime"],
    &["data"],
    &["models", "optimizer", "schedule", "ema"],
    &["metrics"],
    &["decisions"],
    &["task"],
    &["weights"],
    &["evaluation"],
    &["explain"],
    &["train"],
    &["cross_validation"],
    &["outputs", "synth"],
    &["report"],
    &["commands"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules that `crate::` paths in `text` name (`crate::a::b`, `crate::{a, b::c}`).
fn named_modules(text: &str) -> Vec<String> {
    let ident = |s: &str| s.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut item) = (0, String::new());
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            out.push(ident(&item));
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "bail_input");
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_module_imports_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let module = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
        if ["lib", "main", "cli"].contains(&module.as_str()) {
            continue;
        }
        let own = layer(&module).unwrap_or_else(|| panic!("{} is in no layer: add its module to LAYERS", rel.display()));
        for named in named_modules(&std::fs::read_to_string(&f).unwrap()) {
            let theirs = layer(&named).unwrap_or_else(|| panic!("{} names crate::{named}, which is in no layer", rel.display()));
            checked += 1;
            if theirs > own {
                wrong.push(format!("{} ({module}) imports {named}, a layer above it", rel.display()));
            }
        }
    }
    assert!(checked > 50, "only {checked} imports found: the scan is broken");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_scan_reads_both_forms_of_path() {
    let text = "use crate::data::{self, split};\nuse crate::{device, models::Network, weights};\nlet x = crate::report::build();";
    assert_eq!(named_modules(text), ["data", "device", "models", "weights", "report"]);
}

/// Files outside `src/task/` that name a kind of task, and why each must.
const TASK_VARIANTS_OUTSIDE_THE_SEAM: &[(&str, &str)] = &[
    ("report/mod.rs", "the report's one dispatch, to report/classification.rs or report/regression.rs"),
    ("report/classification.rs", "its test builds a binary task"),
    ("weights/bundle.rs", "a Best Model's task is built from what its config.json records"),
];

#[test]
fn stages_ask_the_task_rather_than_branching_on_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        if rel.starts_with("task/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        if text.contains("is_regression") {
            wrong.push(format!("{rel} asks is_regression: ask the task a question of its own (src/task/)"));
        }
        let names_a_kind = text.contains("Task::Classify") || text.contains("Task::Regress");
        if names_a_kind && !TASK_VARIANTS_OUTSIDE_THE_SEAM.iter().any(|(file, _)| *file == rel) {
            wrong.push(format!("{rel} matches on the kind of task: move the behaviour behind src/task/, or list the file with its reason"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The list stays honest: every file in it still needs its entry.
    for (file, why) in TASK_VARIANTS_OUTSIDE_THE_SEAM {
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        assert!(text.contains("Task::Classify") || text.contains("Task::Regress"), "{file} no longer names a kind of task ({why}): drop it from the list");
    }
}
