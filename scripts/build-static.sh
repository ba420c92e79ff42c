#!/usr/bin/env bash
# Builds roadie as one statically linked file that runs in FROM scratch, distroless, alpine and
# slim images, and prints its path. The top-level Dockerfile runs exactly this (with --out), and
# so does the test suite (tests/blackbox/shipping.rs), so the documented build cannot rot.
#
#   scripts/build-static.sh [--out FILE] [CARGO BUILD ARGS...]
#   scripts/build-static.sh --no-default-features --features postgres   # Postgres only
#
# glibc is linked statically (crt-static), not position-independent (a static-pie relocates
# itself at start-up, which costs time and dirties pages); the target is named explicitly so
# build scripts and proc-macros stay dynamic, as they must. The size settings are the release
# profile's, in Cargo.toml. With --out the binary is also copied to FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
out=
if [ "${1:-}" = --out ]; then
  out=${2:?--out needs a file}
  shift 2
fi
target=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
  cargo build --quiet --release --locked --target "$target" "$@"
built="${CARGO_TARGET_DIR:-$PWD/target}/$target/release/roadie"
if [ -n "$out" ]; then
  cp "$built" "$out"
  built=$out
fi
echo "$built"
