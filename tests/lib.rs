//! Helpers for hark's end-to-end tests: where the built `hark` binary and the repository's
//! assets are.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root. Read from the environment cargo sets when it runs a test (not the
/// compile-time value): a build cache shared by two checkouts may hold the other's library.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
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

/// Runs `hark` with `args` on the synthetic fixture model: `hark run` through the
/// `HARK__MODEL__BUNDLE` variable, `hark caption` with `--bundle`.
pub fn synth(args: &[&str]) -> Output {
    let bundle = synth_bundle_arg();
    let mut all: Vec<&str> = args.to_vec();
    if args.first() == Some(&"caption") {
        all.splice(1..1, ["--bundle", bundle.as_str()]);
    }
    Command::new(hark_bin())
        .args(&all)
        .env("HARK__MODEL__BUNDLE", &bundle)
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

/// The synthetic test scene (tests/assets/synth-demo.wav, 16 kHz mono 16-bit, 4 s: two high
/// beeps, a high tone, white noise), made by hark's synthetic generator for the fixture
/// models, which know such sounds.
pub fn synth_demo() -> PathBuf {
    repo_root().join("tests/assets/synth-demo.wav")
}

/// The synthetic fixture model the daemon-mechanics tests run (a briefly trained attention
/// model, int8): fast, and its captions of `synth_demo` are known ("beep", "tone", "noise").
pub fn synth_bundle() -> PathBuf {
    fixture_bundle("attention-int8")
}

/// `synth_bundle()` as a string, for argument lists.
pub fn synth_bundle_arg() -> String {
    synth_bundle().display().to_string()
}

/// The synthetic test scene as samples.
pub fn demo_samples() -> Vec<i16> {
    let path = synth_demo();
    let mut r = hound::WavReader::open(&path).expect("demo.wav");
    assert_eq!(r.spec().sample_rate, 16_000);
    r.samples::<i16>().map(|s| s.expect("sample")).collect()
}

/// `samples` as raw s16le bytes, what `hark run --stdin 16000` and the ALSA file plugin read.
pub fn s16le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Writes 16 kHz mono 16-bit `samples` to `path`.
pub fn write_wav(path: &std::path::Path, samples: &[i16]) {
    write_pcm16(path, 16_000, 1, samples);
}

/// Writes 16-bit PCM `interleaved` samples of `channels` channels at `sample_rate` to `path`.
pub fn write_pcm16(path: &std::path::Path, sample_rate: u32, channels: u16, interleaved: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in interleaved {
        w.write_sample(s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// Writes `text` spoken by espeak-ng (22,050 Hz mono WAV) to DIR/speech.wav; returns its path.
pub fn espeak_wav(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-w", path.to_str().unwrap()])
        .arg(text)
        .status()
        .expect("espeak-ng is needed for this test (scripts/test.sh installs it)");
    assert!(status.success());
    path.display().to_string()
}

/// Checks `value` against docs/schema/`name`.schema.json (formats such as date-time
/// asserted); panics with every violation.
pub fn assert_schema(name: &str, value: &serde_json::Value) {
    let path = repo_root().join(format!("docs/schema/{name}.schema.json"));
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("schema file")).expect("schema JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{name} payload {value} violates its schema: {errors:?}"
    );
}

/// A mosquitto broker, a child process on a free loopback port; killed on drop.
pub struct Broker {
    child: std::process::Child,
    /// Its plain-TCP port.
    pub port: u16,
    /// Its temporary directory (config, and whatever the test puts there).
    pub dir: tempfile::TempDir,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl Broker {
    /// Starts mosquitto with an anonymous listener plus `extra` configuration lines
    /// (`{dir}` in them is replaced by the broker's directory).
    pub fn start(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra)
    }

    /// As [`Broker::start`], in a directory the test prepared (certificates, passwords).
    pub fn start_in(dir: tempfile::TempDir, extra: &str) -> Self {
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        // `user root`: a broker started as root keeps the rights to read the test's files
        // (it is ignored otherwise). Persistence: a restarted broker keeps sessions.
        let path = dir.path().display().to_string();
        let text = format!(
            "user root\npersistence true\npersistence_location {path}/\n\
             per_listener_settings true\nlistener {port} 127.0.0.1\nallow_anonymous true\n{}\n",
            extra.replace("{dir}", &path)
        );
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let mut broker = Self {
            child: spawn_mosquitto(dir.path()),
            port,
            dir,
        };
        broker.wait_listening();
        broker
    }

    fn wait_listening(&mut self) {
        let t0 = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(10),
                "mosquitto did not listen on {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops the broker as an administrator would (SIGTERM: it saves its sessions).
    pub fn stop(&mut self) {
        signal(&self.child, "-TERM");
        let _ = self.child.wait();
    }

    /// Kills the broker as a crash or a power cut would (SIGKILL: it saves nothing more).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The mosquitto process (to signal it: `-STOP` makes a broker that hangs).
    pub fn child(&self) -> &std::process::Child {
        &self.child
    }

    /// Starts it again on the same port with the same configuration.
    pub fn restart(&mut self) {
        self.child = spawn_mosquitto(self.dir.path());
        self.wait_listening();
    }
}

fn spawn_mosquitto(dir: &std::path::Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("mosquitto.log"))
        .expect("log");
    Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mosquitto is installed (apt-get install mosquitto)")
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One received MQTT message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload as text.
    pub payload: String,
    /// Delivered as a retained message.
    pub retain: bool,
}

impl Message {
    /// The payload parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or_else(|e| {
            panic!("{} payload is not JSON ({e}): {}", self.topic, self.payload)
        })
    }
}

/// A test client subscribed to `filters`, recording every message.
pub struct Subscriber {
    client: rumqttc::Client,
    messages: std::sync::Arc<std::sync::Mutex<Vec<Message>>>,
}

impl Subscriber {
    /// Connects to the broker's plain port and subscribes; returns once subscribed. The
    /// session is persistent and resubscribed on every connection, so a restarted broker
    /// delivers what was published while this client was reconnecting.
    pub fn connect(port: u16, filters: &[&str]) -> Self {
        use rumqttc::{Event, MqttOptions, Packet, QoS};
        let mut opts = MqttOptions::new(format!("test-{}", free_port()), "127.0.0.1", port);
        opts.set_keep_alive(std::time::Duration::from_secs(30));
        opts.set_clean_session(false);
        // Room for the oversized `set` command a test sends (hark's own limit is 256 KB).
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        let messages: std::sync::Arc<std::sync::Mutex<Vec<Message>>> = Default::default();
        let (subscribed_tx, subscribed_rx) = std::sync::mpsc::channel();
        let sink = messages.clone();
        let resubscribe = client.clone();
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let wanted = filters.len();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for f in &filters {
                            let _ = resubscribe.try_subscribe(f.as_str(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push(Message {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    }),
                    Ok(_) => {}
                    // The broker is restarting: keep polling, the client reconnects.
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                }
            }
        });
        for _ in 0..wanted {
            subscribed_rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("SUBACK from the broker");
        }
        Self { client, messages }
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// The `seq` of every caption received on `topic` so far, in arrival order (a resent
    /// duplicate appears twice).
    pub fn seqs(&self, topic: &str) -> Vec<u64> {
        self.on(topic)
            .iter()
            .map(|m| m.json()["seq"].as_u64().expect("a caption with a seq"))
            .collect()
    }

    /// Messages on `topic` so far.
    pub fn on(&self, topic: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// The JSON payloads received on `topic`, in order.
    pub fn json_on(&self, topic: &str) -> Vec<serde_json::Value> {
        self.on(topic).iter().map(Message::json).collect()
    }

    /// Waits until `done(messages)` holds; panics after `secs` with what arrived.
    pub fn wait_until(&self, secs: u64, what: &str, done: impl Fn(&[Message]) -> bool) {
        let t0 = std::time::Instant::now();
        loop {
            if done(&self.messages()) {
                return;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(secs),
                "timed out waiting for {what}; received: {:#?}",
                self.messages()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Publishes `payload` to `topic` (QoS 1).
    pub fn publish(&self, topic: &str, payload: &str) {
        self.publish_with(topic, payload, false);
    }

    /// Publishes `payload` to `topic` (QoS 1), retained or not.
    pub fn publish_with(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(
                topic,
                rumqttc::QoS::AtLeastOnce,
                retain,
                payload.as_bytes().to_vec(),
            )
            .expect("publish");
    }
}

/// Sends `sig` (e.g. `-TERM`) to `child` with kill(1); panics if it cannot be delivered.
pub fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {}", child.id());
}

/// One row of docs/RELIABILITY.md's fault table, printed by a fault test as
/// `fault-table: {json}` (scripts/fault-table.sh collects them): what was injected, what the
/// daemon made (`produced`: the highest `seq`), what reached the subscriber, and how long after
/// the fault ended the last of it arrived.
pub struct Fault<'a> {
    /// The case, as a short name.
    pub case: &'a str,
    /// What was done to the daemon or its surroundings.
    pub injected: &'a str,
    /// Captions the daemon made.
    pub produced: u64,
    /// `seq` of every caption received, duplicates included.
    pub received: &'a [u64],
    /// Seconds from the end of the fault to the last caption received (None: not measured).
    pub recovery_s: Option<f64>,
    /// Anything else the row should say (counted drops, exit time).
    pub note: &'a str,
}

impl Fault<'_> {
    /// Prints the row (with `--nocapture`) and returns (lost, duplicated).
    pub fn report(&self) -> (u64, u64) {
        let mut distinct = self.received.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let lost = self.produced.saturating_sub(distinct.len() as u64);
        let duplicated = (self.received.len() - distinct.len()) as u64;
        let row = serde_json::json!({
            "case": self.case, "injected": self.injected, "produced": self.produced,
            "received": distinct.len(), "lost": lost, "duplicated": duplicated,
            "recovery_s": self.recovery_s.map(|s| (s * 10.0).round() / 10.0),
            "note": self.note,
        });
        println!("fault-table: {row}");
        (lost, duplicated)
    }
}
