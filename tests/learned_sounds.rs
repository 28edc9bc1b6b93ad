//! Learned sounds end to end with the shipped default model: `hark learn` from a recording,
//! `hark sounds`, the daemon publishing `sound/<name>` with its Home Assistant entities to a
//! real mosquitto, the same score in `hark caption --sound`, and every kind of bad input
//! refused with a message that names it while the other sounds still load.

use hark_e2e::{Broker, Subscriber, assert_schema, hark, repo_root, write_wav};
use serde_json::Value;

/// The shipped demo recording: rain throughout, a hen at 1 s, a gate grinding open from 5.5 s.
fn demo_samples() -> Vec<i16> {
    let mut r = hound::WavReader::open(repo_root().join("daemon/assets/demo.wav")).unwrap();
    r.samples::<i16>().map(Result::unwrap).collect()
}

/// A config in `dir` keeping learned sounds in DIR/sounds, with `extra` lines after it.
fn config(dir: &std::path::Path, extra: &str) -> String {
    let path = dir.join("hark.toml");
    let body = format!(
        "device = \"porch\"\n[sounds]\ndir = \"{}\"\n{extra}",
        dir.join("sounds").display()
    );
    std::fs::write(&path, body).unwrap();
    path.display().to_string()
}

fn ok(out: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

fn failed(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A short espeak-ng sentence in DIR/speech.wav; its path.
fn speech(dir: &std::path::Path) -> String {
    hark_e2e::espeak_wav(
        dir,
        "Good morning. The kettle is on and breakfast is almost ready.",
    )
}

#[test]
fn a_sound_learned_from_a_file_is_published_with_its_entities_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo_samples();
    // The example: the demo at half its level (a window-long example: a shorter one is padded
    // with silence, which live windows never are; docs/SOUNDS.md).
    let example = dir.path().join("hen.wav");
    let quieter: Vec<i16> = demo.iter().map(|s| s / 2).collect();
    write_wav(&example, &quieter);
    let broker = Broker::start("");
    let cfg = config(
        dir.path(),
        &format!(
            "[events]\ndedup_hold_seconds = 0\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n",
            broker.port
        ),
    );
    let said = ok(&hark(&[
        "learn",
        "-c",
        &cfg,
        "hen",
        example.to_str().unwrap(),
    ]));
    assert!(said.contains("learned hen: 1 example(s)"), "{said}");
    let listed = ok(&hark(&["sounds", "-c", &cfg, "list"]));
    assert!(listed.contains("hen: 1 example(s)"), "{listed}");
    let shown = ok(&hark(&["sounds", "-c", &cfg, "show", "hen"]));
    assert!(shown.contains("hen.wav 0.0-10.0 s"), "{shown}");
    // No audio is kept: the profile holds numbers.
    let profile = std::fs::read_to_string(dir.path().join("sounds/hen.json")).unwrap();
    let p: Value = serde_json::from_str(&profile).unwrap();
    // CED-Tiny blocks 8 and 11, side by side (export/hark_export/ced.py).
    assert_eq!(p["examples"][0].as_array().unwrap().len(), 384);

    // A scene: 10 s of speech-free tone, then the whole demo recording.
    let tone: Vec<i16> = (0..10 * 16_000)
        .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 16_000.0).sin() * 3000.0) as i16)
        .collect();
    let mut scene = tone.clone();
    scene.extend(&demo);
    let wav = dir.path().join("scene.wav");
    write_wav(&wav, &scene);
    for run in 0..2 {
        // Twice: a restarted daemon still knows the sound.
        let sub = Subscriber::connect(broker.port, &["hark/porch/#", "homeassistant/#"]);
        let log = ok(&hark(&["run", "-c", &cfg, "--file", wav.to_str().unwrap()]));
        assert!(log.contains("learned sounds: hen"), "{log}");
        sub.wait_until(10, "the hen", |m| {
            m.iter().any(|m| m.topic == "hark/porch/sound/hen")
        });
        let heard = sub.json_on("hark/porch/sound/hen");
        for h in &heard {
            assert_schema("sound", h);
            assert!(h["score"].as_f64() >= h["threshold"].as_f64(), "{h}");
        }
        // Only windows holding the demo, not the tone alone (the first window, 0-10 s).
        let captions = sub.json_on("hark/porch/caption");
        assert!(
            heard.iter().all(|h| h["start"] != captions[0]["start"]),
            "run {run}: {heard:?}"
        );
        for kind in ["event", "binary_sensor"] {
            let topic = format!("homeassistant/{kind}/hark_porch/sound_hen/config");
            // Retained: the second run's subscriber also gets the first run's.
            let docs = sub.on(&topic);
            assert!(!docs.is_empty(), "{topic}");
            let d = docs[docs.len() - 1].json();
            assert_schema("discovery", &d);
            assert_eq!(d["state_topic"], "hark/porch/sound/hen");
        }
        // `hark caption --sound` gives each window the score the daemon compared.
        let out = ok(&hark(&[
            "caption",
            "-c",
            &cfg,
            "--json",
            "--sound",
            "hen",
            wav.to_str().unwrap(),
        ]));
        let windows: Vec<Value> = out
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for h in &heard {
            let w = captions
                .iter()
                .position(|c| c["start"] == h["start"])
                .map(|i| &windows[i])
                .expect("the window of the message");
            let offline = w["sounds"][0]["score"].as_f64().unwrap();
            assert!(
                (offline - h["score"].as_f64().unwrap()).abs() < 1e-3,
                "{w} vs {h}"
            );
        }
    }
}

#[test]
fn bad_examples_and_damaged_profiles_are_named_and_the_other_sounds_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let demo = demo_samples();
    let example = dir.path().join("hen.wav");
    write_wav(&example, &demo[..5 * 16_000]);
    let learn = |name: &str, file: &std::path::Path| {
        hark(&["learn", "-c", &cfg, name, file.to_str().unwrap()])
    };
    ok(&learn("hen", &example));

    let err = failed(&learn("Door Bell", &example));
    assert!(err.contains("sound name \"Door Bell\""), "{err}");
    let err = failed(&hark(&["sounds", "-c", &cfg, "show", "nope"]));
    assert!(err.contains("no learned sound \"nope\""), "{err}");
    let silent = dir.path().join("silent.wav");
    write_wav(&silent, &vec![0i16; 3 * 16_000]);
    let err = failed(&learn("quiet", &silent));
    assert!(err.contains("quieter than the silence threshold"), "{err}");
    let empty = dir.path().join("empty.wav");
    write_wav(&empty, &[]);
    let err = failed(&learn("quiet", &empty));
    assert!(err.contains("empty.wav"), "{err}");
    // Ten hours (a sparse file: the header says so, the disk holds nothing).
    let long = dir.path().join("long.wav");
    write_wav(&long, &[0i16; 16]);
    let ten_hours = 10 * 3600 * 16_000 * 2u64;
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&long).unwrap();
        f.seek(SeekFrom::Start(4)).unwrap();
        f.write_all(&((36 + ten_hours) as u32).to_le_bytes())
            .unwrap();
        f.seek(SeekFrom::Start(40)).unwrap();
        f.write_all(&(ten_hours as u32).to_le_bytes()).unwrap();
        f.set_len(44 + ten_hours).unwrap();
    }
    let err = failed(&learn("long", &long));
    assert!(
        err.contains("36000 s long") && err.contains("at most 60 s"),
        "{err}"
    );
    // Speech is refused under the default privacy.speech = "redact".
    let err = failed(&learn("talk", std::path::Path::new(&speech(dir.path()))));
    assert!(err.contains("people speaking"), "{err}");

    // Damaged by hand: cut short, another model's, a number that is not finite.
    let sounds = dir.path().join("sounds");
    let good = std::fs::read_to_string(sounds.join("hen.json")).unwrap();
    std::fs::write(sounds.join("cut.json"), &good[..good.len() / 2]).unwrap();
    let other = good.replace("\"name\": \"hen\"", "\"name\": \"other\"");
    let mut v: Value = serde_json::from_str(&other).unwrap();
    v["encoder_sha256"] = "0".repeat(64).into();
    std::fs::write(sounds.join("other.json"), v.to_string()).unwrap();
    let big = good.replace("\"name\": \"hen\"", "\"name\": \"big\"");
    let mut v: Value = serde_json::from_str(&big).unwrap();
    v["examples"][0][0] = serde_json::json!(1e39);
    std::fs::write(sounds.join("big.json"), v.to_string()).unwrap();

    let listed = ok(&hark(&["sounds", "-c", &cfg, "list"]));
    assert!(
        listed.contains("cut: cannot be used") && listed.contains("learn it again"),
        "{listed}"
    );
    let wav = dir.path().join("demo.wav");
    write_wav(&wav, &demo);
    let log = ok(&hark(&["run", "-c", &cfg, "--file", wav.to_str().unwrap()]));
    assert!(log.contains("learned sounds: hen"), "{log}");
    for name in ["cut", "other", "big"] {
        assert!(
            log.contains(&format!("learned sound \"{name}\" not loaded")),
            "{name}: {log}"
        );
    }
    assert!(log.contains("learned with the model"), "{log}");
    ok(&hark(&["sounds", "-c", &cfg, "forget", "cut"]));
    let listed = ok(&hark(&["sounds", "-c", &cfg, "list"]));
    assert!(!listed.contains("cut"), "{listed}");
}

/// espeak-ng's sentence (22,050 Hz) at 16 kHz, repeated to `seconds`.
fn speech_samples(dir: &std::path::Path, seconds: usize) -> Vec<i16> {
    let mut r = hound::WavReader::open(speech(dir)).unwrap();
    let rate = r.spec().sample_rate as f64;
    let src: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    let once: Vec<i16> = (0..(src.len() as f64 * 16_000.0 / rate) as usize)
        .map(|i| src[((i as f64 * rate / 16_000.0) as usize).min(src.len() - 1)])
        .collect();
    once.iter()
        .cycle()
        .take(seconds * 16_000)
        .copied()
        .collect()
}

#[test]
fn a_sound_learned_over_mqtt_from_the_last_window_fires_and_speech_is_refused() {
    use std::io::Write;
    let broker = Broker::start("");
    let sub = Subscriber::connect(broker.port, &["hark/porch/#", "homeassistant/#"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[window]\nseconds = 10\nhop_seconds = 10\n[events]\ndedup_hold_seconds = 0\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {}\n",
            broker.port
        ),
    );
    let mut child = std::process::Command::new(hark_e2e::hark_bin())
        .args(["run", "-c", &cfg, "--stdin", "16000"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let tone: Vec<i16> = (0..10 * 16_000)
        .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 16_000.0).sin() * 3000.0) as i16)
        .collect();
    let demo = demo_samples();
    let talk = speech_samples(dir.path(), 10);
    let captions = |n: usize| {
        sub.wait_until(30, &format!("{n} captions"), |m| {
            m.iter().filter(|m| m.topic == "hark/porch/caption").count() >= n
        });
        sub.json_on("hark/porch/caption")
    };
    // Each chunk written completes the window before it (its last frames reach into it).
    let mut write = |samples: &[i16]| stdin.write_all(&hark_e2e::s16le(samples)).unwrap();
    write(&tone);
    write(&demo);
    let first = captions(1);
    // Home Assistant can learn from the start: a text entity sends the command.
    sub.wait_until(10, "the learn entity", |m| {
        m.iter()
            .any(|m| m.topic == "homeassistant/text/hark_porch/learn/config")
    });
    let text = sub.on("homeassistant/text/hark_porch/learn/config")[0].json();
    assert_schema("discovery", &text);
    assert_eq!(text["command_topic"], "hark/porch/set");

    sub.publish("hark/porch/set", r#"{"cmd":"learn","name":"beep"}"#);
    sub.wait_until(10, "the answer", |m| {
        m.iter().any(|m| m.topic == "hark/porch/learned")
    });
    let learned = sub.on("hark/porch/learned")[0].json();
    assert_schema("learned", &learned);
    assert_eq!(learned["sound"], "beep");
    assert_eq!(learned["examples"], 1);
    assert_eq!(
        learned["start"], first[0]["start"],
        "the last window heard: the tone"
    );
    sub.wait_until(10, "the sound's entities", |m| {
        m.iter()
            .any(|m| m.topic == "homeassistant/event/hark_porch/sound_beep/config")
    });

    write(&tone); // completes the demo's window
    write(&talk); // completes the tone's: the sound
    let caps = captions(3);
    sub.wait_until(10, "the beep", |m| {
        m.iter().any(|m| m.topic == "hark/porch/sound/beep")
    });
    write(&tone); // completes the speech window
    let caps4 = captions(4);
    assert_eq!(caps4[3]["text"], "people are talking");
    sub.publish("hark/porch/set", r#"{"cmd":"learn","name":"talk"}"#);
    sub.wait_until(10, "the refusal", |m| {
        m.iter().any(|m| m.topic == "hark/porch/error")
    });
    let error = sub.on("hark/porch/error")[0].json();
    assert_schema("error", &error);
    assert!(
        error["error"].as_str().unwrap().contains("people speaking"),
        "{error}"
    );
    assert!(!dir.path().join("sounds/talk.json").exists());
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let heard = sub.json_on("hark/porch/sound/beep");
    assert!(
        heard.iter().any(|h| h["start"] == caps[2]["start"]),
        "{heard:?} {caps:?}"
    );
    assert!(
        heard.iter().all(|h| h["start"] != caps[1]["start"]),
        "not on the demo: {heard:?}"
    );
    // A restart loads what was learned over MQTT.
    let wav = dir.path().join("tone.wav");
    write_wav(&wav, &tone);
    let log = ok(&hark(&["run", "-c", &cfg, "--file", wav.to_str().unwrap()]));
    assert!(log.contains("learned sounds: beep"), "{log}");
}
