//! The targets under a mutation fuzzer on stable Rust, part of the test command: it starts
//! from the seeds in `daemon/fuzz/corpus/<target>/`, applies byte and token mutations, and
//! fails on the first input that makes a parser panic. The input is saved under
//! `$CARGO_TARGET_DIR/fuzz-crashes/` for a regression seed. Not coverage-guided: that is
//! cargo-fuzz's job (daemon/fuzz/, nightly).
//!
//! `HARK_FUZZ_SECONDS` sets the time per target (default 2; docs/RELIABILITY.md has the
//! ten-minute command).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic per target and run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that parsers treat specially: delimiters, extreme numbers, odd characters.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"'",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"=",
    b",",
    b":",
    b".",
    b"\n",
    b"\\",
    b"0",
    b"-1",
    b"1e309",
    b"-1e309",
    b"nan",
    b"inf",
    b"-0.0",
    b"4294967296",
    b"18446744073709551616",
    b"99999999999",
    b"true",
    b"null",
    b"\0",
    b"\xff\xfe",
    b"\xe2\x80\xae",
    b"+",
    b"#",
    b"/",
    b"$SYS",
    b"../../",
    b"\"\"\"",
    b"RIFF",
    b"fLaC",
    b"data",
    b"fmt ",
    b"\xff\xff\xff\xff",
    b"\0\0\0\0",
    b"\x01\0",
    b"\x10\0\0\0",
];

/// One to eight random edits of `input`, sometimes spliced with `other`.
fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            3 if at < v.len() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            4 if at < v.len() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                let copy = v[at..end].to_vec();
                v.splice(at..at, copy);
            }
            5 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(64)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            6 => v.truncate(at),
            _ => {
                // A little-endian integer field set to an edge value (headers, chunk sizes).
                if v.len() >= 4 {
                    let i = rng.below(v.len() - 3);
                    let edge = [0u32, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000][rng.below(5)];
                    v[i..i + 4].copy_from_slice(&edge.to_le_bytes());
                }
            }
        }
    }
    v
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Runs the target on mutations of its seeds for the time budget; panics (with the input
/// saved) if it ever panics. Returns the number of inputs tried.
fn fuzz(target: &str) -> u64 {
    let mut parse = super::target(target);
    let seconds: f64 = std::env::var("HARK_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let seeds = corpus(target);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ target.len() as u64 ^ u64::from(std::process::id()));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tried = 0u64;
    // Quiet: a caught panic is reported once below, not printed for every input.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut crash = None;
    while Instant::now() < deadline {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let input = if tried < seeds.len() as u64 {
            seeds[tried as usize].clone()
        } else {
            mutate(seed, other, &mut rng)
        };
        tried += 1;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&input)));
        if let Err(payload) = outcome {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            crash = Some((input, message));
            break;
        }
    }
    std::panic::set_hook(hook);
    if let Some((input, message)) = crash {
        let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or("target".into()))
            .join("fuzz-crashes");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{target}-{tried}"));
        std::fs::write(&path, &input).unwrap();
        panic!(
            "fuzz target {target}: input {tried} panicked: {message}; saved as {}",
            path.display()
        );
    }
    eprintln!("fuzz target {target}: {tried} inputs in {seconds} s, no panic");
    tried
}

#[test]
fn fuzz_set_commands() {
    fuzz("command");
}

#[test]
fn fuzz_config_files() {
    fuzz("config");
}

#[test]
fn fuzz_bundle_manifests() {
    fuzz("manifest");
}

#[test]
fn fuzz_audio_files() {
    fuzz("audio");
}

#[test]
fn fuzz_trigger_phrases() {
    fuzz("phrase");
}
