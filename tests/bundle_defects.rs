//! Every defect of the shared corpus (tests/bundle-defects.toml, which the trainer's tests run
//! too) is refused by `hark check-bundle` and `hark caption` with a message that names the file
//! and the field. Each case corrupts a copy of a real exported bundle.

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

/// `hark caption` of the demo clip with the bundle in `dir`.
fn caption(dir: &Path) -> std::process::Output {
    let demo = synth_demo();
    hark(&[
        "caption",
        "--bundle",
        dir.to_str().unwrap(),
        demo.to_str().unwrap(),
    ])
}

#[test]
fn the_unmodified_fixture_bundle_is_accepted() {
    let (_t, dir) = copy();
    let out = caption(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One edit of the shared corpus (tests/bundle-defects.toml).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    remove: Option<String>,
    rehash: Option<String>,
    file: Option<String>,
    replace: Option<String>,
    after: Option<String>,
    line_starting: Option<String>,
    with: Option<String>,
    append: Option<String>,
    #[serde(default)]
    flip_last_byte: bool,
}

#[derive(serde::Deserialize)]
struct Defect {
    name: String,
    edits: Vec<Edit>,
    daemon: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Corpus {
    defect: Vec<Defect>,
}

fn corpus() -> Vec<Defect> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundle-defects.toml");
    let corpus: Corpus = toml::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    corpus.defect
}

fn apply(dir: &Path, e: &Edit) {
    if let Some(f) = &e.remove {
        fs::remove_file(dir.join(f)).unwrap();
    } else if let Some(f) = &e.rehash {
        rehash(dir, f);
    } else {
        let file = dir.join(e.file.as_ref().expect("an edit names its file"));
        if e.flip_last_byte {
            let mut bytes = fs::read(&file).unwrap();
            *bytes.last_mut().unwrap() ^= 0xff;
            fs::write(&file, bytes).unwrap();
            return;
        }
        let text = fs::read_to_string(&file).unwrap();
        let with = e.with.clone().unwrap_or_default();
        let edited = if let Some(from) = &e.replace {
            text.replacen(from.as_str(), &with, 1)
        } else if let Some(start) = &e.line_starting {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            let from = e
                .after
                .as_ref()
                .map_or(0, |a| lines.iter().position(|l| l == a).unwrap());
            let i = (from..lines.len())
                .find(|&i| lines[i].starts_with(start.as_str()))
                .unwrap();
            lines[i] = with;
            lines.join("\n") + "\n"
        } else {
            text.clone() + e.append.as_deref().unwrap()
        };
        assert_ne!(edited, text, "the edit must change {}", file.display());
        fs::write(file, edited).unwrap();
    }
}

/// `hark check-bundle`'s error for the bundle in `dir` (it must refuse it).
fn check_error(dir: &Path) -> String {
    let out = hark(&["check-bundle", dir.to_str().unwrap()]);
    assert!(!out.status.success(), "a broken bundle was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_defect_of_the_shared_corpus_is_refused_naming_the_file_and_field() {
    let defects = corpus();
    assert!(defects.len() >= 15);
    for d in defects {
        let (_t, dir) = copy();
        for e in &d.edits {
            apply(&dir, e);
        }
        let err = check_error(&dir);
        for part in &d.daemon {
            assert!(
                err.contains(part.as_str()),
                "{}: the error does not mention {part:?}:\n{err}",
                d.name
            );
        }
        // `hark caption` loads bundles the same way and refuses the same.
        assert!(
            !caption(&dir).status.success(),
            "{}: hark caption accepted it",
            d.name
        );
    }
}
