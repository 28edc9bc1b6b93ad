//! `hark caption` on the audio files users have: the shipped demo clip re-encoded by sox and
//! lame into the formats symphonia decodes (lossless ones captioned word for word like the
//! WAV, lossy ones hearing the same sounds), a file on standard input, and bad files among
//! good ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hark_e2e::{hark, hark_bin, repo_root};

fn demo() -> PathBuf {
    repo_root().join("daemon/assets/demo.wav")
}

/// Runs an encoder, which must succeed.
fn encode(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (the test command installs sox, libsox-fmt-mp3 and lame)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The captions `hark caption` prints for `file`, one per window, and its stderr.
fn captions(file: &Path) -> (Vec<String>, String) {
    let out = hark(&["caption", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}: {err}", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    // "FILE [0.0-10.0s] caption  [tags]": the caption without the file name and tags.
    let lines = text
        .lines()
        .map(|l| {
            let after = l.split_once("s] ").map_or(l, |(_, rest)| rest);
            after.split("  [").next().unwrap().to_string()
        })
        .collect();
    (lines, err)
}

#[test]
fn the_same_clip_in_every_common_format_gets_the_same_caption() {
    let dir = tempfile::tempdir().unwrap();
    let wav = demo();
    let w = wav.to_str().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    encode("sox", &[w, "-e", "mu-law", &at("mulaw.wav")]);
    encode("sox", &[w, "-e", "a-law", &at("alaw.wav")]);
    encode("sox", &[w, "-b", "24", &at("24bit.wav")]);
    encode("sox", &[w, "-C", "10", &at("clip.ogg")]);
    encode("sox", &[w, &at("clip.flac")]);
    // lame writes the encoder delay into the file, which a gapless decoder cuts.
    encode("lame", &["--quiet", "-b", "192", w, &at("clip.mp3")]);
    let (reference, err) = captions(&wav);
    assert_eq!(reference.len(), 1, "{reference:?}");
    // Quiet by default: the captions on stdout, nothing on stderr.
    assert_eq!(err, "", "hark caption wrote to stderr");
    // Lossless: the same samples, the same caption.
    for name in ["24bit.wav", "clip.flac"] {
        let (got, err) = captions(Path::new(&at(name)));
        assert_eq!(got, reference, "{name}: {err}");
    }
    // Lossy (8-bit companding, Vorbis, MP3): the codec's noise may change a word of the
    // caption, never what it hears: the rain and the hen, in one window.
    for name in ["mulaw.wav", "alaw.wav", "clip.ogg", "clip.mp3"] {
        let (got, err) = captions(Path::new(&at(name)));
        assert_eq!(got.len(), 1, "{name}: {got:?} {err}");
        assert!(
            got[0].contains("rain") && (got[0].contains("chicken") || got[0].contains("hen")),
            "{name}: {got:?} (the WAV: {reference:?})"
        );
    }
    // The same OGG through standard input.
    let ogg = std::fs::File::open(at("clip.ogg")).unwrap();
    let out = Command::new(hark_bin())
        .args(["caption", "-"])
        .stdin(Stdio::from(ogg))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (file, _) = captions(Path::new(&at("clip.ogg")));
    assert!(
        text.starts_with("standard input [0.0-10.0s] ") && text.contains(&file[0]),
        "{text}"
    );
}

#[test]
fn a_bad_file_among_good_ones_is_named_and_the_good_ones_are_captioned() {
    let dir = tempfile::tempdir().unwrap();
    let wav = demo().display().to_string();
    let junk = dir.path().join("notes.wav");
    std::fs::write(&junk, b"this is not audio").unwrap();
    let opus = dir.path().join("voice.opus");
    std::fs::write(&opus, opus_file()).unwrap();
    let missing = dir.path().join("missing.flac");
    let out = hark(&[
        "caption",
        &wav,
        junk.to_str().unwrap(),
        missing.to_str().unwrap(),
        &wav,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "both good files captioned: {text}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].contains("notes.wav: not an audio file hark can read") && lines[0].contains("MP3"),
        "{err}"
    );
    assert!(
        lines[1].contains("missing.flac") && lines[1].contains("No such file"),
        "{err}"
    );
    assert!(lines[2].contains("2 of 4 file(s)"), "{err}");

    let out = hark(&["caption", opus.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("voice.opus: an Ogg file with Opus audio") && err.contains("convert it"),
        "{err}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_captioning_without_a_panic() {
    // `hark caption … | head -n 1`: the pipe closes after the first line.
    let wav = demo().display().to_string();
    let mut child = Command::new(hark_bin())
        .args(["caption", &wav, &wav, &wav])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}

#[test]
fn run_refuses_seconds_for_a_source_that_ends_by_itself() {
    let out = hark(&["run", "--file", demo().to_str().unwrap(), "--seconds", "3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--seconds 3") && err.contains("microphone"),
        "{err}"
    );
}

/// A minimal Ogg Opus file: identification header, comment header and one silent 20 ms frame,
/// each on its own page — Opus, a codec symphonia has no decoder for.
fn opus_file() -> Vec<u8> {
    let mut file = ogg_page(0, 2, 0, b"OpusHead\x01\x01\x38\x01\x80\x3e\0\0\0\0\0");
    file.extend(ogg_page(1, 0, 0, b"OpusTags\0\0\0\0\0\0\0\0"));
    file.extend(ogg_page(2, 4, 960, &[0xF8, 0xFF, 0xFE]));
    file
}

/// One Ogg page holding one packet, CRC included.
fn ogg_page(sequence: u32, header_type: u8, granule: u64, packet: &[u8]) -> Vec<u8> {
    let mut page = b"OggS\0".to_vec();
    page.push(header_type);
    page.extend(granule.to_le_bytes());
    page.extend(1u32.to_le_bytes()); // stream serial
    page.extend(sequence.to_le_bytes());
    page.extend(0u32.to_le_bytes()); // CRC, filled in below
    page.extend([1, packet.len() as u8]);
    page.extend(packet);
    // Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial 0.
    let mut crc = 0u32;
    for &b in &page {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}
