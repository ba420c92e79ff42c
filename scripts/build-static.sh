#!/usr/bin/env bash
# Builds roadie as one statically linked file that runs in FROM scratch, distroless, alpine and
# slim images, and prints its path. glibc is linked statically (crt-static), not position-independent (a static-pie
# relocates itself at start-up, which costs time and dirties pages); the target is named
# explicitly so build scripts and proc-macros stay dynamic, as they must.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
  cargo build --quiet --release --locked --target "$target" "$@"
echo "$PWD/target/$target/release/roadie"
