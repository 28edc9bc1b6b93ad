//! systemd notification as the service manager sees it: a real `NOTIFY_SOCKET` datagram
//! socket. `READY=1` once the pipeline runs, `WATCHDOG=1` while it makes progress, and no
//! pings while it is stalled — here by a stdout reader that stops reading.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hark_e2e::{demo_samples, hark_bin, synth_bundle};

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

#[test]
fn ready_then_watchdog_pings_that_stop_while_the_pipeline_is_stalled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    // The longest device id (256 bytes) makes every caption line about 0.5 KB: a pipe no one
    // reads (64 KB) fills fast.
    let device = "d".repeat(256);
    let mut child = Command::new(hark_bin())
        .env("HARK__MODEL__BUNDLE", synth_bundle())
        .args(["run", "--stdin", "16000", "--device-id", &device])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env("HARK__WINDOW__SECONDS", "0.5")
        .env("HARK__WINDOW__HOP_SECONDS", "0.25")
        .env("HARK__EVENTS__DEDUP_HOLD_SECONDS", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();

    let first = receive(&sock, Duration::from_secs(3));
    assert_eq!(
        first.first().map(String::as_str),
        Some("READY=1"),
        "{first:?}"
    );
    let pings = first.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(
        pings >= 10,
        "an idle, healthy pipeline pings every 100 ms: {first:?}"
    );

    // 60 s of audio: ~240 captions, about 120 KB, more than a pipe holds, so the publisher,
    // then inference, then the DSP thread block.
    let audio: Vec<u8> = demo_samples()
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    // The feeder keeps stdin open when done: an end of input would stop the daemon by itself.
    let feeder = std::thread::spawn(move || {
        for _ in 0..15 {
            if stdin.write_all(&audio).is_err() {
                break;
            }
        }
        stdin
    });
    let t0 = Instant::now();
    loop {
        let got = receive(&sock, Duration::from_millis(1000));
        if got.iter().all(|m| m != "WATCHDOG=1") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the pings never stopped"
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the process is alive, only stalled"
    );

    // Reading the captions unblocks the pipeline: pings resume.
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink);
        sink
    });
    let resumed = receive(&sock, Duration::from_secs(3));
    assert!(resumed.iter().any(|m| m == "WATCHDOG=1"), "{resumed:?}");

    hark_e2e::signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let captions = String::from_utf8_lossy(&reader.join().unwrap())
        .lines()
        .count();
    assert!(captions > 30, "{captions} captions");
    drop(feeder.join());
    let last = receive(&sock, Duration::from_millis(200));
    assert!(last.iter().any(|m| m == "STOPPING=1"), "{last:?}");
}
