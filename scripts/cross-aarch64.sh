#!/usr/bin/env bash
# Cross-builds hark for 64-bit ARM (Raspberry Pi 4/5, Jetson) with Debian's cross toolchain,
# no Docker, and runs the result under qemu: the demo clip must get the same caption, token for
# token, as the native build. (cpal capture hangs under qemu; capture is tested natively.)
set -euo pipefail
. "$(dirname "$0")/env.sh"
cd "$REPO"

target=aarch64-unknown-linux-gnu
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  as_root dpkg --add-architecture arm64
  as_root apt-get update -qq
fi
apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross libasound2-dev:arm64 qemu-user-static \
  pkg-config python3
ensure_rust
rustup target add "$target" >/dev/null

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc   # ring's C and assembly
export PKG_CONFIG_ALLOW_CROSS=1                              # alsa-sys finds the arm64 ALSA
export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig
echo "== cross build for $target"
cargo build --release --target "$target" -p hark
arm="$CARGO_TARGET_DIR/$target/release/hark"
native="$CARGO_TARGET_DIR/debug/hark"
[ -x "$native" ] || cargo build --workspace --all-targets --quiet

echo "== the aarch64 binary under qemu"
qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
"${qemu[@]}" "$arm" --version
# Greedy must match token for token. Beam search must find the same captions; their order may
# differ only between near-ties (|score gap| < 1e-3): the int8 kernels of tract round
# differently on ARM and x86, moving scores by ~1e-4.
for strategy in greedy beam; do
  args=(caption --json --strategy "$strategy" --beam-size 3 --alternatives 2 daemon/assets/demo.wav)
  "$native" "${args[@]}" 2>/dev/null >"$CARGO_TARGET_DIR/caption-x86_64-$strategy.json"
  "${qemu[@]}" "$arm" "${args[@]}" 2>/dev/null >"$CARGO_TARGET_DIR/caption-aarch64-$strategy.json"
done
python3 - "$CARGO_TARGET_DIR" <<'PY'
import json, sys
out = sys.argv[1]
load = lambda name: [json.loads(l) for l in open(f"{out}/caption-{name}.json")]
for x86, arm in zip(load("x86_64-greedy"), load("aarch64-greedy"), strict=True):
    assert x86["tokens"] == arm["tokens"], f"greedy: x86 {x86['text']!r} != aarch64 {arm['text']!r}"
    print(f"greedy, aarch64 == x86_64: {arm['text']!r}")
for x86, arm in zip(load("x86_64-beam"), load("aarch64-beam"), strict=True):
    hyps = lambda w: [(w["text"], w["score"])] + [(a["text"], a["score"]) for a in w["alternatives"]]
    a, b = hyps(x86), hyps(arm)
    assert sorted(t for t, _ in a) == sorted(t for t, _ in b), f"beam: different captions {a} {b}"
    for (ta, sa), (tb, sb) in zip(a, b):
        if ta != tb:
            gap_x86 = abs(sa - dict(a)[tb]); gap_arm = abs(sb - dict(b)[ta])
            assert max(gap_x86, gap_arm) < 1e-3, f"beam order differs beyond a near-tie: {a} {b}"
            print(f"beam: near-tie swapped ({gap_x86:.1e} on x86_64, {gap_arm:.1e} on aarch64): {ta!r} / {tb!r}")
    print(f"beam, aarch64 == x86_64 up to near-ties: {[t for t, _ in b]}")
PY

# The arm64 Debian package from the same binary (cargo-deb: see scripts/check-deb.sh).
if command -v cargo-deb >/dev/null; then
  cargo deb -p hark --target "$target" --no-build --quiet
  deb=$(ls -t "$CARGO_TARGET_DIR/$target/debian/"hark_*_arm64.deb | head -1)
  # grep without -q: reading the whole listing spares dpkg-deb a SIGPIPE (pipefail).
  dpkg-deb --info "$deb" | grep "Architecture: arm64" >/dev/null
  dpkg-deb --contents "$deb" | grep "./usr/bin/hark$" >/dev/null
  echo "arm64 package: $deb"
else
  skip "the arm64 .deb: cargo-deb is not installed (scripts/check-deb.sh installs it)"
fi
