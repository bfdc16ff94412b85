#!/bin/sh
# Build tests/context/ctx_selftest.c with src/context/switch_aarch64.S for
# AArch64 and run it under qemu-user. Runnable from any directory.
#
# Exit status: the test's own status, 77 (skipped) when the cross compiler or
# qemu-aarch64 is not installed, 99 when the build itself fails.
#
# Environment overrides: AARCH64_CC (default aarch64-linux-gnu-gcc),
# QEMU_AARCH64 (default qemu-aarch64), AARCH64_SYSROOT (default
# /usr/aarch64-linux-gnu, used with -L when a static link is not possible).
set -u

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd) || exit 99
root=$(CDPATH='' cd -- "$here/../.." && pwd) || exit 99

cc=${AARCH64_CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU_AARCH64:-qemu-aarch64}
sysroot=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "SKIP: AArch64 cross compiler '$cc' not found" \
         "(Debian: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)"
    exit 77
fi
if ! command -v "$qemu" >/dev/null 2>&1; then
    echo "SKIP: '$qemu' not found (Debian: apt-get install qemu-user)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weft-ctx-aarch64.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

src="$root/tests/context/ctx_selftest.c"
asm="$root/src/context/switch_aarch64.S"
exe="$tmp/ctx_selftest"
cflags="-std=gnu11 -O2 -g -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wno-unused-parameter"

# Static first: the binary then runs under qemu without a sysroot. Fall back
# to a dynamic link and point qemu at the cross sysroot with -L.
qemu_args=""
# shellcheck disable=SC2086
if "$cc" $cflags -static -o "$exe" "$src" "$asm" -lm 2>"$tmp/static.log"; then
    how="static"
    log="$tmp/static.log"
else
    # shellcheck disable=SC2086
    if ! "$cc" $cflags -o "$exe" "$src" "$asm" -lm 2>"$tmp/dynamic.log"; then
        echo "FAIL: could not build ctx_selftest for AArch64"
        echo "--- static link:"; cat "$tmp/static.log"
        echo "--- dynamic link:"; cat "$tmp/dynamic.log"
        exit 99
    fi
    if [ ! -d "$sysroot" ]; then
        echo "SKIP: static link failed and no AArch64 sysroot at '$sysroot'"
        cat "$tmp/static.log"
        exit 77
    fi
    how="dynamic, -L $sysroot"
    qemu_args="-L $sysroot"
    log="$tmp/dynamic.log"
fi
# Show compiler warnings, if any (the project builds warning-clean).
cat "$log"

echo "running $exe under $qemu ($how)"
# shellcheck disable=SC2086
"$qemu" $qemu_args "$exe"
status=$?
echo "ctx_selftest (aarch64) exit status $status"
exit $status
