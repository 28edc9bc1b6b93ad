//! Fuzz targets: every parser that reads outside input — `set` commands, the configuration
//! file, a bundle's manifest (with the bundle's files beside it), audio files, trigger
//! phrases — as a
//! function of raw bytes that must never panic: every bad input is an error. Run by the
//! stable mutation fuzzer in the test command (`mutation`) and by cargo-fuzz, coverage-guided,
//! on nightly (daemon/fuzz/; docs/RELIABILITY.md).

#[cfg(test)]
mod mutation;

use std::path::{Path, PathBuf};

/// The target names, each with its seeds in `daemon/fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 5] = ["command", "config", "manifest", "audio", "phrase"];

/// A folder for the files a target writes, removed with it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(target: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("hark-fuzz-{target}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder in the temp dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A target: a function of the input bytes, with its state.
pub type Target = Box<dyn FnMut(&[u8])>;

/// The target `name` (one of TARGETS). Panics on an unknown name.
pub fn target(name: &str) -> Target {
    match name {
        "command" => {
            let control = crate::pipeline::control::Control::new(Default::default(), 30);
            let counters = crate::stats::Counters::default();
            Box::new(move |input: &[u8]| {
                let msg = crate::sink::commands::Received {
                    payload: input.to_vec(),
                    retained: false,
                };
                let _ = control.handle(&msg, &counters);
            })
        }
        "config" => {
            let scratch = Scratch::new(name);
            let path = scratch.0.join("hark.toml");
            Box::new(move |input: &[u8]| {
                let _keep = &scratch;
                std::fs::write(&path, input).expect("writable scratch folder");
                if let Ok(cfg) = crate::config::Config::load(Some(&path), |_| Ok(())) {
                    let _ = (cfg.device_id(), cfg.overflow());
                }
            })
        }
        "manifest" => {
            let scratch = Scratch::new(name);
            let files = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/manifest/bundle");
            for f in std::fs::read_dir(&files).expect("the fuzz bundle's files") {
                let f = f.expect("the fuzz bundle's files").path();
                std::fs::copy(&f, scratch.0.join(f.file_name().unwrap()))
                    .expect("writable scratch folder");
            }
            let manifest = scratch.0.join(crate::model::bundle::MANIFEST);
            Box::new(move |input: &[u8]| {
                std::fs::write(&manifest, input).expect("writable scratch folder");
                if let Ok(b) = crate::model::bundle::Bundle::open(&scratch.0) {
                    let m = &b.manifest;
                    let _ = (b.describe(), m.window_frames(), m.frames(1.0));
                    let _ = b.phrase_tokens("a dog barks");
                    let _ = b.text(&[0, 1, 2, 3, 4, 5, 1000]);
                }
            })
        }
        "audio" => {
            let scratch = Scratch::new(name);
            Box::new(move |input: &[u8]| {
                // The same bytes as both formats: each reader sees the other's headers too.
                for name in ["in.wav", "in.flac"] {
                    let path = scratch.0.join(name);
                    std::fs::write(&path, input).expect("writable scratch folder");
                    if let Ok(stream) = crate::source::audio_file::Stream::open(&path) {
                        let _ = (stream.sample_rate(), stream.seconds());
                        // Non-finite float samples are the windower's to replace, not the reader's.
                        let _ = stream.for_each(|_| true);
                    }
                    let _ = crate::source::audio_file::read(&path);
                }
            })
        }
        "phrase" => phrase(),
        _ => panic!("no fuzz target {name}: one of {TARGETS:?}"),
    }
}

/// The trigger phrase target: a phrase as `--trigger` gives it and lines as a `[[triggers]]`
/// table's, read with the manifest target's bundle and synonym groups.
fn phrase() -> Target {
    let scratch = Scratch::new("phrase");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/manifest");
    for f in std::fs::read_dir(corpus.join("bundle")).expect("the fuzz bundle's files") {
        let f = f.expect("the fuzz bundle's files").path();
        std::fs::copy(&f, scratch.0.join(f.file_name().unwrap())).expect("writable scratch folder");
    }
    std::fs::copy(
        corpus.join("shipped.toml"),
        scratch.0.join(crate::model::bundle::MANIFEST),
    )
    .expect("writable scratch folder");
    let mut bundle = crate::model::bundle::Bundle::open(&scratch.0).expect("the fuzz bundle opens");
    let words = |w: &[&str]| w.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    bundle.manifest.triggers.synonyms = vec![
        words(&["dog", "dogs", "bark", "barks"]),
        words(&["rain", "raining", "water"]),
        words(&["water", "stream"]),
    ];
    Box::new(move |input: &[u8]| {
        // A phrase as `--trigger` gives it, and lines as a `[[triggers]]` table's.
        let text = String::from_utf8_lossy(input);
        if let Ok(p) = crate::pipeline::triggers::Phrase::new(&bundle, &text) {
            let _ = p.said_by(&[&text, "a dog barks then rain"]);
        }
        let config = crate::config::TriggerConfig {
            name: "fuzz".into(),
            phrases: text.lines().map(String::from).collect(),
            threshold: None,
        };
        if let Ok(t) = crate::pipeline::triggers::Triggers::build(&[config], &bundle) {
            let n = t.tokens().len();
            let _ = t.fired(&vec![0.0; n], &vec![-1.0; n], &[0.5], &[&text]);
        }
    })
}
