# shellcheck shell=bash
# lib.sh - helpers shared by the smoke tests (sourced, not run).
#
# start_server BIN ARGS...       starts BIN ARGS... in the background with its
#                                output in $tmp/out and $tmp/err, waits for its
#                                "listening on PORT" line; sets $pid and $port.
#                                Exits 77 (skipped) when io_uring is missing.
# stop_server                    SIGINT, then expects exit status 0 and the
#                                ops-by-opcode report on stdout.
# fail MESSAGE                   prints MESSAGE and the server's stderr; exit 1.
# check_connections N            opens N connections to $port, sends a distinct
#                                line on each, and expects each echoed back.
#
# Every wait is bounded by a generous timeout; nothing depends on timing.
set -u
test_name=${test_name:-smoke} # set by the script that sources this
export LC_ALL=C
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "$test_name: FAIL: $*" >&2
    [ -s "$tmp/err" ] && sed 's/^/  server stderr: /' "$tmp/err" >&2
    exit 1
}

start_server() {
    : >"$tmp/out" # here, not in the background job: no stale "listening on"
    : >"$tmp/err"
    "$@" >>"$tmp/out" 2>>"$tmp/err" &
    pid=$!
    port=
    for _ in $(seq 600); do
        port=$(sed -n 's/^listening on //p' "$tmp/out")
        [ -n "$port" ] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if grep -q "weft_run:" "$tmp/err"; then
        echo "$test_name: skipped: $(cat "$tmp/err")"
        exit 77
    fi
    fail "the server did not start: $*"
}

stop_server() {
    kill -INT "$pid"
    wait "$pid"
    local rc=$?
    pid=
    [ "$rc" = 0 ] || fail "exit status $rc after SIGINT"
    grep -q "ops by opcode" "$tmp/out" || fail "no ops-by-opcode report after SIGINT"
}

check_connections() {
    local n=$1 fds=() i line
    for ((i = 0; i < n; i++)); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect $i"
        fds+=("$fd")
    done
    for ((i = 0; i < n; i++)); do
        printf 'line %d of %s\n' "$i" "$test_name" >&"${fds[i]}"
    done
    for ((i = n - 1; i >= 0; i--)); do
        read -r -t 60 -u "${fds[i]}" line || fail "no echo on connection $i"
        [ "$line" = "line $i of $test_name" ] || fail "connection $i echoed '$line'"
    done
    for fd in "${fds[@]}"; do exec {fd}>&-; done
}
