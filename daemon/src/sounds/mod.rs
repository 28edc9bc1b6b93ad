//! Learned sounds ("this is our doorbell"): a profile per sound in hark's state directory
//! (the examples' embeddings, never audio), and the detectors built from them for one
//! bundle. A detector is a logistic probe of its examples against the bundle's negatives
//! ([`probe`]); it fires on a window whose score reaches the profile's threshold, by default
//! the bundle's for that many examples (docs/SOUNDS.md).

pub mod probe;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::model::bundle::{Bundle, SoundReference};
use probe::Probe;

/// Most examples one sound keeps (the newest win).
pub const MAX_EXAMPLES: usize = 32;
/// Most learned sounds one state directory holds.
pub const MAX_SOUNDS: usize = 32;

/// A learned sound as stored in `<dir>/<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Its name: the MQTT topic level `sound/<name>`.
    pub name: String,
    /// The bundle whose encoder made the embeddings (its name, for messages).
    pub bundle: String,
    /// That encoder graph's sha256: embeddings of another encoder do not compare.
    pub encoder_sha256: String,
    /// Each example's sound embedding.
    pub examples: Vec<Vec<f32>>,
    /// Where each example came from ("doorbell.wav 0.0-10.0 s", "the window at …").
    pub sources: Vec<String>,
    /// The user's threshold (0..1); none: the bundle's for this many examples.
    pub threshold: Option<f32>,
}

/// Checks a sound's name: 1-32 characters of `a-z`, `0-9`, `_` and `-`, starting with a
/// letter or digit (it becomes an MQTT topic level and a Home Assistant id).
pub fn check_name(name: &str) -> Result<()> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        let shown: String = name.chars().take(40).collect();
        bail!(
            "sound name {shown:?}: use 1-32 characters of a-z, 0-9, '_' and '-', starting with a letter or digit (e.g. \"doorbell\")"
        );
    }
    Ok(())
}

/// The sha256 of a bundle's encoder graph, as its manifest records it.
pub fn encoder_sha256(bundle: &Bundle) -> String {
    let m = &bundle.manifest;
    m.files.get(&m.encoder.file).cloned().unwrap_or_default()
}

/// The reference of a bundle that can learn sounds, or an error saying it cannot.
pub fn reference(bundle: &Bundle) -> Result<&SoundReference> {
    bundle.sounds.as_ref().with_context(|| {
        format!(
            "the model {} cannot learn sounds: its bundle has no [sounds] (bundles from \
             hark-export --sounds with a CED encoder have; the light YAMNet bundle has not)",
            bundle.manifest.name
        )
    })
}

impl Profile {
    /// A profile called `name` of `bundle`'s encoder, without examples yet.
    pub fn new(name: &str, bundle: &Bundle) -> Self {
        Self {
            name: name.to_string(),
            bundle: bundle.manifest.name.clone(),
            encoder_sha256: encoder_sha256(bundle),
            examples: Vec::new(),
            sources: Vec::new(),
            threshold: None,
        }
    }

    /// Checks that the profile was made by `bundle`'s encoder and holds usable examples.
    pub fn check(&self, bundle: &Bundle) -> Result<()> {
        check_name(&self.name)?;
        if self.encoder_sha256 != encoder_sha256(bundle) {
            bail!(
                "it was learned with the model {} and this hark uses {}: embeddings of another \
                 encoder do not compare; learn it again from its recordings (hark learn {} FILE…)",
                self.bundle,
                bundle.manifest.name,
                self.name
            );
        }
        let dim = reference(bundle)?.mean.len();
        if self.examples.is_empty() || self.examples.len() > MAX_EXAMPLES {
            bail!(
                "it holds {} examples (1-{MAX_EXAMPLES})",
                self.examples.len()
            );
        }
        if self
            .examples
            .iter()
            .any(|e| e.len() != dim || e.iter().any(|v| !v.is_finite()))
        {
            bail!("an example is not {dim} finite numbers");
        }
        if let Some(t) = self.threshold
            && !(t > 0.0 && t < 1.0)
        {
            bail!("threshold {t} is not in (0, 1)");
        }
        Ok(())
    }

    /// The threshold it fires at: the user's, else the bundle's for its example count.
    pub fn threshold(&self, reference: &SoundReference) -> f32 {
        self.threshold
            .unwrap_or_else(|| reference.threshold(self.examples.len()))
    }
}

/// The folder of learned sounds: `dir` if given (config `sounds.dir`), else
/// `$STATE_DIRECTORY/sounds` (systemd's `StateDirectory=`, /var/lib/hark for the service),
/// else `$XDG_STATE_HOME/hark/sounds`, else `~/.local/state/hark/sounds`.
pub fn default_dir(dir: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d.to_path_buf());
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(state) = var("STATE_DIRECTORY") {
        // systemd may list several, colon-separated: the first is hark's.
        let first = state
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        return Ok(PathBuf::from(first).join("sounds"));
    }
    if let Some(xdg) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(xdg).join("hark/sounds"));
    }
    let home = var("HOME")
        .context("no folder for learned sounds: set sounds.dir in the configuration (or HOME)")?;
    Ok(PathBuf::from(home).join(".local/state/hark/sounds"))
}

/// The learned sounds' folder.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir` (created when a sound is first saved).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The store a configuration names (`sounds.dir`, else [`default_dir`]).
    pub fn of(cfg: &crate::config::SoundsConfig) -> Result<Self> {
        Ok(Self::new(default_dir(cfg.dir.as_deref())?))
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every stored profile by name, each read or the reason it cannot be, by name.
    pub fn all(&self) -> Result<Vec<(String, Result<Profile>)>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot list {}", self.dir.display()));
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").map(str::to_string)
            })
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .map(|n| {
                let p = self.read(&n);
                (n, p)
            })
            .collect())
    }

    /// The profile called `name`.
    pub fn read(&self, name: &str) -> Result<Profile> {
        check_name(name)?;
        let path = self.path(name);
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "no learned sound {name:?} in {} (hark sounds list shows them)",
                    self.dir.display()
                )
            }
            r => r.with_context(|| format!("cannot read {}", path.display()))?,
        };
        let p: Profile = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a learned sound's profile (edited or cut short?): forget it and learn it again",
                path.display()
            )
        })?;
        if p.name != name {
            bail!(
                "{} holds the sound {:?}, not {name:?}",
                path.display(),
                p.name
            );
        }
        Ok(p)
    }

    /// The profile called `name` to add examples to: the stored one, checked against
    /// `bundle`, or a new one when there is none.
    pub fn read_or_new(&self, name: &str, bundle: &Bundle) -> Result<Profile> {
        check_name(name)?;
        if !self.path(name).exists() {
            return Ok(Profile::new(name, bundle));
        }
        let p = self.read(name)?;
        p.check(bundle)
            .with_context(|| format!("the learned sound {name:?} cannot take more examples"))?;
        Ok(p)
    }

    /// Adds `examples` (embedding, where it came from) to the profile called `name` (to a new
    /// one with `replace`), keeps the newest `MAX_EXAMPLES`, saves it and returns it.
    pub fn add(
        &self,
        name: &str,
        bundle: &Bundle,
        examples: Vec<(Vec<f32>, String)>,
        replace: bool,
    ) -> Result<Profile> {
        let mut profile = if replace {
            check_name(name)?;
            Profile::new(name, bundle)
        } else {
            self.read_or_new(name, bundle)?
        };
        for (e, source) in examples {
            profile.examples.push(e);
            profile.sources.push(source);
        }
        let extra = profile.examples.len().saturating_sub(MAX_EXAMPLES);
        profile.examples.drain(..extra);
        profile.sources.drain(..extra);
        self.save(&profile)?;
        Ok(profile)
    }

    /// Writes `profile` (replacing one of the same name) atomically.
    pub fn save(&self, profile: &Profile) -> Result<()> {
        check_name(&profile.name)?;
        let exists = self.path(&profile.name).is_file();
        if !exists && self.all()?.len() >= MAX_SOUNDS {
            bail!(
                "{} already holds {MAX_SOUNDS} learned sounds, the most hark keeps: forget one first",
                self.dir.display()
            );
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.path(&profile.name);
        let tmp = self.dir.join(format!(".{}.json.tmp", profile.name));
        std::fs::write(&tmp, serde_json::to_string_pretty(profile)? + "\n")
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Removes the profile called `name`, readable or not.
    pub fn forget(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no learned sound {name:?} in {} (hark sounds list shows them)",
                self.dir.display()
            ),
            r => r.with_context(|| format!("cannot remove {}", path.display())),
        }
    }
}

/// A learned sound ready to score windows.
pub struct Detector {
    /// Its name.
    pub name: String,
    /// The score it fires at.
    pub threshold: f32,
    probe: Probe,
}

/// A learned sound's score on one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoundScore {
    /// The sound's name.
    pub sound: String,
    /// Its score, 0..1.
    pub score: f32,
    /// The score it fires at.
    pub threshold: f32,
    /// Whether the score reaches the threshold.
    pub fired: bool,
}

/// A learned sound heard in a window: the payload of `hark/<device>/sound/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detected {
    /// Payload version.
    pub v: u32,
    /// The sound's name.
    pub sound: String,
    /// Its score on the window, 0..1.
    pub score: f32,
    /// The score it fires at.
    pub threshold: f32,
    /// The window's published caption.
    pub caption: String,
    /// Window start, RFC 3339.
    pub start: String,
    /// Window end, RFC 3339.
    pub end: String,
}

/// The answer to a `learn` command: the payload of `hark/<device>/learned`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Learned {
    /// Payload version.
    pub v: u32,
    /// The sound's name.
    pub sound: String,
    /// Its examples now.
    pub examples: usize,
    /// Windows this command added.
    pub added: usize,
    /// The score it fires at now.
    pub threshold: f32,
    /// Start of the earliest window taken, RFC 3339.
    pub start: String,
    /// End of the latest, RFC 3339.
    pub end: String,
    /// Every sound now loaded (for Home Assistant's entities; not published).
    #[serde(skip)]
    pub loaded: Vec<String>,
}

/// The detectors of one bundle.
#[derive(Default)]
pub struct Sounds {
    reference: Option<SoundReference>,
    detectors: Vec<Detector>,
}

impl Sounds {
    /// Detectors for `profiles` under `bundle`; a profile that does not fit the bundle is
    /// left out and named in the returned messages, the others still load.
    pub fn build(bundle: &Bundle, profiles: Vec<(String, Result<Profile>)>) -> (Self, Vec<String>) {
        let mut problems = Vec::new();
        let Some(reference) = bundle.sounds.clone() else {
            if !profiles.is_empty() {
                problems.push(format!("{:#}", reference(bundle).unwrap_err()));
            }
            return (Self::default(), problems);
        };
        let mut detectors = Vec::new();
        for (name, profile) in profiles {
            match profile.and_then(|p| p.check(bundle).map(|()| p)) {
                Ok(p) => detectors.push(Detector {
                    threshold: p.threshold(&reference),
                    probe: Probe::fit(&reference, &p.examples),
                    name: p.name,
                }),
                Err(e) => problems.push(format!("learned sound {name:?} not loaded: {e:#}")),
            }
        }
        let sounds = Self {
            reference: Some(reference),
            detectors,
        };
        (sounds, problems)
    }

    /// Whether any sound is loaded.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// The loaded sounds.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// The loaded sounds' names.
    pub fn names(&self) -> Vec<String> {
        self.detectors.iter().map(|d| d.name.clone()).collect()
    }

    /// Every sound's score on a window of this embedding.
    pub fn score(&self, embedding: &[f32]) -> Vec<SoundScore> {
        let Some(r) = &self.reference else {
            return Vec::new();
        };
        self.detectors
            .iter()
            .map(|d| {
                let score = d.probe.score(r, embedding);
                SoundScore {
                    sound: d.name.clone(),
                    score,
                    threshold: d.threshold,
                    fired: score >= d.threshold,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        let mut b = crate::model::bundle::testing::bundle(&["<pad>"], "", vec![]);
        b.manifest.files.insert("e.onnx".into(), "abc".into());
        b.sounds = Some(SoundReference {
            mean: vec![0.0, 0.0],
            parts: 1,
            negatives: vec![vec![-1.0, 0.0], vec![0.0, 1.0], vec![0.0, -1.0]],
            probe_l2: 0.01,
            thresholds: vec![(1, 0.8), (3, 0.6)],
        });
        b
    }

    fn profile(name: &str, examples: Vec<Vec<f32>>) -> Profile {
        Profile {
            name: name.into(),
            bundle: "t".into(),
            encoder_sha256: "abc".into(),
            examples,
            sources: vec![],
            threshold: None,
        }
    }

    #[test]
    fn names_become_topic_levels_so_only_plain_ones_pass() {
        for ok in ["doorbell", "washer-end", "dog_2", "1st"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "Door", "a/b", "a b", "-x", "+", "#", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_threshold_follows_the_number_of_examples_unless_set() {
        let r = bundle().sounds.unwrap();
        assert_eq!(profile("a", vec![vec![1.0, 0.0]]).threshold(&r), 0.8);
        assert_eq!(profile("a", vec![vec![1.0, 0.0]; 2]).threshold(&r), 0.8);
        assert_eq!(profile("a", vec![vec![1.0, 0.0]; 5]).threshold(&r), 0.6);
        let mut p = profile("a", vec![vec![1.0, 0.0]]);
        p.threshold = Some(0.3);
        assert_eq!(p.threshold(&r), 0.3);
    }

    #[test]
    fn a_bad_profile_is_named_and_the_others_still_load() {
        let b = bundle();
        let mut other = profile("other", vec![vec![1.0, 0.0]]);
        other.encoder_sha256 = "def".into();
        let nan = profile("nan", vec![vec![f32::NAN, 0.0]]);
        let short = profile("short", vec![vec![1.0]]);
        let (sounds, problems) = Sounds::build(
            &b,
            vec![
                ("bell".into(), Ok(profile("bell", vec![vec![1.0, 0.1]]))),
                ("other".into(), Ok(other)),
                ("nan".into(), Ok(nan)),
                ("short".into(), Ok(short)),
                ("cut".into(), Err(anyhow::anyhow!("not a profile"))),
            ],
        );
        let names: Vec<&str> = sounds.detectors().iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["bell"]);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("learn it again"), "{}", problems[0]);
        assert!(problems[1].contains("finite"), "{}", problems[1]);
        let fired = sounds.score(&[0.9, 0.0]);
        assert!(fired[0].fired, "{fired:?}");
        assert!(!sounds.score(&[-1.0, 0.2])[0].fired);
    }

    #[test]
    fn profiles_round_trip_through_the_store_and_damage_is_reported() {
        let dir = std::env::temp_dir().join(format!("hark-sounds-{}", std::process::id()));
        let store = Store::new(dir.join("sounds"));
        assert!(store.all().unwrap().is_empty());
        let p = profile("bell", vec![vec![1.0, 0.5]]);
        store.save(&p).unwrap();
        assert_eq!(store.read("bell").unwrap(), p);
        std::fs::write(dir.join("sounds/cut.json"), "{\"name\": \"cu").unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.len(), 2);
        let err = format!(
            "{:#}",
            all.iter()
                .find(|(n, _)| n == "cut")
                .unwrap()
                .1
                .as_ref()
                .unwrap_err()
        );
        assert!(
            err.contains("cut.json") && err.contains("learn it again"),
            "{err}"
        );
        let err = store.read("nope").unwrap_err().to_string();
        assert!(err.contains("no learned sound \"nope\""), "{err}");
        store.forget("bell").unwrap();
        assert!(store.read("bell").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
