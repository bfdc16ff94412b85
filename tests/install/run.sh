#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then builds and runs a
# small program against it three ways: pkg-config (shared), pkg-config
# --static, and the CMake package. usage: run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(ls -d "$tmp"/prefix/lib*/ | head -n1)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc=${CC:-cc}
# Sanitizer builds install sanitizer-instrumented libraries; link the
# consumer with the same runtime.
extra=()
case "$build" in *asan*) extra=(-fsanitize=address,undefined) ;; *tsan*) extra=(-fsanitize=thread) ;; esac
"$cc" "${extra[@]}" -o "$tmp/pc_shared" "$src/tests/install/consumer.c" $(pkg-config --cflags --libs weft) -Wl,-rpath,"$libdir"
"$tmp/pc_shared"
"$cc" "${extra[@]}" -o "$tmp/pc_static" "$src/tests/install/consumer.c" $(pkg-config --cflags weft) "$libdir/libweft.a" $(pkg-config --static --libs weft | sed 's/-lweft//')
"$tmp/pc_static"
mkdir -p "$tmp/cm"
cp "$src/tests/install/consumer.c" "$tmp/cm/"
cp "$src/tests/install/CMakeLists.txt.in" "$tmp/cm/CMakeLists.txt"
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCMAKE_C_FLAGS="${extra[*]}" -DCMAKE_EXE_LINKER_FLAGS="${extra[*]}" \
  -DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
"$tmp/cm/build/consumer_static"
"$tmp/cm/build/consumer_shared"
echo "install: 4 passed, 0 failed"
