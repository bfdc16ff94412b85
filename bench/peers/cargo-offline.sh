#!/usr/bin/env bash
# Builds a Rust peer (its Cargo.toml and src/main.rs) offline from
# Debian's packaged crates (librust-tokio-dev), as the shared peers'
# build.sh scripts do. usage: cargo-offline.sh CRATE_DIR OUT_DIR
set -euo pipefail
crate=$(cd "$1" && pwd); out=$2
mkdir -p "$out/src" "$out/.cargo"
cp "$crate/Cargo.toml" "$out/"; cp "$crate/src/main.rs" "$out/src/"
printf '[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "/usr/share/cargo/registry"\n[net]\noffline = true\n' > "$out/.cargo/config.toml"
cd "$out" && cargo build --release -q
