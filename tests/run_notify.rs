//! systemd notification as the service manager sees it: a real `NOTIFY_SOCKET` datagram
//! socket. `READY=1` once the pipeline runs, and `WATCHDOG=1` while its threads are alive —
//! also while a stdout reader stops reading: a slow sink is not a hang, and a restart would
//! only lose what was queued. Replayed audio waits for the sink; live audio keeps captioning
//! and drops the oldest captions, counted. A hung process stops the pings, and so does one
//! hung pipeline thread while the rest of hark runs on.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hark_e2e::{demo_samples, hark_bin, s16le, synth_bundle, write_wav};

/// Notifications received within `window`.
fn receive(sock: &UnixDatagram, window: Duration) -> Vec<String> {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while t0.elapsed() < window {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
        }
    }
    got
}

/// `hark run` with the synthetic model, 0.5 s windows every 0.25 s, the longest device id
/// (256 bytes: every caption line is about 0.5 KB), notifying `sock`, with `args` added.
fn spawn(sock: &std::path::Path, args: &[&str]) -> std::process::Child {
    let device = "d".repeat(256);
    Command::new(hark_bin())
        .env("HARK__MODEL__BUNDLE", synth_bundle())
        .args(["run", "--device-id", &device])
        .args(args)
        .env("NOTIFY_SOCKET", sock)
        .env("WATCHDOG_USEC", "200000")
        .env("HARK__WINDOW__SECONDS", "0.5")
        .env("HARK__WINDOW__HOP_SECONDS", "0.25")
        .env("HARK__EVENTS__DEDUP_HOLD_SECONDS", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn socket(dir: &std::path::Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    (sock, path)
}

/// Waits for `child` to exit while reading `sock`, as systemd would: hark's notifications are
/// blocking sends, and a socket nobody reads (10 datagrams deep) would block hark. Returns the
/// exit status and the messages received meanwhile.
fn wait_reading(
    child: &mut std::process::Child,
    sock: &UnixDatagram,
) -> (std::process::ExitStatus, Vec<String>) {
    let mut got = Vec::new();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            got.extend(receive(sock, Duration::from_millis(200)));
            return (status, got);
        }
        got.extend(receive(sock, Duration::from_millis(50)));
    }
}

fn pings(got: &[String]) -> usize {
    got.iter().filter(|m| *m == "WATCHDOG=1").count()
}

/// The `seq` of every caption line.
fn seqs(lines: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(lines)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_stalled_reader_of_replayed_audio_keeps_the_pings_and_loses_no_caption() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = socket(dir.path());
    let mut child = spawn(&path, &["--stdin", "16000"]);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();

    let first = receive(&sock, Duration::from_secs(3));
    assert_eq!(
        first.first().map(String::as_str),
        Some("READY=1"),
        "{first:?}"
    );
    assert!(
        pings(&first) >= 10,
        "an idle, healthy pipeline pings every 100 ms: {first:?}"
    );

    // 60 s of audio: ~240 captions, about 120 KB, more than a pipe holds: the publisher,
    // then inference, then the DSP thread wait for the reader.
    let audio = s16le(&demo_samples());
    let feeder = std::thread::spawn(move || {
        for _ in 0..15 {
            stdin.write_all(&audio).unwrap();
        }
        stdin // closed after the reader has started
    });
    // Stalled: every second still has its pings.
    for _ in 0..4 {
        let got = receive(&sock, Duration::from_millis(1000));
        assert!(
            pings(&got) >= 5,
            "pings stopped while the reader stalled: {got:?}"
        );
    }
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
        sink
    });
    // Keep reading the notify socket while the feeder writes: on a loaded machine the
    // feeding outlasts the socket's queue, and a full queue blocks hark's pings (and with them
    // the sink that would let the feeder finish).
    while !feeder.is_finished() {
        receive(&sock, Duration::from_millis(50));
    }
    drop(feeder.join().unwrap());
    let (status, last) = wait_reading(&mut child, &sock);
    assert!(status.success(), "{status:?}");
    let got = seqs(&reader.join().unwrap());
    // 60 s in 0.25 s hops: 239 windows, every one captioned, none dropped.
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>());
    assert!(got.len() >= 235, "{} captions", got.len());
    hark_e2e::Fault {
        case: "stdout not read (replayed audio)",
        injected: "nobody reads hark's stdout for 4 s while 60 s of audio arrive on stdin",
        produced: got.len() as u64,
        received: &got,
        recovery_s: None,
        note: "watchdog pinged throughout; the pipeline waits for the reader",
    }
    .report();
    assert!(last.iter().any(|m| m == "STOPPING=1"), "{last:?}");
}

#[test]
fn a_stalled_reader_of_live_audio_keeps_the_pings_and_costs_the_oldest_captions_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = socket(dir.path());
    // 10 s of audio, delivered at its real speed like a microphone: ~39 captions.
    let wav = dir.path().join("ten.wav");
    let samples: Vec<i16> = demo_samples()
        .iter()
        .copied()
        .cycle()
        .take(160_000)
        .collect();
    write_wav(&wav, &samples);
    let cfg = dir.path().join("hark.toml");
    std::fs::write(&cfg, "[pipeline]\noutbox = 4\n").unwrap();
    let (wav, cfg) = (wav.to_str().unwrap(), cfg.to_str().unwrap());
    let mut child = spawn(&path, &["-c", cfg, "--file", wav, "--realtime"]);
    let mut stdout = child.stdout.take().unwrap();
    // A pipe of one page holds ~8 caption lines; the outbox holds 4 more.
    use std::os::fd::AsRawFd;
    assert!(unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) } >= 4096);
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let first = receive(&sock, Duration::from_secs(2));
    assert!(first.iter().any(|m| m == "READY=1"), "{first:?}");
    // The file plays while nobody reads: pings all along, and after it ended too (the
    // pipeline is done, its last captions wait for the reader).
    for _ in 0..10 {
        let got = receive(&sock, Duration::from_millis(1000));
        assert!(
            pings(&got) >= 5,
            "pings stopped while the reader stalled: {got:?} {:?}",
            child.try_wait()
        );
    }
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        stdout.read_to_end(&mut lines).unwrap();
        lines
    });
    let (status, _) = wait_reading(&mut child, &sock);
    let lines = reader.join().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("the sink is not taking captions"), "{log}");
    let got = seqs(&lines);
    let made = *got.last().unwrap();
    let dropped = made - got.len() as u64;
    assert!(
        made >= 35 && dropped >= 15,
        "{made} made, {} received",
        got.len()
    );
    assert!(
        log.contains(&format!(
            "{made} caption(s) ({dropped} dropped for a slow sink)"
        )),
        "{log}"
    );
    // What was dropped is the oldest: the captions that arrived include the newest.
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    hark_e2e::Fault {
        case: "stdout not read (live audio)",
        injected: "nobody reads hark's stdout (a one-page pipe) while 10 s of audio play in real time",
        produced: made,
        received: &got,
        recovery_s: None,
        note: &format!(
            "watchdog pinged throughout; the {dropped} lost are the oldest, counted as dropped_captions and logged once"
        ),
    }
    .report();
}

#[test]
fn a_hung_process_stops_the_pings() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = socket(dir.path());
    let mut child = spawn(&path, &["--stdin", "16000"]);
    let first = receive(&sock, Duration::from_secs(2));
    assert!(pings(&first) >= 5, "{first:?}");
    hark_e2e::signal(&child, "-STOP");
    let _ = receive(&sock, Duration::from_millis(100)); // a ping already on its way
    let hung = receive(&sock, Duration::from_secs(1));
    assert_eq!(pings(&hung), 0, "{hung:?}");
    hark_e2e::signal(&child, "-CONT");
    let back = receive(&sock, Duration::from_secs(1));
    assert!(pings(&back) >= 3, "{back:?}");
    hark_e2e::signal(&child, "-TERM");
    assert!(wait_reading(&mut child, &sock).0.success());
}

/// One thread of a running process, stopped by ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT stop
/// that thread only): the rest of hark runs on, as it would around a deadlocked thread.
/// Dropping it lets the thread go.
struct Frozen(libc::pid_t);

impl Frozen {
    fn thread(child: &std::process::Child, name: &str) -> Frozen {
        let pid = child.id();
        let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .parse::<libc::pid_t>()
                    .unwrap()
            })
            .find(|tid| {
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                    .is_ok_and(|comm| comm.trim() == name)
            })
            .unwrap_or_else(|| panic!("hark has no thread {name}"));
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: plain ptrace/waitpid calls on a thread of our own child; no memory is shared.
        unsafe {
            assert_eq!(
                libc::ptrace(libc::PTRACE_SEIZE, tid, null, null),
                0,
                "PTRACE_SEIZE {name}: {}",
                std::io::Error::last_os_error()
            );
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null), 0);
            let mut status = 0;
            assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid);
        }
        Frozen(tid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: detaches the thread `thread` stopped (it is in a ptrace stop).
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.0, null, null) };
    }
}

/// Everything an exited `child` wrote to its stderr.
fn stderr(child: &mut std::process::Child) -> String {
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    log
}

/// A process's state letter in /proc (R, S, D, t for a ptrace stop, T when stopped...).
fn state(pid: u32, tid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
}

#[test]
fn a_hung_pipeline_thread_stops_the_pings_while_the_rest_of_hark_runs() {
    for thread in ["hark-inference", "hark-dsp"] {
        let dir = tempfile::tempdir().unwrap();
        let (sock, path) = socket(dir.path());
        let mut child = spawn(&path, &["--stdin", "16000"]);
        let first = receive(&sock, Duration::from_secs(2));
        assert!(pings(&first) >= 5, "{thread}: {first:?}");
        {
            let _frozen = Frozen::thread(&child, thread);
            let _ = receive(&sock, Duration::from_millis(300)); // pings already decided
            let hung = receive(&sock, Duration::from_secs(1));
            assert_eq!(pings(&hung), 0, "{thread}: {hung:?}");
            assert!(child.try_wait().unwrap().is_none());
            assert_ne!(
                state(child.id(), child.id()),
                't',
                "only {thread} is stopped"
            );
        }
        let back = receive(&sock, Duration::from_secs(1));
        assert!(pings(&back) >= 3, "{thread}: {back:?}");
        hark_e2e::signal(&child, "-TERM");
        assert!(wait_reading(&mut child, &sock).0.success());
        let log = stderr(&mut child);
        assert!(log.contains("pipeline stalled"), "{thread}: {log}");
        assert!(log.contains("pipeline running again"), "{thread}: {log}");
    }
}

#[test]
fn a_stalled_stdin_producer_is_reported_not_taken_for_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = socket(dir.path());
    let mut child = spawn(&path, &["--stdin", "16000"]);
    let mut stdin = child.stdin.take().unwrap();
    let second = s16le(&demo_samples()[..16_000]);
    stdin.write_all(&second).unwrap();
    // The producer stops writing but keeps stdin open: hark is healthy, the source is not.
    let stalled = receive(&sock, Duration::from_secs(7));
    assert!(pings(&stalled) >= 20, "{stalled:?}");
    stdin.write_all(&second).unwrap();
    let _ = receive(&sock, Duration::from_millis(500));
    drop(stdin);
    assert!(wait_reading(&mut child, &sock).0.success());
    let log = stderr(&mut child);
    assert_eq!(log.matches("no audio on stdin for 5 s").count(), 1, "{log}");
    assert!(log.contains("audio on stdin again"), "{log}");
}
