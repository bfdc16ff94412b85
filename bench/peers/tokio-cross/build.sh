#!/usr/bin/env bash
# Builds the Tokio cross-thread ping-pong offline from Debian's packaged crates
# (librust-tokio-dev), as shared/peers/tokio-micro/build.sh does.
# usage: build.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); out=${1:-/tmp/tokio-cross}
mkdir -p "$out/src" "$out/.cargo"
cp "$here/Cargo.toml" "$out/"; cp "$here/src/main.rs" "$out/src/"
printf '[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "/usr/share/cargo/registry"\n[net]\noffline = true\n' > "$out/.cargo/config.toml"
cd "$out" && cargo build --release -q
