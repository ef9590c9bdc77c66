//! Shared by the tests that load the C library from outside Rust (the C harness, the JVM).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// `target/<profile>/<file>` (the static or shared library of this crate), checked to be
/// newer than every source of the engine and this crate. `cargo test` builds the crate only as
/// an rlib, so the README's test command runs `cargo build --release --workspace --all-targets`
/// first; a missing or stale library fails here with that advice.
pub fn built_library(file: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().and_then(Path::parent).unwrap().join(file);
    let advice = "build it first: cargo build --release --workspace --all-targets";
    let built = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing; {advice}", lib.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest = newest_source(&root.join("src")).max(newest_source(&root.join("../src")));
    assert!(built >= newest, "{} is older than the sources; {advice}", lib.display());
    lib
}

fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_source(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(time);
    }
    newest
}
