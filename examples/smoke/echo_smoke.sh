#!/usr/bin/env bash
# echo_smoke.sh - smoke test of weft_echo (examples/echo.c) in each mode:
# several connections at once, a large message, running out of descriptors
# (EMFILE) without dying, and a clean stop on SIGINT; then --workers 2 (the
# stats on stopping count two workers) and bad --workers values.
# usage: echo_smoke.sh PATH/TO/weft_echo
test_name=echo_smoke
# shellcheck source=examples/smoke/lib.sh
. "$(dirname "$0")/lib.sh"
bin=$1

# A 64 KiB message in one go comes back whole (several recvs and buffers).
check_large() {
    local big got
    big=$(head -c 49152 /dev/urandom | base64 -w0)
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
    printf '%s' "$big" >&"$fd"
    read -r -t 60 -N "${#big}" -u "$fd" got || fail "large message: got ${#got} of ${#big} bytes"
    [ "$got" = "$big" ] || fail "large message came back different"
    exec {fd}>&-
}

# With few descriptors, more clients than fit: accept fails with EMFILE, the
# server backs off, and each client is served once earlier ones close.
check_emfile() {
    local n=40 fds=() i line
    start_server bash -c "ulimit -n 32 && exec \"\$0\" \"\$@\"" "$bin" 0 "$@"
    for ((i = 0; i < n; i++)); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect $i"
        fds+=("$fd")
        printf 'client %d\n' "$i" >&"$fd"
    done
    # All n stay open, so the server runs out of descriptors sooner or later.
    for _ in $(seq 1200); do
        grep -q "Too many open files" "$tmp/err" && break
        sleep 0.05
    done
    grep -q "Too many open files" "$tmp/err" || fail "EMFILE was not reached (or not logged)"
    for ((i = 0; i < n; i++)); do
        read -r -t 60 -u "${fds[i]}" line || fail "EMFILE: client $i was never served"
        [ "$line" = "client $i" ] || fail "EMFILE: client $i got '$line'"
        fd=${fds[i]}
        exec {fd}>&-
    done
    stop_server
}

for mode in "" "--multishot" "--direct" "--direct --multishot"; do
    # shellcheck disable=SC2086 # $mode is zero or more words
    start_server "$bin" 0 $mode
    check_connections 8
    check_large
    check_connections 3
    stop_server
    echo "echo_smoke: mode '${mode:-default}' ok"
done
for mode in "" "--multishot"; do
    # shellcheck disable=SC2086
    check_emfile $mode
    echo "echo_smoke: EMFILE with mode '${mode:-default}' ok"
done

# --workers 2, whatever $WEFT_WORKERS and the CPU count say.
for mode in "" "--multishot" "--direct" "--per-worker --direct" "--per-worker --multishot"; do
    # shellcheck disable=SC2086
    start_server "$bin" 0 --workers 2 $mode
    check_connections 8
    check_large
    stop_server
    grep -qE '^workers +2$' "$tmp/out" || fail "--workers 2 $mode: the stats do not count two workers"
    echo "echo_smoke: --workers 2 with mode '${mode:-default}' ok"
done
for bad in abc -1 1024 "" 2x; do
    "$bin" 0 --workers "$bad" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" = 2 ] || fail "--workers '$bad': exit status $rc, not 2"
    grep -q "not a number in 0..1023" "$tmp/err" || fail "--workers '$bad': no clear error"
done
echo "echo_smoke: bad --workers values refused"
