//! `hark run` sources without a broker (captions as JSON lines on stdout): cpal capturing
//! from the ALSA `file` plugin, bad input, and `hark check-config`.

use std::path::Path;
use std::process::Command;

use hark_e2e::{
    assert_schema, demo_samples, hark, hark_bin, repo_root, s16le, synth, synth_bundle, synth_demo,
};
use serde_json::Value;

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// An ALSA configuration whose default capture device reads `raw` (s16le, 16 kHz, mono).
fn alsa_home(home: &Path, raw: &Path) {
    let conf = format!(
        "</usr/share/alsa/alsa.conf>\n\
         pcm.capfile_raw {{ type file slave.pcm \"null\" file \"/dev/null\" infile \"{}\" format \"raw\" }}\n\
         pcm.capfile {{ type plug slave {{ pcm \"capfile_raw\" format S16_LE rate 16000 channels 1 }}\n\
           hint {{ show on description \"hark test capture\" }} }}\n\
         pcm.!default \"capfile\"\n",
        raw.display()
    );
    std::fs::write(home.join("asound.conf"), conf).unwrap();
}

#[test]
fn cpal_captures_the_demo_clip_through_the_alsa_file_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("in.raw");
    let bytes = s16le(&demo_samples());
    std::fs::write(&raw, &bytes).unwrap();
    alsa_home(dir.path(), &raw);
    // The plugin delivers the file as fast as it is read, not in real time: a ring that holds
    // the whole clip keeps this burst from overrunning.
    let alsa = |args: &[&str]| {
        Command::new(hark_bin())
            .env("HARK__MODEL__BUNDLE", synth_bundle())
            .args(args)
            .env("ALSA_CONFIG_PATH", dir.path().join("asound.conf"))
            .env("HARK__PIPELINE__RING_SECONDS", "8")
            .output()
            .unwrap()
    };

    let devices = alsa(&["devices"]);
    let listing = String::from_utf8_lossy(&devices.stdout);
    assert!(
        devices.status.success(),
        "{}",
        String::from_utf8_lossy(&devices.stderr)
    );
    assert!(listing.contains("capfile"), "{listing}");

    // The README's microphone command, with the plugin as the default capture device and
    // a real broker. The plugin repeats stale data after the end of its file: capture
    // exactly its length.
    let broker = hark_e2e::Broker::start("");
    let sub = hark_e2e::Subscriber::connect(broker.port, &["hark/#"]);
    let seconds = format!("{}", demo_samples().len() as f64 / 16_000.0);
    let port = format!("127.0.0.1:{}", broker.port);
    let out = alsa(&[
        "run",
        "--microphone",
        "default",
        "--broker",
        &port,
        "--seconds",
        &seconds,
        "--device-id",
        "mic",
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("microphone alsa:default"), "{log}");
    assert!(log.contains(" 0 ring overrun"), "{log}");
    sub.wait_until(10, "the caption", |m| {
        m.iter().any(|m| m.topic == "hark/mic/caption")
    });
    let caps: Vec<Value> = sub
        .on("hark/mic/caption")
        .iter()
        .map(|m| m.json())
        .collect();
    assert_eq!(caps.len(), 1, "{caps:#?}\n{log}");
    assert_schema("caption", &caps[0]);
    let text = caps[0]["text"].as_str().unwrap();
    assert!(text.contains("beep"), "the demo scene's beeps: {text:?}");
    // Bit-exact capture: the same caption as the file itself.
    let demo = synth_demo();
    let file = json_lines(&synth(&["run", "--file", demo.to_str().unwrap()]).stdout);
    assert_eq!(file[0]["text"], caps[0]["text"]);

    // A device chosen by name works the same way.
    let out = alsa(&["run", "--microphone", "capfile", "--seconds", &seconds]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("microphone alsa:capfile (hark test capture)"),
        "{log}"
    );
    assert_eq!(json_lines(&out.stdout)[0]["text"], file[0]["text"]);
}

/// Opens the FIFO `path` for writing (non-blocking) once a reader has it open, giving up
/// after `secs`.
fn open_fifo_writer(path: &Path, secs: u64) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < std::time::Duration::from_secs(secs) {
        // Fails at once while no one reads, instead of waiting forever.
        if let Ok(f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            return Some(f);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

/// Writes all of `data` to a non-blocking FIFO within `secs`; an error if the reader went
/// away (EPIPE) or did not read it in time.
fn write_within(f: &mut std::fs::File, mut data: &[u8], secs: u64) -> std::io::Result<()> {
    use std::io::Write;
    let t0 = std::time::Instant::now();
    while !data.is_empty() {
        match f.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if t0.elapsed() > std::time::Duration::from_secs(secs) {
                    return Err(e);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Plugs the FIFO "microphone" in: opens it for writing and writes `audio` twice, each within
/// `secs`, starting over while the reader closes it under a write (opening the device to look
/// at it, at start or after a loss, closes it again), for up to 30 s.
fn plug_in(fifo: &Path, audio: &[u8], secs: u64) -> std::fs::File {
    let t0 = std::time::Instant::now();
    loop {
        assert!(
            t0.elapsed().as_secs() < 30,
            "hark never read the microphone"
        );
        let Some(mut mic) = open_fifo_writer(fifo, 30) else {
            continue;
        };
        if write_within(&mut mic, audio, secs).is_ok()
            && write_within(&mut mic, audio, secs).is_ok()
        {
            return mic;
        }
    }
}

#[test]
fn an_unplugged_microphone_is_reported_and_captured_again_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    // The "microphone" is a FIFO behind the ALSA file plugin: no data for 5 s is a device
    // that went away, a writer again is the device plugged back in.
    let fifo = dir.path().join("mic.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    alsa_home(dir.path(), &fifo);
    let broker = hark_e2e::Broker::start("");
    let sub = hark_e2e::Subscriber::connect(broker.port, &["hark/plug/#"]);
    let audio = s16le(&demo_samples());
    // Killed if the test fails: a capture never ends on its own.
    let mut child = KillOnDrop(
        Command::new(hark_bin())
            .env("HARK__MODEL__BUNDLE", synth_bundle())
            .env("ALSA_CONFIG_PATH", dir.path().join("asound.conf"))
            .env("HARK__PIPELINE__RING_SECONDS", "20")
            .env("HARK__EVENTS__DEDUP_HOLD_SECONDS", "0")
            .args(["run", "--microphone", "default", "--device-id", "plug"])
            .args(["--broker", &format!("127.0.0.1:{}", broker.port)])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut text);
        text
    });

    // Plugged in: the clip twice (a window is a little longer than one), then silence on
    // the wire for 7 s, then unplugged.
    let mic = plug_in(&fifo, &audio, 10);
    sub.wait_until(20, "a caption", |m| {
        m.iter().any(|m| m.topic == "hark/plug/caption")
    });
    std::thread::sleep(std::time::Duration::from_secs(7));
    drop(mic);
    sub.wait_until(10, "stats with source_lost", |m| {
        m.iter()
            .any(|m| m.topic == "hark/plug/stats" && m.json()["source_lost"] == true)
    });
    let before = sub.on("hark/plug/caption").len();

    // Plugged back in: hark finds it, and captions it while it stays plugged in.
    let back = std::time::Instant::now();
    let _mic = plug_in(&fifo, &audio, 3);
    sub.wait_until(20, "a caption after the return", |m| {
        m.iter().filter(|m| m.topic == "hark/plug/caption").count() > before
    });
    let recovery = back.elapsed().as_secs_f64();
    sub.wait_until(10, "stats with the source back", |m| {
        m.iter()
            .rev()
            .find(|m| m.topic == "hark/plug/stats")
            .is_some_and(|m| m.json()["source_lost"] == false && m.json()["source_losses"] == 1)
    });
    hark_e2e::signal(&child.0, "-TERM");
    let status = child.0.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("delivered no audio for 5 s"), "{log}");
    assert!(log.contains("is back"), "{log}");
    for m in sub.on("hark/plug/stats") {
        assert_schema("stats", &m.json());
    }
    let received = sub.seqs("hark/plug/caption");
    hark_e2e::Fault {
        case: "microphone unplugged and back",
        injected: "the capture device (ALSA file plugin on a FIFO) goes silent, then away, then returns",
        produced: *received.iter().max().unwrap(),
        received: &received,
        recovery_s: Some(recovery),
        note: "source_lost true then false in stats, no restart; recovery: from its return to the next caption",
    }
    .report();
}

#[test]
fn a_missing_microphone_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    alsa_home(dir.path(), &dir.path().join("absent.raw"));
    let out = Command::new(hark_bin())
        .env("HARK__MODEL__BUNDLE", synth_bundle())
        .args(["run", "--microphone", "no-such-mic"])
        .env("ALSA_CONFIG_PATH", dir.path().join("asound.conf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no capture device matches source.device = \"no-such-mic\""),
        "{err}"
    );
    assert!(err.contains("hark devices"), "{err}");
}

#[test]
fn bad_audio_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF\x10\0\0\0WAVEjunkjunk").unwrap();
    let out = synth(&["run", "--file", junk.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("junk.wav") && err.contains("WAV"), "{err}");

    // A header declaring 1 Hz: refused at once, not resampled 16,000-fold.
    let one_hz = dir.path().join("one-hz.wav");
    hark_e2e::write_pcm16(&one_hz, 1, 1, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for cmd in ["run", "caption"] {
        let flag = if cmd == "run" { "--file" } else { "--json" };
        let out = synth(&[cmd, flag, one_hz.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("one-hz.wav") && err.contains("at 1 Hz"),
            "{err}"
        );
    }

    let out = synth(&["run", "--file", "/nonexistent.wav"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source.path = /nonexistent.wav: no such file"),
        "{err}"
    );
}

#[test]
fn a_flac_file_is_captioned_like_the_wav_it_was_made_from() {
    let dir = tempfile::tempdir().unwrap();
    let flac = dir.path().join("demo.flac");
    let demo = synth_demo();
    let ok = Command::new("sox")
        .arg(&demo)
        .arg(&flac)
        .status()
        .expect("sox")
        .success();
    assert!(ok, "sox wav -> flac");
    let from_flac = json_lines(&synth(&["run", "--file", flac.to_str().unwrap()]).stdout);
    let from_wav = json_lines(&synth(&["run", "--file", demo.to_str().unwrap()]).stdout);
    assert_eq!(from_flac.len(), 1);
    assert_eq!(from_flac[0]["text"], from_wav[0]["text"]);
    assert_eq!(
        from_flac[0]["score"], from_wav[0]["score"],
        "lossless: the same samples"
    );
}

#[test]
fn a_realtime_file_is_paced_and_stamped_like_a_microphone() {
    let demo = synth_demo();
    let t0 = std::time::Instant::now();
    let out = synth(&["run", "--file", demo.to_str().unwrap(), "--realtime"]);
    let took = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took >= 3.9, "4 s of audio delivered in {took:.2} s");
    let caps = json_lines(&out.stdout);
    assert_eq!(caps.len(), 1);
    let at = |key: &str| {
        humantime::parse_rfc3339(caps[0][key].as_str().unwrap())
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // Live stamping: the window ended when its last sample arrived, moments ago.
    assert!(now - at("end") < 2.0, "end {} vs now {now}", at("end"));
    assert!((at("end") - at("start") - 4.01).abs() < 0.02);
}

#[test]
fn stdin_pcm_in_two_channels_is_downmixed_and_captioned() {
    let stereo: Vec<u8> = demo_samples()
        .iter()
        .flat_map(|s| [s.to_le_bytes(), s.to_le_bytes()])
        .flatten()
        .collect();
    let mut child = Command::new(hark_bin())
        .env("HARK__MODEL__BUNDLE", synth_bundle())
        .args(["run", "--stdin", "16000", "--channels", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&stereo).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let caps = json_lines(&out.stdout);
    let demo = synth_demo();
    let file = json_lines(&synth(&["run", "--file", demo.to_str().unwrap()]).stdout);
    assert_eq!(caps.len(), 1);
    assert_eq!(caps[0]["text"], file[0]["text"]);
}

#[test]
fn check_config_accepts_good_files_and_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "device = \"kitchen\"\n[source]\nkind = \"microphone\"\ndevice = \"USB\"\n\
         [mqtt]\nhost = \"broker.local\"\n[decoding]\nstrategy = \"greedy\"\n",
    )
    .unwrap();
    let out = hark(&["check-config", good.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ok") && text.contains("broker.local:1883 as hark/kitchen"),
        "{text}"
    );

    // Environment values stay the strings they are: a device id 007 is not 7.
    let out = Command::new(hark_bin())
        .args(["check-config", good.to_str().unwrap()])
        .env("HARK__DEVICE", "007")
        .env("HARK__MQTT__PORT", "1884")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("broker.local:1884 as hark/007/"), "{text}");

    let shipped = repo_root().join("daemon/config/hark.toml");
    let out = hark(&["check-config", shipped.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let check = |body: &str, env: &[(&str, &str)]| {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, body).unwrap();
        let out = Command::new(hark_bin())
            .args(["check-config", path.to_str().unwrap()])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{body} must be rejected");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = check("[mqtt]\nhost = \"b\"\nqos = 7\n", &[]);
    assert!(e.contains("mqtt.qos = 7: must be 0, 1 or 2"), "{e}");
    let e = check("[mqtt]\nhost = \"b\"\nport = \"eighty\"\n", &[]);
    assert!(e.contains("port"), "{e}");
    let e = check("[sorce]\nkind = \"file\"\n", &[]);
    assert!(e.contains("sorce"), "{e}");
    let e = check("[decoding]\nbeam_size = 0\n", &[]);
    assert!(e.contains("decoding.beam_size"), "{e}");
    let e = check("[decoding]\nmax_len = 500\n", &[]);
    assert!(e.contains("max_len") && e.contains("tokens.max_len"), "{e}");
    // Environment overrides apply over the file, and are checked the same way.
    let e = check("[mqtt]\nhost = \"b\"\n", &[("HARK__MQTT__QOS", "5")]);
    assert!(e.contains("mqtt.qos = 5"), "{e}");
    // A QoS is a whole number, not rounded.
    let e = check("[mqtt]\nhost = \"b\"\nqos = 1.5\n", &[]);
    assert!(e.contains("mqtt.qos") && e.contains("1.5"), "{e}");
    let e = check("[mqtt]\nhost = \"b\"\n", &[("HARK__MQTT__QOS", "1.5")]);
    assert!(e.contains("mqtt.qos") && e.contains("1.5"), "{e}");
    let e = check("[model]\nbundle = \"/nowhere\"\n", &[]);
    assert!(e.contains("/nowhere"), "{e}");

    // What `hark run` would only find at start: a file source that is not audio, a backend
    // this build lacks, a damaged graph whose hash was updated to match.
    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "not audio").unwrap();
    let e = check(
        &format!("[source]\nkind = \"file\"\npath = {text:?}\n"),
        &[],
    );
    assert!(
        e.contains("source.path") && e.contains("notes.wav") && e.contains("WAV"),
        "{e}"
    );
    // The test build of hark has no torch backend (tch_parity.rs tests the one that has).
    let e = check("[model]\nbackend = \"torch\"\n", &[]);
    assert!(e.contains("--features tch"), "{e}");
    let e = check("[model]\nbackend = \"ort\"\n", &[]);
    assert!(e.contains("--features ort"), "{e}");
    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for f in std::fs::read_dir(synth_bundle()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, damaged.join(f.file_name().unwrap())).unwrap();
    }
    let graph = damaged.join("decoder.onnx");
    let mut bytes = std::fs::read(&graph).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&graph, &bytes).unwrap();
    let manifest = damaged.join("hark-model.toml");
    let old = sha256_hex(&std::fs::read(synth_bundle().join("decoder.onnx")).unwrap());
    let toml = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace(&old, &sha256_hex(&bytes));
    std::fs::write(&manifest, toml).unwrap();
    let e = check(&format!("[model]\nbundle = {damaged:?}\n"), &[]);
    assert!(e.contains("decoder.onnx"), "{e}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn hark_caption_gives_no_caption_for_digital_silence_like_hark_run() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("silence.wav");
    hark_e2e::write_wav(&quiet, &[0; 48_000]);
    let out = synth(&["caption", "--json", quiet.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = &json_lines(&out.stdout)[0];
    assert_eq!(w["silent"], true, "{w}");
    assert!(
        w["text"].is_null() && w["tags"].as_array().unwrap().is_empty(),
        "{w}"
    );
    assert_eq!(w["level_dbfs"], -120.0);
    let text = synth(&["caption", quiet.to_str().unwrap()]);
    let line = String::from_utf8_lossy(&text.stdout);
    assert!(line.contains("(silence, -120.0 dBFS)"), "{line}");
    // hark run publishes nothing for it, and counts the window as silent.
    let run = synth(&["run", "--file", quiet.to_str().unwrap()]);
    assert!(json_lines(&run.stdout).is_empty());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("1 silent"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // A quieter threshold captions it anyway (a caller's choice).
    let forced = synth(&[
        "caption",
        "--json",
        "--silence-dbfs",
        "-130",
        quiet.to_str().unwrap(),
    ]);
    assert_eq!(json_lines(&forced.stdout)[0]["silent"], false);
}

#[test]
fn hark_caption_prints_each_window_as_it_is_read_and_then_names_a_damaged_file() {
    // A file read as a stream: the windows before the damage are captioned and printed, then
    // the error names the file; reading it whole first would have printed nothing.
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.wav");
    let demo = demo_samples();
    let samples: Vec<i16> = demo.iter().cycle().take(demo.len() * 6).copied().collect();
    hark_e2e::write_wav(&long, &samples);
    let mut bytes = std::fs::read(&long).unwrap();
    bytes.truncate(bytes.len() / 2 + 1);
    std::fs::write(&long, &bytes).unwrap();
    let out = synth(&["caption", "--json", long.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("long.wav") && err.contains("truncated or corrupt"),
        "{err}"
    );
    let windows = json_lines(&out.stdout);
    let seconds = samples.len() as f64 / 16_000.0;
    assert!(windows.len() >= 2, "{windows:?}");
    for w in &windows {
        assert!(w["text"].is_string(), "{w}");
        assert!(w["end"].as_f64().unwrap() <= seconds / 2.0 + 0.01, "{w}");
    }
}

#[test]
fn a_closed_stdout_ends_the_run_with_a_clear_error_not_a_signal() {
    use std::io::Read;
    let mut child = Command::new(hark_bin())
        .env("HARK__MODEL__BUNDLE", synth_bundle())
        .env("HARK__WINDOW__SECONDS", "0.5")
        .env("HARK__WINDOW__HOP_SECONDS", "0.25")
        // Real time: captions keep coming for 4 s, long after the reader has gone.
        .args([
            "run",
            "--file",
            synth_demo().to_str().unwrap(),
            "--realtime",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader takes one byte and goes away (as `hark run | head -c 1` would).
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    stdout.read_exact(&mut byte).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an exit status, not SIGPIPE: {log}"
    );
    assert!(log.contains("cannot write captions to stdout"), "{log}");
}

/// A child process killed and reaped when dropped, unless it has already exited.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
