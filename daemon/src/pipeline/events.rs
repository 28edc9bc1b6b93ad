//! Caption events: the payload published on `<prefix>/<device>/caption`
//! (docs/schema/caption.schema.json) and the rule that suppresses repeats.

use std::time::SystemTime;

use serde::Serialize;

use crate::model::{Alternative, Tag};

/// Payload version; bump on incompatible changes. 2: `tags` are objects with a score and a
/// source (`{"label":"dog","score":0.93,"source":"hark"}`), not plain strings.
pub const VERSION: u32 = 2;

/// What the inference thread hands the publisher.
#[derive(Debug, Clone)]
pub enum Event {
    /// A window's caption (`hark/<device>/caption`).
    Caption(Caption),
    /// A trigger that fired on a window (`hark/<device>/trigger/<name>`).
    Trigger(crate::pipeline::triggers::Fired),
    /// A learned sound heard in a window (`hark/<device>/sound/<name>`).
    Sound(crate::sounds::Detected),
    /// A `learn` command carried out (`hark/<device>/learned`).
    Learned(crate::sounds::Learned),
    /// A `learn` command that could not be (`hark/<device>/error`): why.
    LearnRefused(String),
}

/// One published caption.
#[derive(Debug, Clone, Serialize)]
pub struct Caption {
    /// Payload version.
    pub v: u32,
    /// Monotonic, contiguous per run: a gap means a lost message.
    pub seq: u64,
    /// Device id.
    pub device: String,
    /// Best caption.
    pub text: String,
    /// Start of the captioned audio, RFC 3339 UTC.
    pub start: String,
    /// End of the captioned audio, RFC 3339 UTC.
    pub end: String,
    /// Length-normalised log-probability of `text`; null when the speech gate redacted it
    /// (it would score the hidden caption).
    pub score: Option<f32>,
    /// Other captions, best first.
    pub alternatives: Vec<Alternative>,
    /// Tags at or over their thresholds, per tag head most probable first (empty without
    /// tag heads).
    pub tags: Vec<Tag>,
    /// Whether a tag head heard speech; null when no head has a "speech" label.
    pub speech: Option<bool>,
    /// RMS level of the window, dBFS.
    pub level_dbfs: f32,
    /// Model name.
    pub model: String,
    /// From the window's last sample reaching the DSP thread to this caption, ms.
    pub latency_ms: f64,
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Suppresses a caption identical to the previous one within `hold` seconds of stream time.
pub struct Dedup {
    hold: f64,
    last: Option<(String, f64)>,
}

impl Dedup {
    /// Repeats within `hold` seconds are suppressed (0 = never).
    pub fn new(hold: f64) -> Self {
        Self { hold, last: None }
    }

    /// Whether `text` ending at `end` (seconds) should be published. A suppressed repeat
    /// does not extend the hold: a sound that goes on is re-announced every `hold` seconds.
    pub fn admit(&mut self, text: &str, end: f64) -> bool {
        if let Some((last, at)) = &self.last
            && last == text
            && end - at < self.hold
        {
            return false;
        }
        self.last = Some((text.to_string(), end));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_hold_are_suppressed() {
        let mut d = Dedup::new(10.0);
        assert!(d.admit("a dog barks", 4.0));
        assert!(!d.admit("a dog barks", 6.0));
        assert!(!d.admit("a dog barks", 13.9));
        assert!(d.admit("a dog barks", 14.0));
        assert!(d.admit("rain falls", 15.0));
        assert!(d.admit("a dog barks", 16.0));
    }

    #[test]
    fn zero_hold_publishes_everything() {
        let mut d = Dedup::new(0.0);
        assert!(d.admit("x", 1.0));
        assert!(d.admit("x", 1.0));
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
