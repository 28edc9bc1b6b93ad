//! The torch backend (`--features tch`: the bundle's TorchScript twin through libtorch) gives
//! the same captions as tract, token for token, greedy and beam-3, for every fp32 fixture
//! bundle on the fixture clips. It needs a tch build: scripts/test.sh builds one and runs
//! this with `--ignored`.

use hark_e2e::{fixture_bundle, fixtures_dir, hark};
use serde_json::Value;

fn tokens(args: &[&str]) -> Vec<(Value, Value)> {
    let out = hark(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["tokens"].clone(), v["text"].clone())
        })
        .collect()
}

#[test]
#[ignore = "needs hark built with --features tch (scripts/test.sh runs it)"]
fn the_torch_backend_captions_like_tract() {
    let mut clips: Vec<String> = std::fs::read_dir(fixtures_dir().join("clips"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    clips.sort();
    for arch in ["baseline", "improved", "attention", "transformer"] {
        let bundle = fixture_bundle(arch);
        for decoding in [
            ["--strategy", "greedy", "--beam-size", "1"],
            ["--strategy", "beam", "--beam-size", "3"],
        ] {
            let run = |backend: &str| {
                let mut args = vec![
                    "caption",
                    "--json",
                    "--backend",
                    backend,
                    "--bundle",
                    bundle.to_str().unwrap(),
                ];
                args.extend(decoding);
                args.extend(clips.iter().map(String::as_str));
                tokens(&args)
            };
            let (tract, torch) = (run("tract"), run("torch"));
            assert_eq!(tract.len(), clips.len());
            assert_eq!(
                torch, tract,
                "{arch} {decoding:?}: torch and tract disagree"
            );
        }
    }
}

#[test]
fn without_the_feature_the_torch_backend_is_a_clear_error() {
    let bundle = fixture_bundle("attention");
    let demo = hark_e2e::synth_demo();
    let out = hark(&[
        "caption",
        "--backend",
        "torch",
        "--bundle",
        bundle.to_str().unwrap(),
        demo.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("needs hark built with `--features tch`") {
        assert!(!out.status.success());
    } else {
        // A tch build: it must caption.
        assert!(out.status.success(), "{err}");
    }
}
