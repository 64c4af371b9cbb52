//! The pure layers (`wire`, `route`, `dedupe`) must not read a clock or do I/O: time is an
//! argument and output goes into caller-owned buffers (see STYLE, "protocol logic is a state
//! machine fed bytes and time"). This test greps their sources so the rule cannot rot.

use std::path::{Path, PathBuf};

const PURE: &[&str] = &["src/wire", "src/route", "src/dedupe.rs", "src/proto"];
const FORBIDDEN: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "std::net",
    "std::fs",
    "std::thread::sleep",
    "println!",
    "eprintln!",
    "tracing::",
];

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap().filter_map(Result::ok) {
            rust_files(&e.path(), out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") && !p.ends_with("tests.rs") {
        out.push(p.to_path_buf());
    }
}

#[test]
fn pure_layers_read_no_clock_and_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for p in PURE {
        rust_files(&root.join(p), &mut files);
    }
    assert!(files.len() >= 5, "pure-layer sources not found: {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        // Unit tests may print; only the code above `mod tests` is checked.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if line.contains(word) {
                    bad.push(format!("{}:{}: {word}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "clock reads or I/O in the pure layers:\n{}",
        bad.join("\n")
    );
}
