//! The speech gate: what leaves the device for a window in which people are speaking
//! (`[privacy] speech`, docs/PRIVACY.md). Pure logic on everything a window would publish —
//! caption, score, alternatives, tags and fired triggers — so no path around it exists;
//! whether a window holds speech is the model's own speech tag (`TagConfig::speech`).

use crate::config::SpeechPolicy;
use crate::model::{Alternative, Tag};

/// The only text published for a speech window under `redact`.
pub const REDACTED: &str = "people are talking";

/// A finding the gate keeps or drops by whether it is about people speaking: a fired trigger
/// (`triggers::Hit`), which knows this from all of its phrases.
pub trait AboutPeople {
    /// Whether it says something about people speaking.
    fn about_people(&self) -> bool;
}

/// Everything published about one window, before the gate; `H` is a fired trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings<H> {
    /// The caption.
    pub text: String,
    /// Its length-normalised log-probability (None once redacted: it would score the
    /// hidden caption).
    pub score: Option<f32>,
    /// Other captions.
    pub alternatives: Vec<Alternative>,
    /// Tags over their thresholds.
    pub tags: Vec<Tag>,
    /// Triggers that reached their thresholds.
    pub hits: Vec<H>,
}

/// What the gate decided for one window.
#[derive(Debug, PartialEq)]
pub enum Gate<H> {
    /// Publish these findings (redacted when `redacted`).
    Publish {
        /// What may be published.
        findings: Findings<H>,
        /// Whether the gate replaced the caption.
        redacted: bool,
    },
    /// Publish nothing.
    Drop,
}

/// Words that name speech or a way of speaking, matched as word starts ("speaks",
/// "talking", "says", "chatter", "murmurs", "Narration"), and words that name a person who
/// could be the speaker, matched whole ("a man", "someone", "Female speech").
const SPEAKING: [&str; 23] = [
    "speech",
    "speak",
    "spoke",
    "talk",
    "say",
    "said",
    "chat",
    "convers",
    "whisper",
    "narrat",
    "monolog",
    "babbl",
    "murmur",
    "mumbl",
    "announc",
    "voice",
    "word",
    "instruction",
    "yell",
    "shout",
    "sing",
    "sang",
    "humm",
];
const PERSONS: [&str; 33] = [
    "man", "men", "woman", "women", "male", "female", "boy", "boys", "girl", "girls", "child",
    "children", "kid", "kids", "person", "persons", "people", "someone", "somebody", "anyone",
    "anybody", "everyone", "guy", "guys", "lady", "ladies", "he", "she", "his", "her", "him",
    "adult", "adults",
];

/// Whether a tag label or a trigger phrase is about people speaking: it names speech, a way
/// of speaking or singing, or a person (who could be the speaker). Under `redact` such tags
/// and triggers say nothing about a speech window; "a dog barks" or `Bark` still do.
pub fn about_people(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .any(|w| SPEAKING.iter().any(|s| w.starts_with(s)) || PERSONS.contains(&w.as_str()))
}

impl SpeechPolicy {
    /// Applies the policy to a window's findings; `speech` is the model's verdict (None: the
    /// model cannot tell, and the findings go out as they are).
    pub fn gate<H: AboutPeople>(self, speech: Option<bool>, mut findings: Findings<H>) -> Gate<H> {
        match (speech, self) {
            (Some(true), Self::Drop) => Gate::Drop,
            (Some(true), Self::Redact) => {
                findings.tags.retain(|t| !about_people(&t.label));
                findings.hits.retain(|h| !h.about_people());
                Gate::Publish {
                    findings: Findings {
                        text: REDACTED.to_string(),
                        score: None,
                        alternatives: Vec::new(),
                        ..findings
                    },
                    redacted: true,
                }
            }
            _ => Gate::Publish {
                findings,
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

    /// A fired trigger of one phrase.
    #[derive(Debug, Clone, PartialEq)]
    struct Hit {
        trigger: String,
        phrase: String,
    }

    impl AboutPeople for Hit {
        fn about_people(&self) -> bool {
            about_people(&self.phrase)
        }
    }

    fn hit(trigger: &str, phrase: &str) -> Hit {
        Hit {
            trigger: trigger.into(),
            phrase: phrase.into(),
        }
    }

    fn window() -> Findings<Hit> {
        Findings {
            text: "a man says good morning while a dog barks".into(),
            score: Some(-0.8),
            alternatives: vec![Alternative {
                text: "a woman says hello to the dog".into(),
                score: -1.0,
            }],
            tags: vec![
                tag("speech", "hark"),
                tag("dog", "hark"),
                tag("Female speech, woman speaking", "audioset"),
                tag("Conversation", "audioset"),
                tag("Male singing", "audioset"),
                tag("Bark", "audioset"),
            ],
            hits: vec![
                hit("w", "a woman speaks"),
                hit("m", "a man says something"),
                hit("dog", "a dog barks"),
            ],
        }
    }

    #[test]
    fn redact_keeps_only_the_fixed_phrase_and_what_is_not_about_people() {
        let Gate::Publish { findings, redacted } = SpeechPolicy::Redact.gate(Some(true), window())
        else {
            panic!("redact publishes")
        };
        assert!(redacted);
        assert_eq!(findings.text, REDACTED);
        assert_eq!(
            findings.score, None,
            "the hidden caption's score would leak"
        );
        assert!(findings.alternatives.is_empty());
        let labels: Vec<&str> = findings.tags.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["dog", "Bark"]);
        let triggers: Vec<&str> = findings.hits.iter().map(|h| h.trigger.as_str()).collect();
        assert_eq!(triggers, ["dog"]);
    }

    #[test]
    fn drop_publishes_nothing_and_caption_publishes_everything() {
        assert_eq!(SpeechPolicy::Drop.gate(Some(true), window()), Gate::Drop);
        assert_eq!(
            SpeechPolicy::Caption.gate(Some(true), window()),
            Gate::Publish {
                findings: window(),
                redacted: false
            }
        );
    }

    #[test]
    fn windows_without_speech_or_without_a_verdict_go_out_unchanged() {
        for speech in [Some(false), None] {
            for policy in [SpeechPolicy::Drop, SpeechPolicy::Redact] {
                assert_eq!(
                    policy.gate(speech, window()),
                    Gate::Publish {
                        findings: window(),
                        redacted: false
                    }
                );
            }
        }
    }

    #[test]
    fn phrases_and_labels_about_people_speaking_are_recognised_and_others_are_not() {
        for t in [
            // The probe's triggers and paraphrases of them.
            "a woman speaks",
            "a man speaks",
            "someone talking",
            "a man says something",
            "people chatting",
            "a voice",
            "a person whispers",
            "an announcer gives instructions",
            "a crowd murmurs",
            "a girl sings",
            "she laughs",
            // Tag labels.
            "speech",
            "Speech",
            "Male speech, man speaking",
            "Narration, monologue",
            "Speech synthesizer",
            "Whispering",
            "Babbling",
            "Chatter",
            "Child singing",
            "Human voice",
        ] {
            assert!(about_people(t), "{t}");
        }
        for t in [
            "a dog barks",
            "glass breaks",
            "a baby cries",
            "a crowd cheers",
            "an owl calls",
            "Bark",
            "Laughter",
            "Crowd",
            "Music",
            "Screaming",
            "manhole",
            "Hammer",
            "the ocean",
        ] {
            assert!(!about_people(t), "{t}");
        }
    }
}
