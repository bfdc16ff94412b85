#!/usr/bin/env bash
# proxy_smoke.sh - smoke test of weft_proxy (examples/proxy.c) in front of
# weft_echo: lines through several connections, a large message, the
# connection cap, an upstream that refuses, the idle limit, and a stop on
# SIGINT that cuts a live connection after the grace period.
# usage: proxy_smoke.sh PATH/TO/weft_proxy PATH/TO/weft_echo
test_name=proxy_smoke
# shellcheck source=examples/smoke/lib.sh
. "$(dirname "$0")/lib.sh"
proxy=$1
echo_bin=$2

# The upstream: weft_echo, kept apart from lib.sh's one server.
start_server "$echo_bin" 0 --workers 1
echo_pid=$pid echo_port=$port pid=
trap 'kill -KILL "$echo_pid" 2>/dev/null; cleanup' EXIT

# A 1.5 MB message in one go comes back whole.
check_large() {
    local big got
    big=$(head -c 1100000 /dev/urandom | base64 -w0)
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
    printf '%s' "$big" >&"$fd" &
    local writer=$!
    read -r -t 60 -N "${#big}" -u "$fd" got || fail "large message: got ${#got} of ${#big} bytes"
    wait "$writer"
    [ "$got" = "$big" ] || fail "large message came back different"
    exec {fd}>&-
}

# With --max 3, a fourth client waits in the backlog until one of the
# three leaves. (That it is not served meanwhile is checked for a second:
# a slow machine can only make that check pass.)
check_cap() {
    local fds=() i line
    for ((i = 0; i < 3; i++)); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect $i"
        fds+=("$fd")
        printf 'held %d\n' "$i" >&"$fd"
        read -r -t 60 -u "$fd" line || fail "no echo on held connection $i"
    done
    exec {fourth}<>"/dev/tcp/127.0.0.1/$port" || fail "connect the fourth"
    printf 'fourth\n' >&"$fourth"
    if read -r -t 1 -u "$fourth" line; then
        fail "a fourth connection was served past --max 3 ('$line')"
    fi
    exec {fds[0]}>&-
    read -r -t 60 -u "$fourth" line || fail "the fourth was not served once a place was free"
    [ "$line" = "fourth" ] || fail "the fourth echoed '$line'"
    exec {fourth}>&- {fds[1]}>&- {fds[2]}>&-
}

# A connection silent both ways is closed after --idle (3 s): the read
# sees the end of the stream, well before its own 60 s.
check_idle() {
    local line rc
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
    read -r -t 60 -u "$fd" line
    rc=$?
    [ "$rc" -eq 1 ] || fail "an idle connection was not closed (read status $rc)"
    exec {fd}>&-
}

# --idle 3: the held connections of check_cap stay below it.
start_server "$proxy" 0 "$echo_port" --idle 3 --max 3 --grace 300 --workers 2
check_connections 3
check_large
check_cap
check_idle

# Stop with a connection live: it is cut after the grace period, and the
# proxy exits 0 with its report.
exec {live}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
printf 'still here\n' >&"$live"
read -r -t 60 -u "$live" line || fail "no echo before the stop"
stop_server
read -r -t 60 -u "$live" line
[ $? -eq 1 ] || fail "the live connection was not closed at the stop"
exec {live}>&-
grep -q "1 connections cut at the end of the grace period" "$tmp/err" ||
    fail "no report of the connection cut at the stop"

# An upstream that refuses: the client's connection is closed, and the
# proxy says why.
kill -INT "$echo_pid"
wait "$echo_pid" || fail "weft_echo did not stop cleanly"
echo_pid=
start_server "$proxy" 0 "$echo_port"
exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
read -r -t 60 -u "$fd" line
[ $? -eq 1 ] || fail "a client of a refusing upstream was not closed"
exec {fd}>&-
stop_server
grep -q "upstream: Connection refused" "$tmp/err" || fail "no report of the refused upstream"
echo "$test_name: ok"
