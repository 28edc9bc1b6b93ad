//! Every defect a bundle can have is refused by `hark caption` with a message that names the
//! file and the field. Each test corrupts a copy of a real exported bundle.

use std::fs;
use std::path::{Path, PathBuf};

use hark_e2e::{fixture_bundle, hark, synth_demo};

/// A fresh copy of the baseline fixture bundle.
fn copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    fs::create_dir(&dir).unwrap();
    for entry in fs::read_dir(fixture_bundle("baseline")).unwrap() {
        let p = entry.unwrap().path();
        fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    (tmp, dir)
}

fn edit_manifest(dir: &Path, f: impl FnOnce(String) -> String) {
    let path = dir.join("hark-model.toml");
    let text = fs::read_to_string(&path).unwrap();
    let edited = f(text.clone());
    assert_ne!(edited, text, "the edit must change the manifest");
    fs::write(path, edited).unwrap();
}

/// Sets `[files]` entry of `file` to its current sha256, so a test can change a file on
/// purpose without tripping the hash check.
fn rehash(dir: &Path, file: &str) {
    use sha2::Digest;
    let hash = format!(
        "{:x}",
        sha2::Sha256::digest(fs::read(dir.join(file)).unwrap())
    );
    edit_manifest(dir, |t| {
        t.lines()
            .map(|l| {
                if l.starts_with(&format!("\"{file}\" = ")) {
                    format!("\"{file}\" = \"{hash}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
}

fn caption_error(dir: &Path) -> String {
    let demo = synth_demo();
    let out = hark(&[
        "caption",
        "--bundle",
        dir.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "a broken bundle was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error does not mention {p:?}:\n{err}");
    }
}

#[test]
fn the_unmodified_fixture_bundle_is_accepted() {
    let (_t, dir) = copy();
    let demo = synth_demo();
    let out = hark(&[
        "caption",
        "--bundle",
        dir.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_missing_manifest_is_named() {
    let (_t, dir) = copy();
    fs::remove_file(dir.join("hark-model.toml")).unwrap();
    assert_mentions(&caption_error(&dir), &["hark-model.toml", "cannot read"]);
}

#[test]
fn a_manifest_that_is_not_toml_reports_the_line() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |t| t.replacen("[encoder]", "[encoder", 1));
    assert_mentions(&caption_error(&dir), &["hark-model.toml", "line"]);
}

#[test]
fn another_format_version_is_refused_with_what_to_do() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |t| {
        t.replacen("format_version = 1", "format_version = 2", 1)
    });
    assert_mentions(
        &caption_error(&dir),
        &[
            "format_version = 2",
            "reads version 1",
            "export the model again",
        ],
    );
}

#[test]
fn an_unknown_manifest_key_is_refused() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |t| {
        t.replacen("[encoder]\n", "[encoder]\nmemroy_dim = 3\n", 1)
    });
    assert_mentions(&caption_error(&dir), &["unknown field", "memroy_dim"]);
}

#[test]
fn a_missing_graph_file_names_the_field() {
    let (_t, dir) = copy();
    fs::remove_file(dir.join("decoder.onnx")).unwrap();
    assert_mentions(
        &caption_error(&dir),
        &["decoder.file = \"decoder.onnx\"", "no such file"],
    );
}

#[test]
fn a_manifest_cannot_name_files_outside_the_bundle() {
    for outside in ["../../../../etc/hostname", "/etc/hostname"] {
        let (_t, dir) = copy();
        edit_manifest(&dir, |t| {
            t.replacen(
                "vocab = \"vocab.txt\"",
                &format!("vocab = \"{outside}\""),
                1,
            )
        });
        assert_mentions(
            &caption_error(&dir),
            &["tokens.vocab", outside, "inside the bundle's folder"],
        );
        let (_t, dir) = copy();
        edit_manifest(&dir, |t| {
            t.replacen("[files]", &format!("[files]\n\"{outside}\" = \"00\""), 1)
        });
        assert_mentions(
            &caption_error(&dir),
            &["files.", "inside the bundle's folder"],
        );
    }
}

#[test]
fn a_hash_mismatch_names_the_file() {
    let (_t, dir) = copy();
    let mut bytes = fs::read(dir.join("encoder.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(dir.join("encoder.onnx"), bytes).unwrap();
    assert_mentions(
        &caption_error(&dir),
        &["encoder.onnx: sha256", "corrupted or was edited"],
    );
}

#[test]
fn a_frontend_dsp_cannot_compute_is_refused() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |t| t.replacen("n_fft = 512", "n_fft = 500", 1));
    assert_mentions(
        &caption_error(&dir),
        &["frontend.n_fft = 500", "power of two"],
    );
}

#[test]
fn a_token_id_outside_the_vocabulary_is_refused() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |t| t.replacen("eos = 2", "eos = 999999", 1));
    assert_mentions(
        &caption_error(&dir),
        &["tokens.eos", "outside the vocabulary"],
    );
}

#[test]
fn a_vocabulary_that_disagrees_with_the_logits_width_is_refused() {
    let (_t, dir) = copy();
    let vocab = fs::read_to_string(dir.join("vocab.txt")).unwrap();
    fs::write(dir.join("vocab.txt"), format!("{vocab}extra-token\n")).unwrap();
    rehash(&dir, "vocab.txt");
    assert_mentions(
        &caption_error(&dir),
        &["decoder.onnx", "values per hypothesis", "tokens"],
    );
}

#[test]
fn a_wrong_memory_width_is_refused() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |t| {
        let line = t
            .lines()
            .find(|l| l.starts_with("memory_dim = "))
            .unwrap()
            .to_string();
        t.replacen(&line, "memory_dim = 7", 1)
    });
    assert_mentions(&caption_error(&dir), &["hark-model.toml", "memory_dim = 7"]);
}

#[test]
fn a_state_the_decoder_does_not_have_is_refused() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |t| {
        t.replacen("input = \"h\"", "input = \"hidden\"", 1)
    });
    assert_mentions(
        &caption_error(&dir),
        &["decoder.onnx", "no input \"hidden\""],
    );
}

#[test]
fn a_batch_axis_that_is_not_the_batch_dimension_is_refused() {
    let (_t, dir) = copy();
    edit_manifest(&dir, |t| t.replacen("batch_axis = 1", "batch_axis = 0", 1));
    assert_mentions(
        &caption_error(&dir),
        &["decoder.states[0]", "batch_axis = 0"],
    );
}
