//! The speech gate: what leaves the device for a window in which people are speaking
//! (`[privacy] speech`, docs/PRIVACY.md). Pure logic on a finished caption; whether a window
//! holds speech is the model's own speech tag (`TagConfig::speech`).

use crate::config::SpeechPolicy;
use crate::model::{Alternative, Tag};

/// The only text published for a speech window under `redact`.
pub const REDACTED: &str = "people are talking";

/// What the gate decided for one window.
#[derive(Debug, PartialEq)]
pub enum Gate {
    /// Publish (possibly redacted): the text, alternatives and tags to send.
    Publish {
        text: String,
        alternatives: Vec<Alternative>,
        tags: Vec<Tag>,
        redacted: bool,
    },
    /// Publish nothing.
    Drop,
}

/// Whether a tag label names speech: hark's `speech` and AudioSet's speech classes
/// (speech, conversation, narration, babbling, whispering, speech synthesizer, chatter).
pub fn is_speech_label(label: &str) -> bool {
    let l = label.to_ascii_lowercase();
    [
        "speech",
        "speaking",
        "conversation",
        "narration",
        "babbling",
        "whispering",
        "chatter",
    ]
    .iter()
    .any(|w| l.contains(w))
}

impl SpeechPolicy {
    /// Applies the policy to a window's caption; `speech` is the model's verdict (None: the
    /// model cannot tell, and the caption goes out as it is).
    pub fn gate(
        self,
        speech: Option<bool>,
        text: String,
        alternatives: Vec<Alternative>,
        mut tags: Vec<Tag>,
    ) -> Gate {
        match (speech, self) {
            (Some(true), Self::Drop) => Gate::Drop,
            (Some(true), Self::Redact) => {
                tags.retain(|t| !is_speech_label(&t.label));
                Gate::Publish {
                    text: REDACTED.to_string(),
                    alternatives: Vec::new(),
                    tags,
                    redacted: true,
                }
            }
            _ => Gate::Publish {
                text,
                alternatives,
                tags,
                redacted: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(label: &str, source: &str) -> Tag {
        Tag {
            label: label.into(),
            score: 0.9,
            source: source.into(),
        }
    }

    fn window() -> (String, Vec<Alternative>, Vec<Tag>) {
        let alternatives = vec![Alternative {
            text: "a woman says hello to the dog".into(),
            score: -1.0,
        }];
        let tags = vec![
            tag("speech", "hark"),
            tag("dog", "hark"),
            tag("Female speech, woman speaking", "audioset"),
            tag("Conversation", "audioset"),
            tag("Bark", "audioset"),
        ];
        (
            "a man says good morning while a dog barks".into(),
            alternatives,
            tags,
        )
    }

    #[test]
    fn redact_keeps_only_the_fixed_phrase_and_the_tags_that_are_not_speech() {
        let (text, alternatives, tags) = window();
        let Gate::Publish {
            text,
            alternatives,
            tags,
            redacted,
        } = SpeechPolicy::Redact.gate(Some(true), text, alternatives, tags)
        else {
            panic!("redact publishes")
        };
        assert_eq!(text, REDACTED);
        assert!(alternatives.is_empty() && redacted);
        let labels: Vec<&str> = tags.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["dog", "Bark"]);
    }

    #[test]
    fn drop_publishes_nothing_and_caption_publishes_everything() {
        let (text, alternatives, tags) = window();
        assert_eq!(
            SpeechPolicy::Drop.gate(Some(true), text.clone(), alternatives.clone(), tags.clone()),
            Gate::Drop
        );
        let Gate::Publish {
            text: t, tags: g, ..
        } = SpeechPolicy::Caption.gate(Some(true), text.clone(), alternatives, tags.clone())
        else {
            panic!("caption publishes")
        };
        assert_eq!((t, g), (text, tags));
    }

    #[test]
    fn windows_without_speech_or_without_a_verdict_go_out_unchanged() {
        for speech in [Some(false), None] {
            let (text, alternatives, tags) = window();
            let Gate::Publish {
                text: t, redacted, ..
            } = SpeechPolicy::Drop.gate(speech, text.clone(), alternatives, tags)
            else {
                panic!("no speech: published")
            };
            assert_eq!(t, text);
            assert!(!redacted);
        }
    }

    #[test]
    fn speech_labels_are_recognised_and_others_are_not() {
        for l in [
            "speech",
            "Speech",
            "Male speech, man speaking",
            "Narration, monologue",
            "Speech synthesizer",
            "Whispering",
            "Babbling",
            "Chatter",
        ] {
            assert!(is_speech_label(l), "{l}");
        }
        for l in ["dog", "Bark", "Laughter", "Crowd", "Music", "Singing"] {
            assert!(!is_speech_label(l), "{l}");
        }
    }
}
