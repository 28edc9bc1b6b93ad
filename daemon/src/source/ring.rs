//! The writing end of the capture ring: what every source pushes its mono samples into.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use ringbuf::HeapProd;
use ringbuf::traits::Producer;

use crate::stats::Counters;

/// The writing end of the capture ring.
pub struct RingWriter {
    producer: HeapProd<f32>,
    pub(super) counters: Arc<Counters>,
    /// Samples still to accept (a timed capture); `u64::MAX` = unlimited.
    remaining: u64,
}

impl RingWriter {
    /// Wraps the ring's producer.
    pub fn new(producer: HeapProd<f32>, counters: Arc<Counters>) -> Self {
        Self {
            producer,
            counters,
            remaining: u64::MAX,
        }
    }

    /// Accepts at most `limit` samples, then ignores the rest.
    pub fn with_limit(mut self, limit: Option<u64>) -> Self {
        self.remaining = limit.unwrap_or(u64::MAX);
        self
    }

    /// Real-time push from an audio callback: downmixes `data` (interleaved, `channels`)
    /// into the ring without allocating, locking or blocking; frames that do not fit are
    /// dropped and counted as overruns.
    pub fn push_live<T: Copy>(&mut self, data: &[T], channels: usize, to_f32: impl Fn(T) -> f32) {
        let frames = (data.len() / channels).min(self.remaining.try_into().unwrap_or(usize::MAX));
        self.remaining -= frames as u64;
        let data = &data[..frames * channels];
        let scale = 1.0 / channels as f32;
        let mono = data
            .chunks_exact(channels)
            .map(|f| f.iter().map(|&s| to_f32(s)).sum::<f32>() * scale);
        let pushed = self.producer.push_iter(mono);
        self.counters.samples_in.fetch_add(pushed as u64, Relaxed);
        if pushed < frames {
            self.counters
                .ring_overruns
                .fetch_add((frames - pushed) as u64, Relaxed);
        }
    }

    /// Push from a replay source: waits for room instead of dropping. Returns false if
    /// `stop` was raised first.
    pub fn push_wait(&mut self, mut mono: &[f32], stop: &AtomicBool) -> bool {
        while !mono.is_empty() {
            let n = self.producer.push_slice(mono);
            self.counters.samples_in.fetch_add(n as u64, Relaxed);
            mono = &mono[n..];
            if !mono.is_empty() {
                if stop.load(Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use ringbuf::HeapRb;
    use ringbuf::traits::{Consumer, Split};

    use super::*;

    #[test]
    fn live_audio_is_downmixed_and_what_does_not_fit_is_counted_not_waited_for() {
        let (producer, mut consumer) = HeapRb::<f32>::new(4).split();
        let counters = Arc::new(Counters::default());
        let mut ring = RingWriter::new(producer, counters.clone());
        // Six stereo frames into room for four: the last two are overruns.
        let stereo: Vec<i16> = vec![100, 300, -200, 200, 0, 0, 50, 50, 1, 1, 2, 2];
        ring.push_live(&stereo, 2, f32::from);
        let got: Vec<f32> = consumer.pop_iter().collect();
        assert_eq!(got, vec![200.0, 0.0, 0.0, 50.0]);
        assert_eq!(counters.samples_in.load(Relaxed), 4);
        assert_eq!(counters.ring_overruns.load(Relaxed), 2);
    }

    #[test]
    fn a_timed_capture_takes_its_samples_then_ignores_the_rest() {
        let (producer, mut consumer) = HeapRb::<f32>::new(16).split();
        let counters = Arc::new(Counters::default());
        let mut ring = RingWriter::new(producer, counters.clone()).with_limit(Some(3));
        ring.push_live(&[1.0f32, 2.0], 1, |s| s);
        ring.push_live(&[3.0f32, 4.0, 5.0], 1, |s| s);
        assert_eq!(consumer.pop_iter().collect::<Vec<_>>(), vec![1.0, 2.0, 3.0]);
        assert_eq!(counters.ring_overruns.load(Relaxed), 0);
    }

    #[test]
    fn replayed_audio_waits_for_room_and_gives_up_when_stopped() {
        let (producer, mut consumer) = HeapRb::<f32>::new(4).split();
        let mut ring = RingWriter::new(producer, Arc::new(Counters::default()));
        let stop = AtomicBool::new(false);
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            while got.len() < 10 {
                got.extend(consumer.pop_iter());
                std::thread::sleep(Duration::from_millis(1));
            }
            got
        });
        let samples: Vec<f32> = (0..10).map(|i| i as f32).collect();
        assert!(ring.push_wait(&samples, &stop));
        assert_eq!(reader.join().unwrap(), samples);
        // Nobody reads now: a full ring and a raised stop end the wait.
        assert!(ring.push_wait(&[0.0; 4], &stop));
        stop.store(true, Relaxed);
        assert!(!ring.push_wait(&[0.0; 4], &stop));
    }
}
