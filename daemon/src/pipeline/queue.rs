//! The bounded queues of the pipeline: windows from the DSP thread to the inference thread,
//! and captions from the inference thread to the sink (the outbox). When one is full a new item
//! either replaces the oldest one (live audio: latency stays bounded, the loss is counted) or
//! waits for room (replayed audio: nothing is skipped). A thread waiting for room is alive, not
//! hung: its heartbeat keeps counting, so the watchdog does not restart a daemon whose sink is
//! slow.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::Overflow;

/// What happened to a pushed item.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued; the oldest item was dropped to make room.
    DroppedOldest,
    /// Not queued: the queue is closed, or `stop` was raised while waiting.
    Refused,
}

/// What a pop found.
#[derive(Debug, PartialEq, Eq)]
pub enum Popped<T> {
    /// The oldest item.
    Item(T),
    /// Nothing arrived within the timeout.
    TimedOut,
    /// Closed and drained: nothing will come.
    Closed,
}

/// A bounded multi-thread queue.
pub struct Queue<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    capacity: usize,
    overflow: Overflow,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    /// A queue of at most `capacity` (≥ 1) items.
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            changed: Condvar::new(),
            capacity: capacity.max(1),
            overflow,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking holder cannot leave the deque inconsistent: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `item` according to the overflow policy; a blocking push counts `heartbeat` on
    /// while it waits, and gives up when `stop` is raised.
    pub fn push(&self, item: T, stop: &AtomicBool, heartbeat: &AtomicU64) -> Pushed {
        let mut s = self.lock();
        let mut dropped = false;
        while s.items.len() >= self.capacity && !s.closed {
            match self.overflow {
                Overflow::DropOldest => {
                    s.items.pop_front();
                    dropped = true;
                }
                Overflow::Block => {
                    if stop.load(Relaxed) {
                        return Pushed::Refused;
                    }
                    heartbeat.fetch_add(1, Relaxed);
                    s = self
                        .changed
                        .wait_timeout(s, Duration::from_millis(50))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        if s.closed {
            return Pushed::Refused;
        }
        s.items.push_back(item);
        drop(s);
        self.changed.notify_all();
        if dropped {
            Pushed::DroppedOldest
        } else {
            Pushed::Queued
        }
    }

    /// The oldest item; waits up to `timeout` for one.
    pub fn pop(&self, timeout: Duration) -> Popped<T> {
        let mut s = self.lock();
        if s.items.is_empty() && !s.closed {
            s = self
                .changed
                .wait_timeout(s, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match s.items.pop_front() {
            Some(item) => {
                drop(s);
                self.changed.notify_all();
                Popped::Item(item)
            }
            None if s.closed => Popped::Closed,
            None => Popped::TimedOut,
        }
    }

    /// No more pushes; pops drain what is queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Drops everything queued (a shutdown that abandons pending work); returns how many.
    pub fn clear(&self) -> usize {
        let mut s = self.lock();
        let n = s.items.len();
        s.items.clear();
        drop(s);
        self.changed.notify_all();
        n
    }

    /// Items queued now.
    pub fn depth(&self) -> usize {
        self.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let q = Queue::new(2, Overflow::DropOldest);
        let (stop, beat) = (AtomicBool::new(false), AtomicU64::new(0));
        assert_eq!(q.push(1, &stop, &beat), Pushed::Queued);
        assert_eq!(q.push(2, &stop, &beat), Pushed::Queued);
        assert_eq!(q.push(3, &stop, &beat), Pushed::DroppedOldest);
        assert_eq!(q.depth(), 2);
        assert_eq!(q.pop(Duration::ZERO), Popped::Item(2));
        assert_eq!(q.pop(Duration::ZERO), Popped::Item(3));
        assert_eq!(q.pop(Duration::ZERO), Popped::TimedOut);
        q.close();
        assert_eq!(q.pop(Duration::ZERO), Popped::Closed);
        assert_eq!(q.push(4, &stop, &beat), Pushed::Refused);
    }

    #[test]
    fn block_waits_for_the_consumer_and_loses_nothing() {
        let q = Arc::new(Queue::new(1, Overflow::Block));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let (stop, beat) = (AtomicBool::new(false), AtomicU64::new(0));
                for i in 0..100 {
                    assert_eq!(q.push(i, &stop, &beat), Pushed::Queued);
                }
                q.close();
            })
        };
        let mut got = Vec::new();
        loop {
            match q.pop(Duration::from_millis(10)) {
                Popped::Item(item) => got.push(item),
                Popped::TimedOut => {}
                Popped::Closed => break,
            }
        }
        producer.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_blocked_push_gives_up_on_stop() {
        let q = Queue::new(1, Overflow::Block);
        let (stop, beat) = (AtomicBool::new(false), AtomicU64::new(0));
        q.push(1, &stop, &beat);
        stop.store(true, Relaxed);
        assert_eq!(q.push(2, &stop, &beat), Pushed::Refused);
    }

    #[test]
    fn a_push_waiting_for_room_keeps_its_heartbeat_going() {
        let q = Arc::new(Queue::new(1, Overflow::Block));
        let (stop, beat) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        q.push(1, &stop, &beat);
        let waiting = {
            let (q, stop, beat) = (q.clone(), stop.clone(), beat.clone());
            std::thread::spawn(move || q.push(2, &stop, &beat))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(beat.load(Relaxed) >= 3, "{} beats", beat.load(Relaxed));
        assert_eq!(q.pop(Duration::ZERO), Popped::Item(1));
        assert_eq!(waiting.join().unwrap(), Pushed::Queued);
    }
}
