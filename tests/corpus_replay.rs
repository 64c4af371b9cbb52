//! Replays the fuzz corpus (`tools/fuzz/corpus/<target>/`) through the same invariant checks
//! the fuzz targets run, so every input a fuzzer once found interesting stays covered by
//! `cargo test`. Bounded: at most `MAX_FILES` files of at most `MAX_LEN` bytes per target.

use std::path::Path;

const MAX_FILES: usize = 5000;
const MAX_LEN: usize = 1 << 16;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.truncate(MAX_FILES);
    let mut n = 0;
    for f in files {
        let data = std::fs::read(&f).unwrap();
        if data.len() <= MAX_LEN {
            check(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn packet_corpus_holds_the_invariants() {
    assert!(
        replay("packet", oscgate::wire::invariants::packet) > 0,
        "empty corpus"
    );
}

#[test]
fn framing_corpus_holds_the_invariants() {
    assert!(
        replay("framing", oscgate::wire::framing::fuzz_check) > 0,
        "empty corpus"
    );
}
