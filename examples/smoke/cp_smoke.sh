#!/usr/bin/env bash
# cp_smoke.sh - smoke test of weft_cp (examples/cp.c): files of several sizes
# compared with cmp, the modes cp(1) gives, copying into a directory, the
# error messages, a failed copy never removing an existing DST, and SIGINT
# removing the partial copy.
# usage: cp_smoke.sh PATH/TO/weft_cp
test_name=cp_smoke
# shellcheck source=examples/smoke/lib.sh
. "$(dirname "$0")/lib.sh"
bin=$1

# copy_and_compare NAME SIZE: a random file of SIZE bytes, copied and compared.
copy_and_compare() {
    head -c "$2" /dev/urandom >"$tmp/$1"
    chmod 640 "$tmp/$1"
    "$bin" "$tmp/$1" "$tmp/$1.copy" 2>"$tmp/err" || fail "$1: exit status $?"
    cmp "$tmp/$1" "$tmp/$1.copy" || fail "$1: the copy differs"
    [ "$(stat -c %a "$tmp/$1.copy")" = 640 ] || fail "$1: mode not kept"
}

copy_and_compare random-5MiB $((5 * 1024 * 1024))
copy_and_compare empty 0
copy_and_compare one-byte 1
copy_and_compare odd-size $((3 * 128 * 1024 + 12345))
copy_and_compare one-chunk $((128 * 1024))

# Over an existing, longer file; into a directory.
head -c 1000000 /dev/urandom >"$tmp/longer"
"$bin" "$tmp/odd-size" "$tmp/longer" 2>"$tmp/err" || fail "overwrite: exit status $?"
cmp "$tmp/odd-size" "$tmp/longer" || fail "overwrite: the copy differs"
mkdir "$tmp/dir"
"$bin" "$tmp/one-byte" "$tmp/dir" 2>"$tmp/err" || fail "into a directory: exit status $?"
cmp "$tmp/one-byte" "$tmp/dir/one-byte" || fail "into a directory: the copy differs"
# A file that says it is empty and is not: files in /proc report size 0.
# (It was copied as an empty file, with exit status 0.)
"$bin" /proc/self/status "$tmp/status" 2>"$tmp/err" || fail "/proc file: exit status $?"
grep -q '^Name:' "$tmp/status" || fail "/proc file: the copy has no content ($(wc -c <"$tmp/status") bytes)"
echo "cp_smoke: copies ok"

# Modes, as cp(1) gives them: a new DST takes SRC's permission bits less the
# umask and never set-user-ID; an existing DST keeps its own mode.
head -c 100 /dev/urandom >"$tmp/setuid"
chmod 4755 "$tmp/setuid"
(umask 077 && "$bin" "$tmp/setuid" "$tmp/setuid.copy") 2>"$tmp/err" || fail "setuid: exit status $?"
[ "$(stat -c %a "$tmp/setuid.copy")" = 700 ] ||
    fail "setuid SRC, umask 077: DST mode $(stat -c %a "$tmp/setuid.copy"), not 700"
echo old >"$tmp/kept-mode"
chmod 600 "$tmp/kept-mode"
"$bin" "$tmp/one-byte" "$tmp/kept-mode" 2>"$tmp/err" || fail "kept mode: exit status $?"
cmp "$tmp/one-byte" "$tmp/kept-mode" || fail "kept mode: the copy differs"
[ "$(stat -c %a "$tmp/kept-mode")" = 600 ] || fail "an existing DST's mode was changed"
echo "cp_smoke: modes ok"

# Errors: a message naming the file, exit status 1.
expect_error() { # WHAT EXPECTED-MESSAGE ARGS...
    local what=$1 message=$2 rc
    shift 2
    "$bin" "$@" 2>"$tmp/err"
    rc=$?
    [ "$rc" = 1 ] || fail "$what: exit status $rc, not 1"
    [ "$(cat "$tmp/err")" = "$message" ] || fail "$what: said '$(cat "$tmp/err")', not '$message'"
}
expect_error "missing SRC" "weft_cp: $tmp/none: No such file or directory" "$tmp/none" "$tmp/x"
expect_error "SRC a directory" "weft_cp: $tmp/dir: Is a directory" "$tmp/dir" "$tmp/x"
expect_error "DST in a missing directory" "weft_cp: $tmp/no/x: No such file or directory" \
    "$tmp/empty" "$tmp/no/x"
expect_error "same file" "weft_cp: $tmp/empty: the same file as the source" \
    "$tmp/empty" "$tmp/empty"
# A read that fails once DST is open (/proc/self/mem at offset 0: EIO):
# a DST the copy created is removed, an existing one is not.
expect_error "unreadable SRC" "weft_cp: /proc/self/mem: Input/output error" /proc/self/mem "$tmp/x"
echo precious >"$tmp/existing"
expect_error "unreadable SRC over an existing DST" \
    "weft_cp: /proc/self/mem: Input/output error" /proc/self/mem "$tmp/existing"
[ -e "$tmp/existing" ] || fail "a failed copy removed the existing DST"
[ -e "$tmp/x" ] && fail "a failed copy left $tmp/x behind"
echo "cp_smoke: errors ok"

# SIGINT while copying: the partial copy is removed and the exit status is
# 130. (A sparse 256 MiB source takes no space; if the copy wins the race,
# it must then be complete.)
truncate -s 256M "$tmp/sparse"
"$bin" "$tmp/sparse" "$tmp/sparse.copy" 2>"$tmp/err" &
pid=$!
for _ in $(seq 6000); do
    [ -e "$tmp/sparse.copy" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
done
kill -INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
pid=
if [ "$rc" = 130 ]; then
    [ -e "$tmp/sparse.copy" ] && fail "SIGINT: the partial copy is still there"
    grep -q "Interrupt" "$tmp/err" || fail "SIGINT: no message"
    echo "cp_smoke: SIGINT ok (copy interrupted)"
elif [ "$rc" = 0 ]; then
    cmp "$tmp/sparse" "$tmp/sparse.copy" || fail "SIGINT came late, and the copy differs"
    echo "cp_smoke: SIGINT ok (the copy finished first)"
else
    fail "SIGINT: exit status $rc"
fi
