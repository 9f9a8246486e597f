//! Replays the checked-in inputs of every fuzz target under `cargo test` (stable): the corpus in
//! `fuzz/corpus/<target>/`, the minimized crashes kept as regression inputs in
//! `fuzz/regressions/<target>/`, and any `fuzz/artifacts/<target>/crash-*` present locally.

use std::path::{Path, PathBuf};

use leasedlock_fuzz::{sim, wire};

/// The input files of `target`, sorted by path.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for (dir, prefix) in [("corpus", ""), ("regressions", ""), ("artifacts", "crash-")] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_file() && name.starts_with(prefix) && !name.starts_with('.') {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs `harness` on every input of `target`; returns how many it ran.
fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let files = inputs(target);
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let result = std::panic::catch_unwind(|| harness(&data));
        assert!(result.is_ok(), "{target}: {} fails", path.display());
    }
    println!("{target}: replayed {} inputs", files.len());
    files.len()
}

#[test]
fn resp_decode() {
    assert!(replay("resp_decode", wire::resp_decode) > 0);
}

#[test]
fn store_decode() {
    assert!(replay("store_decode", wire::store_decode) > 0);
}

#[test]
fn mqtt_session() {
    replay("mqtt_session", leasedlock_fuzz::mqtt::mqtt_session);
}

#[test]
fn simulator() {
    assert!(replay("simulator", sim::run) > 0);
}
