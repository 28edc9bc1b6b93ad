//! Helpers for hark's end-to-end tests: where the built `hark` binary and the repository's
//! assets are.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `hark` binary of the same build profile as this test (`target/<profile>/hark`), or
/// `$HARK_BIN`. Built by `cargo build --workspace --bins` before the tests (scripts/test.sh).
pub fn hark_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HARK_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/hark
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("hark");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

/// Runs `hark` with `args` and returns its output.
pub fn hark(args: &[&str]) -> Output {
    Command::new(hark_bin())
        .args(args)
        .output()
        .expect("hark runs")
}

/// Reads a float32 .npy file: shape and values.
pub fn read_npy(path: &std::path::Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("npy file");
    let npy = npyz::NpyFile::new(&bytes[..]).expect("npy header");
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().expect("f32 data"))
}

/// The test fixtures made by `python -m hark_export.fixtures` (scripts/test.sh builds them
/// into `$HARK_FIXTURES`, default `~/.cache/hark/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("HARK_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/hark/fixtures")
        });
    assert!(
        dir.is_dir(),
        "{} not found: run scripts/test.sh (it builds the fixtures)",
        dir.display()
    );
    dir
}

/// A fixture bundle by name (`baseline`, `attention-int8`, …).
pub fn fixture_bundle(name: &str) -> PathBuf {
    fixtures_dir().join("bundles").join(name)
}
