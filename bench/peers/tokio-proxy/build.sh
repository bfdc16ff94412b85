#!/usr/bin/env bash
# Builds the Tokio proxy offline (bench/peers/cargo-offline.sh).
# usage: build.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/../cargo-offline.sh" "$here" "${1:-/tmp/tokio-proxy}"
