//! The shipped default model (daemon/assets/model) on the shipped demo clip, a real recording:
//! rain throughout, a hen clucking at 1 s and a heavy gate grinding open from 5.5 s
//! (daemon/assets/README.md). `hark caption` without `--bundle` uses it; it names what it
//! hears and tags it with scores from both of its tag heads.

use hark_e2e::{Broker, Subscriber, assert_schema, hark, repo_root};
use serde_json::Value;

fn demo() -> String {
    repo_root()
        .join("daemon/assets/demo.wav")
        .display()
        .to_string()
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Writes `config` to DIR/hark.toml and runs `hark run -c` it on the demo clip, which must
/// succeed; returns the config's path.
fn run_demo(dir: &std::path::Path, config: &str) -> std::path::PathBuf {
    let cfg = dir.join("hark.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = hark(&["run", "-c", cfg.to_str().unwrap(), "--file", &demo()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cfg
}

/// Labels of a window's tags from one source.
fn labels<'a>(w: &'a Value, source: &str) -> Vec<&'a str> {
    w["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == source)
        .map(|t| t["label"].as_str().unwrap())
        .collect()
}

#[test]
fn the_default_model_hears_the_rain_of_the_demo_clip_and_tags_it_with_scores() {
    let out = hark(&["caption", "--json", &demo()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let windows = json_lines(&out.stdout);
    assert_eq!(
        windows.len(),
        1,
        "a 10 s clip fits one window: {windows:#?}"
    );
    let w = &windows[0];
    assert_eq!(w["model"], "hark-real-ced-int8");
    assert!((w["end"].as_f64().unwrap() - 10.0).abs() < 0.05);
    let text = w["text"].as_str().unwrap();
    assert!(text.contains("rain"), "caption {text:?} misses the rain");
    let hark_tags = labels(w, "hark");
    assert!(hark_tags.contains(&"rain"), "{hark_tags:?}");
    assert!(
        !labels(w, "audioset").is_empty(),
        "CED-Tiny's own AudioSet head tags it too: {w}"
    );
    for t in w["tags"].as_array().unwrap() {
        let score = t["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{t}");
    }
}

#[test]
fn hark_caption_prints_the_caption_and_its_tags_with_scores() {
    let out = hark(&["caption", &demo()]);
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(line.contains("demo.wav [0.0-10.0s] "), "{line}");
    // "… [rain 0.97, Rain 0.71, …]"
    let tags = line.rsplit_once('[').map(|(_, t)| t).unwrap_or_default();
    assert!(tags.contains("rain 0."), "{line}");
}

#[test]
fn hark_run_publishes_tags_with_scores_and_home_assistant_binary_sensors() {
    let broker = Broker::start("");
    let sub = Subscriber::connect(broker.port, &["hark/#", "homeassistant/#"]);
    let dir = tempfile::tempdir().unwrap();
    run_demo(
        dir.path(),
        &format!(
            "device = \"porch\"\n[tags]\nbinary_sensors = [\"rain\", \"dog\"]\n\
             thresholds = {{ audioset = 0.2 }}\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n",
            broker.port
        ),
    );
    sub.wait_until(10, "the caption", |m| {
        m.iter().any(|m| m.topic == "hark/porch/caption")
    });
    let caption = sub.on("hark/porch/caption")[0].json();
    assert_schema("caption", &caption);
    assert_eq!(caption["v"], 2);
    assert!(labels(&caption, "hark").contains(&"rain"), "{caption}");
    assert!(
        caption["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["source"] == "audioset")
            .all(|t| t["score"].as_f64().unwrap() >= 0.2),
        "{caption}"
    );
    assert_eq!(caption["speech"], false, "nobody speaks in the demo clip");
    for label in ["rain", "dog"] {
        let topic = format!("homeassistant/binary_sensor/hark_porch/tag_{label}/config");
        let config = sub.on(&topic);
        assert_eq!(config.len(), 1, "{topic}: {:#?}", sub.messages());
        let c = config[0].json();
        assert_eq!(c["state_topic"], "hark/porch/caption");
        assert!(c["off_delay"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        sub.on("homeassistant/sensor/hark_porch/tags/config").len(),
        1
    );
}

#[test]
fn a_threshold_for_a_tag_head_the_model_lacks_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hark.toml");
    std::fs::write(&cfg, "[tags]\nthresholds = { birds = 0.5 }\n").unwrap();
    let out = hark(&["check-config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("tags.thresholds.birds") && err.contains("hark, audioset"),
        "{err}"
    );
}

/// Ten seconds of espeak-ng reading household sentences (scripts/test.sh installs espeak-ng).
fn speech_wav(dir: &std::path::Path) -> String {
    hark_e2e::espeak_wav(
        dir,
        "Good morning. The kettle is on and breakfast is almost ready. Could you please \
         bring the newspaper from the front door? We are leaving for the station at eight.",
    )
}

#[test]
fn speech_is_redacted_by_default_dropped_or_captioned_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let speech = speech_wav(dir.path());
    let run = |policy: Option<&str>| {
        let mut cmd = std::process::Command::new(hark_e2e::hark_bin());
        cmd.args(["run", "--file", &speech]);
        if let Some(p) = policy {
            cmd.env("HARK__PRIVACY__SPEECH", p);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            json_lines(&out.stdout),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // Default: the fixed phrase, no alternatives, no tag that names speech.
    let (captions, log) = run(None);
    assert!(!captions.is_empty(), "{log}");
    for c in &captions {
        assert_schema("caption", c);
        assert_eq!(c["speech"], true, "{c}");
        assert_eq!(c["text"], "people are talking", "{c}");
        assert!(c["alternatives"].as_array().unwrap().is_empty(), "{c}");
        for t in c["tags"].as_array().unwrap() {
            let l = t["label"].as_str().unwrap().to_lowercase();
            assert!(!l.contains("speech") && !l.contains("speaking"), "{c}");
        }
    }
    assert!(
        log.contains(&format!("{} speech redacted", captions.len())),
        "{log}"
    );

    // drop: nothing published, every speech window counted.
    let (dropped, log) = run(Some("drop"));
    assert!(dropped.is_empty(), "{dropped:?}");
    assert!(
        log.contains(&format!("{} speech dropped", captions.len())),
        "{log}"
    );

    // caption: the model's own words, as before the gate existed.
    let (plain, _) = run(Some("caption"));
    assert_eq!(plain.len(), captions.len());
    assert!(
        plain
            .iter()
            .all(|c| c["text"] != "people are talking" && c["speech"] == true)
    );
}

#[test]
fn a_run_writes_no_file_audio_stays_in_memory() {
    // Every file-creating or file-writing system call of a whole run, threads included
    // (scripts/test.sh installs strace).
    let dir = tempfile::tempdir().unwrap();
    let speech = speech_wav(dir.path());
    let trace = dir.path().join("trace.txt");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-o", trace.to_str().unwrap()])
        .args([
            "-e",
            "trace=open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,symlink,\
             symlinkat,mknod,mknodat,truncate,ftruncate",
        ])
        .arg(hark_e2e::hark_bin())
        .args(["run", "--file", &speech])
        .env("HARK__PRIVACY__SPEECH", "caption")
        .output()
        .expect("strace is needed for this test (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json_lines(&out.stdout).len(),
        1,
        "the run captioned the clip"
    );
    let calls = std::fs::read_to_string(&trace).unwrap();
    assert!(
        calls.contains("openat("),
        "strace saw the run open its files"
    );
    let writes: Vec<&str> = calls
        .lines()
        .filter(|l| {
            [
                "O_WRONLY",
                "O_RDWR",
                "O_CREAT",
                "creat(",
                "rename",
                "link(",
                "linkat(",
                "symlink",
                "mknod",
                "truncate(",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    assert!(writes.is_empty(), "files written: {writes:#?}");
}

#[test]
fn hark_caption_scores_trigger_phrases_by_meaning_and_names_unknown_words() {
    let out = hark(&[
        "caption",
        "--json",
        "--trigger",
        "rain is falling",
        "--trigger",
        "a dog barks",
        &demo(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = &json_lines(&out.stdout)[0];
    let score = |phrase: &str, key: &str| {
        w["phrases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["phrase"] == phrase)
            .unwrap_or_else(|| panic!("{phrase} missing: {w}"))[key]
            .as_f64()
            .unwrap()
    };
    // The demo is rain (with a hen and a gate): rain scores above a dog that is not there,
    // as a log-probability and as a trigger score (over silence, with the tag head's say).
    assert!(score("rain is falling", "score") <= 0.0 && score("a dog barks", "score") <= 0.0);
    assert!(
        score("rain is falling", "score") > score("a dog barks", "score"),
        "{w}"
    );
    assert!(
        score("rain is falling", "trigger_score") > score("a dog barks", "trigger_score") + 3.0,
        "{w}"
    );
    // The caption tells the hen ("… chickens cluck …"): a phrase it says in a synonym is
    // marked so, and its trigger score holds the bundle's caption weight.
    let out = hark(&["caption", "--json", "--trigger", "a hen clucks", &demo()]);
    let hen = &json_lines(&out.stdout)[0]["phrases"][0];
    assert_eq!(hen["in_caption"], true, "{hen}");
    let dog = w["phrases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phrase"] == "a dog barks");
    assert_eq!(dog.unwrap()["in_caption"], false, "{w}");
    let out = hark(&["caption", "--trigger", "a zorblax howls", &demo()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--trigger") && err.contains("\"zorblax\""),
        "{err}"
    );
}

#[test]
fn a_trigger_fires_on_the_sound_it_names_and_not_on_others_with_its_discovery() {
    let broker = Broker::start("");
    let sub = Subscriber::connect(broker.port, &["hark/#", "homeassistant/#"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = run_demo(
        dir.path(),
        &format!(
            "device = \"shed\"\n\
             [[triggers]]\nname = \"rain\"\nphrases = [\"rain falls\", \"rain is falling\"]\n\
             threshold = 2.0\n\
             [[triggers]]\nname = \"dog\"\nphrases = [\"a dog barks\"]\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {}\n",
            broker.port
        ),
    );
    sub.wait_until(10, "the rain trigger", |m| {
        m.iter().any(|m| m.topic == "hark/shed/trigger/rain")
    });
    let fired = sub.on("hark/shed/trigger/rain")[0].json();
    assert_schema("trigger", &fired);
    assert_eq!(fired["trigger"], "rain");
    assert!(fired["score"].as_f64().unwrap() >= 2.0, "{fired}");
    let caption = sub.on("hark/shed/caption")[0].json();
    assert_eq!(fired["caption"], caption["text"]);
    assert_eq!(fired["end"], caption["end"]);
    // `hark caption --trigger` shows the very score the trigger compared with its threshold.
    let out = hark(&[
        "caption",
        "--json",
        "--trigger",
        fired["phrase"].as_str().unwrap(),
        &demo(),
    ]);
    let w = &json_lines(&out.stdout)[0];
    let offline = w["phrases"][0]["trigger_score"].as_f64().unwrap();
    assert!(
        (offline - fired["score"].as_f64().unwrap()).abs() < 2e-3,
        "{w} vs {fired}"
    );
    // Nothing barks in the demo clip.
    assert!(
        sub.on("hark/shed/trigger/dog").is_empty(),
        "{:#?}",
        sub.messages()
    );
    for name in ["rain", "dog"] {
        let topic = format!("homeassistant/binary_sensor/hark_shed/trigger_{name}/config");
        let config = sub.on(&topic);
        assert_eq!(config.len(), 1, "{topic}: {:#?}", sub.messages());
        let c = config[0].json();
        assert_eq!(c["state_topic"], format!("hark/shed/trigger/{name}"));
        assert!(c["off_delay"].as_u64().unwrap() > 0);
        // And an event entity, which Home Assistant fires on each message.
        let event = sub.on(&format!(
            "homeassistant/event/hark_shed/trigger_{name}/config"
        ));
        assert_eq!(event.len(), 1, "{:#?}", sub.messages());
        let e = event[0].json();
        assert_eq!(e["state_topic"], format!("hark/shed/trigger/{name}"));
        assert_eq!(e["event_types"], serde_json::json!(["fired"]));
    }
    // Every discovery document, diagnostics included, as Home Assistant reads them.
    let docs: Vec<_> = sub
        .messages()
        .into_iter()
        .filter(|m| m.topic.starts_with("homeassistant/") && !m.payload.is_empty())
        .collect();
    assert!(docs.len() >= 12, "{docs:#?}");
    for d in &docs {
        assert_schema("discovery", &d.json());
    }
    let lost = sub.on("homeassistant/binary_sensor/hark_shed/source_lost/config");
    assert_eq!(lost[0].json()["entity_category"], "diagnostic");
    // A word the model never learnt is refused at start, by name.
    std::fs::write(
        &cfg,
        "[[triggers]]\nname = \"cat\"\nphrases = [\"a zorblax\"]\n",
    )
    .unwrap();
    let out = hark(&["check-config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("triggers[0].phrases") && err.contains("\"zorblax\""),
        "{err}"
    );
}

#[test]
fn a_trigger_added_by_a_set_command_fires_while_hark_runs() {
    let broker = Broker::start("");
    let sub = Subscriber::connect(broker.port, &["hark/#", "homeassistant/#"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hark.toml");
    std::fs::write(
        &cfg,
        format!(
            "device = \"barn\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n",
            broker.port
        ),
    )
    .unwrap();
    // The clip in real time: its one window is done 10 s after start, long after the command.
    let mut child = std::process::Command::new(hark_e2e::hark_bin())
        .args([
            "run",
            "-c",
            cfg.to_str().unwrap(),
            "--file",
            &demo(),
            "--realtime",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    sub.wait_until(10, "online", |m| {
        m.iter()
            .any(|m| m.topic == "hark/barn/status" && m.payload == "online")
    });
    sub.publish(
        "hark/barn/set",
        r#"{"cmd":"triggers","add":[{"name":"rain","phrases":["rain falls"],"threshold":2.0}]}"#,
    );
    sub.publish(
        "hark/barn/set",
        r#"{"cmd":"triggers","add":[{"name":"cat","phrases":["a zorblax"]}]}"#,
    );
    sub.publish(
        "hark/barn/set",
        r#"{"cmd":"triggers","add":[{"name":"dog","phrases":["a dog barks"]}]}"#,
    );
    // Home Assistant learns of them at once, and of a removal (an empty retained config
    // deletes the entity).
    let config =
        |name: &str| format!("homeassistant/binary_sensor/hark_barn/trigger_{name}/config");
    sub.wait_until(10, "the added triggers' discovery", |m| {
        ["rain", "dog"].iter().all(|n| {
            m.iter()
                .any(|m| m.topic == config(n) && !m.payload.is_empty())
        })
    });
    sub.publish("hark/barn/set", r#"{"cmd":"triggers","remove":["dog"]}"#);
    sub.wait_until(10, "the removed trigger's discovery deleted", |m| {
        m.iter()
            .any(|m| m.topic == config("dog") && m.payload.is_empty())
    });
    sub.wait_until(30, "the added trigger", |m| {
        m.iter().any(|m| m.topic == "hark/barn/trigger/rain")
    });
    assert!(child.wait().unwrap().success());
    let fired = sub.on("hark/barn/trigger/rain")[0].json();
    assert_schema("trigger", &fired);
    let error = sub.on("hark/barn/error")[0].json();
    assert!(
        error["error"].as_str().unwrap().contains("zorblax"),
        "{error}"
    );
}

/// Every string in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn no_mqtt_path_tells_what_a_redacted_window_hides() {
    // The probe: triggers about who speaks, from the configuration and from `set` (threshold
    // -50: they would fire on any window), and a decoding command asking for alternatives.
    let broker = Broker::start("");
    let sub = Subscriber::connect(broker.port, &["hark/#"]);
    let dir = tempfile::tempdir().unwrap();
    let speech = speech_wav(dir.path());
    let cfg = dir.path().join("hark.toml");
    std::fs::write(
        &cfg,
        format!(
            "device = \"den\"\n\
             [[triggers]]\nname = \"voice\"\nphrases = [\"someone talking\", \"a man speaks\"]\n\
             threshold = -50.0\n\
             [[triggers]]\nname = \"talk\"\nphrases = [\"a person speaking\"]\nthreshold = -50.0\n\
             [[triggers]]\nname = \"dog\"\nphrases = [\"a dog barks\"]\nthreshold = -50.0\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {}\n",
            broker.port
        ),
    )
    .unwrap();
    let child = std::process::Command::new(hark_e2e::hark_bin())
        .args(["run", "-c", cfg.to_str().unwrap(), "--file", &speech])
        .arg("--realtime")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sub.wait_until(10, "online", |m| {
        m.iter()
            .any(|m| m.topic == "hark/den/status" && m.payload == "online")
    });
    for command in [
        r#"{"cmd":"triggers","add":[{"name":"w","phrases":["a woman speaks"],"threshold":-50},{"name":"m","phrases":["a man speaks"],"threshold":-50}]}"#,
        r#"{"cmd":"triggers","add":[{"name":"says","phrases":["a man says something"],"threshold":-50}]}"#,
        r#"{"cmd":"decoding","params":{"alternatives":5}}"#,
        r#"{"cmd":"stats"}"#,
    ] {
        sub.publish("hark/den/set", command);
    }
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");

    let captions = sub.on("hark/den/caption");
    assert!(!captions.is_empty(), "{log}");
    for c in &captions {
        let c = c.json();
        assert_schema("caption", &c);
        assert_eq!(c["speech"], true, "{c}");
        assert_eq!(c["text"], "people are talking", "{c}");
        assert!(c["score"].is_null(), "the hidden caption's score: {c}");
        assert!(c["alternatives"].as_array().unwrap().is_empty(), "{c}");
    }
    assert!(sub.on("hark/den/error").is_empty(), "{:#?}", sub.messages());
    // The trigger that is not about people fires on every window, as before the gate ...
    let dogs = sub.on("hark/den/trigger/dog");
    assert_eq!(dogs.len(), captions.len(), "{:#?}", sub.messages());
    assert!(!sub.on("hark/den/stats").is_empty());
    // ... and no message hark sent carries a word about who speaks or what is said.
    let stems = [
        "speech", "speak", "talk", "say", "said", "voice", "word", "convers", "narrat", "chatter",
    ];
    let persons = [
        "man", "woman", "male", "female", "person", "someone", "people",
    ];
    for m in sub.messages().iter().filter(|m| m.topic != "hark/den/set") {
        assert!(
            !["w", "m", "says", "voice", "talk"]
                .iter()
                .any(|t| m.topic == format!("hark/den/trigger/{t}")),
            "a trigger about people fired on a redacted window: {m:?}"
        );
        let mut values = Vec::new();
        if let Ok(v) = serde_json::from_str::<Value>(&m.payload) {
            strings(&v, &mut values);
        }
        for s in values.iter().filter(|s| s.as_str() != "people are talking") {
            let lower = s.to_lowercase();
            let leak = lower
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| stems.iter().any(|x| w.starts_with(x)) || persons.contains(&w));
            assert!(!leak, "{}: {s:?} in {}", m.topic, m.payload);
        }
    }
}

#[test]
fn hark_caption_reports_non_finite_samples_it_replaced() {
    // A 32-bit float WAV of a 440 Hz tone with NaN and infinite samples in it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.wav");
    let mut samples: Vec<f32> = (0..16_000)
        .map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin())
        .collect();
    for i in [100, 2_000, 9_000] {
        samples[i] = f32::NAN;
    }
    samples[5_000] = f32::INFINITY;
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = Vec::new();
    wav.extend(b"RIFF");
    wav.extend((36 + data.len() as u32).to_le_bytes());
    wav.extend(b"WAVEfmt ");
    wav.extend(16u32.to_le_bytes());
    wav.extend(3u16.to_le_bytes()); // IEEE float
    wav.extend(1u16.to_le_bytes());
    wav.extend(16_000u32.to_le_bytes());
    wav.extend((16_000u32 * 4).to_le_bytes());
    wav.extend(4u16.to_le_bytes());
    wav.extend(32u16.to_le_bytes());
    wav.extend(b"data");
    wav.extend((data.len() as u32).to_le_bytes());
    wav.extend(data);
    std::fs::write(&path, wav).unwrap();
    let out = hark(&["caption", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("4 non-finite sample(s) were replaced by silence"),
        "{err}"
    );
}

#[test]
fn hark_caption_with_the_daemons_config_gives_the_payloads_hark_run_publishes() {
    // Rain and a hen, then speech, then the rain again: captions, tags, a trigger and the
    // speech gate all have something to say.
    let dir = tempfile::tempdir().unwrap();
    let speech = dir.path().join("speech16k.wav");
    let status = std::process::Command::new("sox")
        .args([
            &speech_wav(dir.path()),
            "-r",
            "16000",
            speech.to_str().unwrap(),
        ])
        .status()
        .expect("sox is needed (scripts/test.sh installs it)");
    assert!(status.success());
    let mixed = dir.path().join("mixed.wav");
    let status = std::process::Command::new("sox")
        .args([
            &demo(),
            speech.to_str().unwrap(),
            &demo(),
            mixed.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let broker = Broker::start("");
    let sub = Subscriber::connect(broker.port, &["hark/#"]);
    let cfg = run_demo(dir.path(), "");
    std::fs::write(
        &cfg,
        format!(
            "device = \"replay\"\n[events]\ndedup_hold_seconds = 0\n\
             [[triggers]]\nname = \"rain\"\nphrases = [\"rain falls\", \"rain is falling\"]\n\
             threshold = 2.0\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\n",
            broker.port
        ),
    )
    .unwrap();
    let (c, m) = (cfg.to_str().unwrap(), mixed.to_str().unwrap());
    let offline = hark(&["caption", "--json", "--config", c, m]);
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let windows: Vec<Value> = json_lines(&offline.stdout)
        .into_iter()
        .filter(|w| w["text"].is_string())
        .collect();
    let run = hark(&["run", "-c", c, "--file", m]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    sub.wait_until(10, "every caption", |msgs| {
        msgs.iter()
            .filter(|m| m.topic == "hark/replay/caption")
            .count()
            >= windows.len()
    });
    let published: Vec<Value> = sub
        .on("hark/replay/caption")
        .iter()
        .map(|m| m.json())
        .collect();
    let fired: Vec<Value> = sub
        .on("hark/replay/trigger/rain")
        .iter()
        .map(|m| m.json())
        .collect();
    assert_eq!(
        published.len(),
        windows.len(),
        "{published:#?}\n{windows:#?}"
    );
    assert!(windows.len() >= 4, "{windows:#?}");
    let mut redacted = 0;
    for (w, p) in windows.iter().zip(&published) {
        for key in ["text", "tags", "speech", "score", "alternatives"] {
            assert_eq!(w[key], p[key], "{key}: {w} vs {p}");
        }
        let triggers: Vec<Value> = fired
            .iter()
            .filter(|t| t["start"] == p["start"])
            .map(|t| serde_json::json!({"trigger": t["trigger"], "phrase": t["phrase"], "score": t["score"]}))
            .collect();
        assert_eq!(w["triggers"], Value::Array(triggers), "{w} vs {fired:?}");
        redacted += usize::from(w["text"] == "people are talking");
    }
    assert!(
        redacted >= 1,
        "the speech was redacted in both: {windows:#?}"
    );
    assert!(!fired.is_empty(), "the rain trigger fired");
}
