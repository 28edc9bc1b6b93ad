//! Raw PCM on standard input as a source, watched for a producer that stalls.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::ring::RingWriter;
use super::{STALL, Source};
use crate::config::PcmFormat;
use crate::stats::Counters;

/// Raw interleaved little-endian PCM on standard input, until end of file.
pub struct StdinSource {
    pub(super) rate: u32,
    pub(super) channels: usize,
    pub(super) format: PcmFormat,
}

impl Source for StdinSource {
    fn describe(&self) -> String {
        format!(
            "stdin ({:?}, {} channel(s) at {} Hz)",
            self.format, self.channels, self.rate
        )
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn capture(self: Box<Self>, mut ring: RingWriter, stop: &AtomicBool) -> Result<()> {
        let mut stdin = std::io::stdin().lock();
        let watch = StdinWatch::new(Arc::clone(&ring.counters));
        std::thread::scope(|scope| {
            scope.spawn(|| watch.run(stop));
            let read = self.read_stdin(&mut stdin, &mut ring, stop, &watch);
            watch.done.store(true, Relaxed);
            read
        })
    }
}

impl StdinSource {
    fn read_stdin(
        &self,
        stdin: &mut impl Read,
        ring: &mut RingWriter,
        stop: &AtomicBool,
        watch: &StdinWatch,
    ) -> Result<()> {
        let width = match self.format {
            PcmFormat::S16le => 2,
            PcmFormat::F32le => 4,
        };
        let frame_bytes = width * self.channels;
        let mut bytes = vec![0u8; frame_bytes * 1024];
        let mut filled = 0;
        let mut mono = Vec::with_capacity(1024);
        while !stop.load(Relaxed) {
            watch.reading(true);
            let read = stdin.read(&mut bytes[filled..]);
            watch.reading(false);
            let n = match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("cannot read audio from stdin"),
            };
            filled += n;
            let whole = filled / frame_bytes * frame_bytes;
            mono.clear();
            mono.extend(bytes[..whole].chunks_exact(frame_bytes).map(|frame| {
                let sum: f32 = frame
                    .chunks_exact(width)
                    .map(|s| match self.format {
                        PcmFormat::S16le => f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0,
                        PcmFormat::F32le => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
                    })
                    .sum();
                sum / self.channels as f32
            }));
            bytes.copy_within(whole..filled, 0);
            filled -= whole;
            if !ring.push_wait(&mono, stop) {
                break;
            }
        }
        if filled > 0 {
            log::warn!("stdin ended inside a sample frame: {filled} trailing byte(s) ignored");
        }
        Ok(())
    }
}

/// Notices a producer that stops writing to stdin without closing it (a stalled pipe or FIFO):
/// after STALL inside one read, `source_lost` in stats and a warning; when audio comes again,
/// both cleared. Time spent waiting for room in the ring is back-pressure, not a stall.
struct StdinWatch {
    counters: Arc<Counters>,
    /// When the read now blocked began (ms since `t0`, plus one); 0 between reads.
    reading_since: AtomicU64,
    t0: Instant,
    done: AtomicBool,
}

impl StdinWatch {
    fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            reading_since: AtomicU64::new(0),
            t0: Instant::now(),
            done: AtomicBool::new(false),
        }
    }

    fn reading(&self, now: bool) {
        let since = if now {
            self.t0.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.reading_since.store(since, Relaxed);
    }

    fn run(&self, stop: &AtomicBool) {
        let mut lost = false;
        while !self.done.load(Relaxed) && !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let since = self.reading_since.load(Relaxed);
            let stalled = since != 0
                && self.t0.elapsed().as_millis() as u64 + 1 - since > STALL.as_millis() as u64;
            if stalled && !lost {
                self.counters.source_lost.store(true, Relaxed);
                self.counters.source_losses.fetch_add(1, Relaxed);
                log::warn!(
                    "no audio on stdin for {} s (it is still open): is its producer stalled? \
                     hark keeps waiting for it",
                    STALL.as_secs()
                );
            } else if !stalled && lost {
                self.counters.source_lost.store(false, Relaxed);
                log::info!("audio on stdin again");
            }
            lost = stalled;
        }
    }
}
