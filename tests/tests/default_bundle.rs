//! `hark caption` without `--bundle` uses the model shipped in daemon/assets/model, and it
//! hears the demo clip's three events (two high beeps, a high tone, white noise).

use hark_e2e::{hark, repo_root};
use serde_json::Value;

#[test]
fn the_default_bundle_hears_the_beeps_the_tone_and_the_noise_of_the_demo_clip() {
    let demo = repo_root().join("daemon/assets/demo.wav");
    let out = hark(&["caption", "--json", demo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "a 4 s clip fits one window");
    let w = &lines[0];
    assert_eq!(w["model"], "synth-attention-int8");
    let text = w["text"].as_str().unwrap();
    for word in ["beep", "tone", "noise"] {
        assert!(text.contains(word), "caption {text:?} misses {word:?}");
    }
    assert!((w["end"].as_f64().unwrap() - 4.0).abs() < 0.05);
}
