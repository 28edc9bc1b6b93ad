//! An audio file as a source: decoded as it is fed, as fast as the pipeline takes it or paced
//! in real time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Source;
use super::ring::RingWriter;

/// An audio file, decoded as it is fed (memory does not grow with its length).
pub struct FileSource {
    path: PathBuf,
    stream: super::audio_file::Stream,
    realtime: bool,
}

impl FileSource {
    pub(super) fn open(path: &std::path::Path, realtime: bool) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            stream: super::audio_file::Stream::open(path)?,
            realtime,
        })
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!(
            "file {} ({} at {} Hz{})",
            self.path.display(),
            self.stream
                .seconds()
                .map_or("length unknown".into(), |s| format!("{s:.1} s")),
            self.stream.sample_rate(),
            if self.realtime { ", real time" } else { "" }
        )
    }

    fn sample_rate(&self) -> u32 {
        self.stream.sample_rate()
    }

    fn capture(self: Box<Self>, mut ring: RingWriter, stop: &AtomicBool) -> Result<()> {
        let rate = f64::from(self.stream.sample_rate());
        // 20 ms blocks: real-time pacing granularity.
        let block = (self.stream.sample_rate() as usize / 50).max(1);
        let started = Instant::now();
        let mut sent = 0usize;
        self.stream.for_each(|samples| {
            for chunk in samples.chunks(block) {
                if self.realtime {
                    let due = Duration::from_secs_f64(sent as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                if stop.load(Relaxed) || !ring.push_wait(chunk, stop) {
                    return false;
                }
                sent += chunk.len();
            }
            true
        })
    }
}
