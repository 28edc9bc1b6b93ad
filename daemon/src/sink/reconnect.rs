//! When to reconnect to the broker, and what a run of lost connections means: a pure state
//! machine that the MQTT event loop feeds with what happened (a CONNACK, an error) and the
//! time, so every rule is unit-tested without a broker.
//!
//! - A broker that is down refuses connections at once: hark tries again every second (plus
//!   jitter), so it is back within about a second of the broker.
//! - A broker that accepts and then closes the connection at once, again and again while it
//!   stays up, is telling hark that another client took its client id: retried ever slower
//!   (two daemons fighting over one id would otherwise flap forever), and named once.
//! - A broker that crashes right after accepting is not a takeover: the next attempt is
//!   refused, which ends the run of short connections.
//! - Anything else (TLS, authentication, a host that does not answer) backs off from 0.5 s to
//!   30 s: those do not fix themselves within a second.

use std::time::{Duration, Instant};

/// A connection shorter than this counts as closed at once.
pub const SHORT: Duration = Duration::from_secs(10);
/// Short connections in a row, each followed by a successful reconnect, before hark names a
/// client-id takeover.
pub const TAKEOVER_AFTER: u32 = 3;
/// Retry interval while the broker refuses connections (it is down or restarting).
pub const WHILE_DOWN: Duration = Duration::from_secs(1);
const FIRST: Duration = Duration::from_millis(500);
const LONGEST: Duration = Duration::from_secs(30);

/// How a connection attempt or a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens (the broker is down or restarting).
    Refused,
    /// Any other error.
    Other,
}

impl Failure {
    /// Classifies a connection error by its text (rumqttc wraps the I/O error).
    pub fn of(error: &str) -> Self {
        if error.contains("Connection refused") {
            Self::Refused
        } else {
            Self::Other
        }
    }
}

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Wait this long (before jitter) and connect again.
    pub after: Duration,
    /// True once per run: the broker keeps closing connections it accepted while staying up.
    pub takeover: bool,
}

/// The reconnect bookkeeping of one client.
#[derive(Debug)]
pub struct Reconnect {
    backoff: Duration,
    connected_at: Option<Instant>,
    /// Short connections in a row whose next attempt was accepted again.
    short_in_a_row: u32,
    /// The last connection was short: the next attempt tells takeover from crash.
    after_short: bool,
    warned: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            backoff: FIRST,
            connected_at: None,
            short_in_a_row: 0,
            after_short: false,
            warned: false,
        }
    }
}

impl Reconnect {
    /// The broker accepted a connection at `now`.
    pub fn connected(&mut self, now: Instant) {
        if self.after_short {
            // Accepted again right after closing one: the broker is up and chose to close.
            self.short_in_a_row += 1;
        }
        self.after_short = false;
        self.connected_at = Some(now);
    }

    /// A connection attempt or a connection failed at `now` with `failure`.
    pub fn failed(&mut self, now: Instant, failure: Failure) -> Retry {
        let lasted = self.connected_at.take().map(|t| now.duration_since(t));
        match lasted {
            // A connection that lasted: whatever happened, start afresh.
            Some(l) if l >= SHORT => {
                *self = Self::default();
                return Retry {
                    after: FIRST,
                    takeover: false,
                };
            }
            Some(_) => self.after_short = true,
            None => {}
        }
        if failure == Failure::Refused {
            // Down, not taken over: poll until it is back, and forget the short run.
            self.short_in_a_row = 0;
            self.after_short = false;
            return Retry {
                after: WHILE_DOWN,
                takeover: false,
            };
        }
        let takeover = self.short_in_a_row >= TAKEOVER_AFTER && !self.warned;
        self.warned |= takeover;
        let after = match lasted {
            // The first short connection: maybe a crash; look again soon.
            Some(_) if self.short_in_a_row == 0 => WHILE_DOWN,
            // A run of them while the broker stays up: 1, 2, 4 … 30 s.
            Some(_) => {
                self.backoff = (self.backoff * 2).min(LONGEST);
                self.backoff
            }
            // A connection attempt that failed otherwise: 0.5, 1, 2 … 30 s.
            None => {
                let after = self.backoff;
                self.backoff = (after * 2).min(LONGEST);
                after
            }
        };
        Retry { after, takeover }
    }
}

/// Up to a quarter of `base` more, so that many clients of one broker do not reconnect in
/// step; `seed` is any changing number (the clock's nanoseconds).
pub fn jitter(base: Duration, seed: u32) -> Duration {
    base + base.mul_f64(f64::from(seed % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn a_broker_that_is_down_is_polled_every_second() {
        let (mut r, t0) = (Reconnect::default(), Instant::now());
        r.connected(t0);
        // A connection that lasted, then the broker dies: refused at every try.
        assert_eq!(r.failed(at(t0, 60.0), Failure::Other).after, FIRST);
        for i in 0..20 {
            let retry = r.failed(at(t0, 61.0 + f64::from(i)), Failure::Refused);
            assert_eq!(retry.after, WHILE_DOWN, "try {i}");
            assert!(!retry.takeover);
        }
    }

    #[test]
    fn a_broker_that_crashes_right_after_each_accept_is_not_a_takeover() {
        let (mut r, t0) = (Reconnect::default(), Instant::now());
        let mut t = 0.0;
        for _ in 0..10 {
            r.connected(at(t0, t));
            // Killed 2 s after accepting; the next attempt finds nothing listening.
            let lost = r.failed(at(t0, t + 2.0), Failure::Other);
            assert!(!lost.takeover);
            assert!(lost.after <= WHILE_DOWN, "{lost:?}");
            let down = r.failed(at(t0, t + 3.0), Failure::Refused);
            assert_eq!(down.after, WHILE_DOWN);
            assert!(!down.takeover);
            t += 5.0;
        }
    }

    #[test]
    fn a_broker_that_keeps_closing_accepted_connections_is_a_takeover_named_once() {
        let (mut r, t0) = (Reconnect::default(), Instant::now());
        let (mut t, mut waits, mut warnings) = (0.0, Vec::new(), 0);
        for _ in 0..8 {
            r.connected(at(t0, t));
            let retry = r.failed(at(t0, t + 0.1), Failure::Other);
            warnings += u32::from(retry.takeover);
            waits.push(retry.after);
            t += 0.1 + retry.after.as_secs_f64();
        }
        assert_eq!(warnings, 1);
        // Retried ever slower, up to the longest wait: not a fight at full speed.
        assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert!(
            *waits.last().unwrap() >= Duration::from_secs(8),
            "{waits:?}"
        );
    }

    #[test]
    fn a_lasting_connection_starts_afresh() {
        let (mut r, t0) = (Reconnect::default(), Instant::now());
        for i in 0..5 {
            r.connected(at(t0, f64::from(i)));
            r.failed(at(t0, f64::from(i) + 0.1), Failure::Other);
        }
        r.connected(at(t0, 10.0));
        assert_eq!(r.failed(at(t0, 100.0), Failure::Other).after, FIRST);
        r.connected(at(t0, 101.0));
        assert_eq!(r.failed(at(t0, 101.1), Failure::Other).after, WHILE_DOWN);
    }

    #[test]
    fn other_errors_before_any_connection_back_off_to_half_a_minute() {
        let (mut r, t0) = (Reconnect::default(), Instant::now());
        let waits: Vec<Duration> = (0..10)
            .map(|i| r.failed(at(t0, f64::from(i)), Failure::Other).after)
            .collect();
        assert_eq!(waits[0], FIRST);
        assert_eq!(waits[1], FIRST * 2);
        assert_eq!(*waits.last().unwrap(), LONGEST);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let base = Duration::from_secs(1);
        assert_eq!(jitter(base, 0), base);
        assert!(jitter(base, 999) <= base.mul_f64(1.25));
        assert_eq!(
            Failure::of("I/O: Connection refused (os error 111)"),
            Failure::Refused
        );
        assert_eq!(Failure::of("TLS: UnknownIssuer"), Failure::Other);
    }
}
