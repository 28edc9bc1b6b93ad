//! The deployment files: systemd/hark.service passes `systemd-analyze verify` and scores an
//! exposure of at most 2.0 in `systemd-analyze security`, and every board profile in
//! firmware-config/ passes `hark check-config`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hark_e2e::{hark, hark_bin, repo_root};

const EXEC_START: &str = "ExecStart=/usr/bin/hark run -c /etc/hark/hark.toml";

/// Runs `systemd-analyze args…`; None when it is not installed (scripts/test.sh installs it).
fn systemd_analyze(args: &[&str]) -> Option<Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    }
}

/// The unit, copied into `dir` with ExecStart pointing at the built binary: both analyses
/// need the program to exist, and /usr/bin/hark is not there on a build machine.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repo_root().join("systemd/hark.service")).unwrap();
    assert!(
        unit.lines().any(|l| l == EXEC_START),
        "systemd/hark.service must run `{EXEC_START}`"
    );
    let path = dir.join("hark.service");
    let exec = format!(
        "ExecStart={} run -c /etc/hark/hark.toml",
        hark_bin().display()
    );
    std::fs::write(&path, unit.replace(EXEC_START, &exec)).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let Some(version) = systemd_analyze(&["--version"]) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: systemd-analyze is not installed (apt-get install systemd); this check must run"
        );
        eprintln!(
            "SKIPPED systemd_unit_verifies_and_is_hardened: systemd-analyze is not installed \
             (apt-get install systemd)"
        );
        return;
    };
    eprintln!(
        "{}",
        text(&version.stdout).lines().next().unwrap_or_default()
    );
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let unit = unit.to_str().unwrap();

    // verify exits 0 on unknown keys and unparsable values, only warning on stderr: any line
    // about our unit fails the test (lines about the host's own units are not ours to fix).
    let verify = systemd_analyze(&["verify", unit]).unwrap();
    let warnings = text(&verify.stderr);
    let ours: Vec<&str> = warnings
        .lines()
        .filter(|l| l.contains("hark.service"))
        .collect();
    assert!(
        verify.status.success() && ours.is_empty(),
        "systemd-analyze verify: {warnings}"
    );

    // --threshold is in tenths: 20 = an exposure of 2.0.
    let security =
        systemd_analyze(&["security", "--offline=true", "--threshold=20", unit]).unwrap();
    let report = text(&security.stdout);
    let exposure: f32 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for hark.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}{}", text(&security.stderr)));
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(
        security.status.success() && exposure <= 2.0,
        "exposure {exposure} > 2.0:\n{report}"
    );
}

#[test]
fn every_board_profile_passes_check_config() {
    let dir = repo_root().join("firmware-config");
    let mut profiles: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    profiles.sort();
    let names: Vec<String> = profiles
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "generic-x86.toml",
            "jetson-orin-nano.toml",
            "raspberry-pi-4.toml",
            "raspberry-pi-5.toml",
            "raspberry-pi-zero-2w.toml",
        ]
    );
    // A profile naming an installed bundle is checked against the repository's copy of it,
    // which is what the .deb installs there.
    let tmp = tempfile::tempdir().unwrap();
    let assets = repo_root().join("daemon/assets");
    for profile in &profiles {
        let installed = std::fs::read_to_string(profile)
            .unwrap()
            .replace("\"/usr/share/hark/", &format!("\"{}/", assets.display()));
        let copy = tmp.path().join(profile.file_name().unwrap());
        std::fs::write(&copy, installed).unwrap();
        let out = hark(&["check-config", copy.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            profile.display(),
            text(&out.stderr)
        );
        assert!(text(&out.stdout).contains(": ok"), "{}", text(&out.stdout));
        // The weakest board runs the light model, every other the default.
        let light = profile.ends_with("raspberry-pi-zero-2w.toml");
        assert_eq!(
            text(&out.stdout).contains("model-light)"),
            light,
            "{}: {}",
            profile.display(),
            text(&out.stdout)
        );
    }
}

/// Repo-relative paths of the files the .deb ships from `[package.metadata.deb].assets`
/// whose destination is under `prefix`, globs expanded as cargo-deb does for `dir/*` and
/// `dir/*.ext`.
fn deb_assets(prefix: &str) -> Vec<PathBuf> {
    let root = repo_root();
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(root.join("daemon/Cargo.toml")).unwrap()).unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    let mut out = Vec::new();
    for asset in assets {
        let (source, dest) = (asset[0].as_str().unwrap(), asset[1].as_str().unwrap());
        if !dest.starts_with(prefix) {
            continue;
        }
        let path = normalise(&Path::new("daemon").join(source));
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if let Some(ext) = name.strip_prefix('*') {
            let dir = path.parent().unwrap();
            let mut found = 0;
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let file = entry.unwrap().file_name().into_string().unwrap();
                if file.ends_with(ext) {
                    out.push(dir.join(file));
                    found += 1;
                }
            }
            assert!(found > 0, "{source}: matches nothing");
        } else {
            assert!(root.join(&path).is_file(), "{source}: no such file");
            out.push(path);
        }
    }
    out
}

/// `a/b/../c` → `a/c`.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn the_deb_ships_every_document_its_documents_link_to() {
    let shipped = deb_assets("usr/share/doc/hark/");
    let mut checked = 0;
    for doc in shipped
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(repo_root().join(doc)).unwrap();
        // Markdown links and images: ](target) — web links and anchors aside.
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            let target = target.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.contains(' ') {
                continue;
            }
            let linked = normalise(&doc.parent().unwrap().join(target));
            let found = shipped
                .iter()
                .any(|s| *s == linked || s.starts_with(&linked));
            assert!(
                found,
                "{} links to {target}, which the .deb does not ship (daemon/Cargo.toml assets)",
                doc.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} links checked");
}
