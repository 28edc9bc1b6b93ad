//! What `set` commands change and the inference thread reads: the decoding parameters and
//! the triggers in effect, and the pace at which commands are taken. Written by
//! `sink::commands`, read by the pipeline on every window.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use crate::config::TriggerConfig;
use crate::decode::{DecodeParams, ParamError};
use crate::model::bundle::Bundle;
use crate::pipeline::triggers::Triggers;

/// State that commands change and the inference thread reads.
pub struct Control {
    /// Decoding parameters in effect.
    params: RwLock<DecodeParams>,
    configured: DecodeParams,
    max_len: usize,
    /// The triggers in effect.
    triggers: RwLock<Vec<TriggerConfig>>,
    /// Changes made to them: the inference thread rebuilds its phrases when this moves.
    changes: AtomicU64,
    /// The model, to check triggers' words against; None: no trigger can be added.
    bundle: Option<Bundle>,
    /// Commands accepted for processing: a flood cannot keep the daemon re-deciding.
    rate: Mutex<RateLimit>,
    /// A `learn` command waiting for the inference thread, which holds the recent windows.
    learn: Mutex<Option<LearnRequest>>,
}

/// "Learn the last `windows` windows heard as `name`" (the `learn` command).
#[derive(Debug, Clone, PartialEq)]
pub struct LearnRequest {
    /// The sound's name (checked).
    pub name: String,
    /// How many of the latest windows without speech become examples.
    pub windows: usize,
}

/// The most recent windows a `learn` command can take.
pub const MAX_LEARN_WINDOWS: usize = 6;

/// A token bucket: `burst` at once, then `per_second`.
#[derive(Debug)]
pub struct RateLimit {
    burst: f64,
    per_second: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(burst: u32, per_second: f64) -> Self {
        Self {
            burst: f64::from(burst),
            per_second,
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Commands processed: `COMMAND_BURST` at once, then `COMMAND_RATE` per second.
pub const COMMAND_BURST: u32 = 10;
/// See `COMMAND_BURST`.
pub const COMMAND_RATE: f64 = 1.0;

impl Control {
    /// Starts from the configured parameters; `max_len` is the bundle's `tokens.max_len`.
    pub fn new(configured: DecodeParams, max_len: usize) -> Self {
        Self {
            params: RwLock::new(configured.clone()),
            configured,
            max_len,
            triggers: RwLock::new(Vec::new()),
            changes: AtomicU64::new(0),
            bundle: None,
            rate: Mutex::new(RateLimit::new(COMMAND_BURST, COMMAND_RATE)),
            learn: Mutex::new(None),
        }
    }

    /// Asks the inference thread to learn the last `windows` windows as `name`; refused when
    /// the model cannot learn sounds, the name or count is bad, or a request is waiting.
    pub fn request_learn(&self, name: &str, windows: usize) -> Result<(), String> {
        crate::sounds::check_name(name).map_err(|e| e.to_string())?;
        if !(1..=MAX_LEARN_WINDOWS).contains(&windows) {
            return Err(format!(
                "learn: windows = {windows}: from 1 to {MAX_LEARN_WINDOWS} (the latest windows without speech)"
            ));
        }
        match &self.bundle {
            Some(b) => crate::sounds::reference(b).map_err(|e| format!("{e:#}"))?,
            None => return Err("this daemon has no model to learn with".into()),
        };
        let mut slot = self.learn.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return Err("learn: another learn command is still being carried out".into());
        }
        *slot = Some(LearnRequest {
            name: name.to_string(),
            windows,
        });
        Ok(())
    }

    /// The waiting `learn` request, taken.
    pub fn take_learn(&self) -> Option<LearnRequest> {
        self.learn.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// With the configured triggers (already checked) and the model they are checked against.
    pub fn with_triggers(mut self, triggers: Vec<TriggerConfig>, bundle: Bundle) -> Self {
        self.triggers = RwLock::new(triggers);
        self.bundle = Some(bundle);
        self
    }

    /// The triggers in effect.
    pub fn triggers(&self) -> Vec<TriggerConfig> {
        self.triggers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times a command changed the triggers (read on every window: no lock).
    pub fn trigger_changes(&self) -> u64 {
        self.changes.load(Relaxed)
    }

    /// The parameters in effect.
    pub fn params(&self) -> DecodeParams {
        self.params
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes a command's token from the rate limit, if there is one now.
    pub fn allow_command(&self) -> bool {
        self.rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(Instant::now())
    }

    /// The parameters in effect with `overrides` applied, checked; nothing changes on error.
    pub fn override_params(
        &self,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ParamError> {
        let next = self.params().with_overrides(overrides, self.max_len)?;
        *self.params.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    /// Back to the configured parameters.
    pub fn reset_params(&self) {
        *self.params.write().unwrap_or_else(|e| e.into_inner()) = self.configured.clone();
    }

    /// Adds triggers (a name in use is replaced) and removes triggers by name, checked
    /// against the model's words; nothing changes on error.
    pub fn change_triggers(&self, add: &[TriggerConfig], remove: &[String]) -> Result<(), String> {
        let mut state = self.triggers.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<TriggerConfig> = state
            .iter()
            .filter(|t| !remove.contains(&t.name) && !add.iter().any(|a| a.name == t.name))
            .cloned()
            .collect();
        next.extend(add.iter().cloned());
        match &self.bundle {
            Some(b) => Triggers::build(&next, b).map_err(|e| e.to_string())?,
            None => return Err("this daemon has no model to check triggers against".into()),
        };
        *state = next;
        // Counted after the list is in place (and before the lock is released), so a reader
        // that sees the new count reads the new list.
        self.changes.fetch_add(1, Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_beyond_the_burst_are_refused_until_the_bucket_refills() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(3, 1.0);
        assert!((0..3).all(|_| r.allow(t0)));
        assert!(!r.allow(t0), "burst spent");
        assert!(!r.allow(t0 + std::time::Duration::from_millis(500)));
        assert!(r.allow(t0 + std::time::Duration::from_millis(1600)));
        assert!(!r.allow(t0 + std::time::Duration::from_millis(1700)));
        let later = t0 + std::time::Duration::from_secs(100);
        assert!(
            (0..3).all(|_| r.allow(later)),
            "refilled to the burst, not beyond"
        );
        assert!(!r.allow(later));
    }
}
