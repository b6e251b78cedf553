//! The module graph: every `crate::` path in the library's code names a module further down the
//! data flow (or one of the shared modules below all of them), so no module reaches back up.
//! The order is the one `src/lib.rs` documents; a new edge against it fails here, naming the
//! file and line. Test code (`tests.rs`, `*_tests.rs`, inline `mod tests`) and comments are
//! left out: tests may reach anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Modules in data-flow order: a module may use those after it, never those before it.
const ORDER: &[&[&str]] = &[
    &["main"],
    &["cli"],
    &["app"],
    &["admin"],
    &["consumer", "sqs_source", "redis_source", "amqp_source", "groups", "redrive"],
    &["offsets"],
    &["dispatch"],
    &["pipeline"],
    &["prepare"],
    &["delivery"],
    &["dlq"],
    &["archive"],
    &["kafka"],
    &["auth"],
    &["source"],
    &["telemetry"],
    &["record", "attempt"],
    &["health", "panics"],
    &["config"],
    &["codec"],
    &["shutdown"],
];

fn rank(module: &str) -> Option<usize> {
    ORDER.iter().position(|level| level.contains(&module))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top module a file under `src/` belongs to (`src/dispatch/lanes.rs` → `dispatch`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a path").as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::<module>` paths on the lines of `code`, with their line numbers.
fn uses(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.push((number + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn no_module_reaches_back_up_the_data_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    all.sort();
    let mut modules = BTreeMap::new();
    let mut back_edges = Vec::new();
    for file in &all {
        let name = file.file_name().expect("a file name").to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") || name == "lib.rs" {
            continue;
        }
        let module = module_of(&src, file);
        let from =
            rank(&module).unwrap_or_else(|| panic!("{module} (from {}) is not in ORDER", file.display()));
        let text = std::fs::read_to_string(file).expect("a source file");
        // Inline unit tests sit at the end of a file.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(&text);
        for (line, used) in uses(code) {
            modules.insert(used.clone(), ());
            let to = rank(&used)
                .unwrap_or_else(|| panic!("{used} (used at {}:{line}) is not in ORDER", file.display()));
            if used != module && to <= from {
                back_edges.push(format!("{}:{line}: {module} uses {used}", file.display()));
            }
        }
    }
    assert!(back_edges.is_empty(), "modules reaching back up the data flow:\n{}", back_edges.join("\n"));
    // The check saw the graph it is meant to check, not an empty directory.
    for module in ["dispatch", "pipeline", "delivery", "dlq", "archive", "record", "source"] {
        assert!(modules.contains_key(module), "no use of crate::{module} found: the scan is broken");
    }
}
