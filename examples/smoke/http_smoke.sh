#!/usr/bin/env bash
# http_smoke.sh - smoke test of weft_http (examples/http/): a GET, pipelined
# GETs in one write, keep-alive, HEAD, the error statuses, the timeouts and
# a clean stop on SIGINT; then --workers 2 --bg-cpu (served, reported, and a
# short --load run) and bad --workers values.
# usage: http_smoke.sh PATH/TO/weft_http
test_name=http_smoke
# shellcheck source=examples/smoke/lib.sh
. "$(dirname "$0")/lib.sh"
bin=$1
CRLF=$'\r\n'

# exchange REQUEST: sends REQUEST on a new connection and prints everything
# the server sends until it closes the connection.
exchange() {
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
    printf '%s' "$1" >&"$fd"
    timeout 60 cat <&"$fd" || fail "no end of response to: ${1:0:60}"
    exec {fd}>&-
}

# expect WHAT RESPONSE PATTERN...: every PATTERN (grep -E) is in RESPONSE.
expect() {
    local what=$1 response=$2
    shift 2
    for pattern in "$@"; do
        grep -qE -- "$pattern" <<<"$response" || fail "$what: no '$pattern' in:$CRLF$response"
    done
}

count() { grep -c -- "$1" <<<"$2"; }

start_server "$bin" 0

r=$(exchange "GET / HTTP/1.1${CRLF}Host: test${CRLF}Connection: close${CRLF}${CRLF}")
expect "GET /" "$r" '^HTTP/1.1 200 OK' 'Content-Length: 13' 'Content-Type: text/plain' \
    'Connection: close' 'Hello, world!$'

r=$(exchange "GET / HTTP/1.1${CRLF}Host: test${CRLF}${CRLF}GET /stats HTTP/1.1${CRLF}Host: test${CRLF}Connection: close${CRLF}${CRLF}")
[ "$(count 'HTTP/1.1 200 OK' "$r")" = 2 ] || fail "pipelined: not two responses:$CRLF$r"
expect "pipelined" "$r" 'Hello, world!' 'ops by opcode' 'tasks_spawned'

# Keep-alive: a second request on the same connection after the first answer.
exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
printf 'GET / HTTP/1.1\r\nHost: test\r\n\r\n' >&"$fd"
read -r -t 60 -d '!' -u "$fd" first || fail "keep-alive: no first response"
expect "keep-alive, first" "$first" '^HTTP/1.1 200 OK' 'Hello, world'
printf 'HEAD / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n' >&"$fd"
r=$(timeout 60 cat <&"$fd") || fail "keep-alive: no second response"
exec {fd}>&-
expect "keep-alive, HEAD" "$r" '^HTTP/1.1 200 OK' 'Content-Length: 13'
# No body: the response ends with the empty line ("\r\n\r\n", of which
# the command substitution dropped the final "\n").
[[ "$r" == *$'\r\n\r' ]] || fail "HEAD: a body was sent:$CRLF$r"

r=$(exchange "HEAD /nowhere HTTP/1.1${CRLF}Host: test${CRLF}Connection: close${CRLF}${CRLF}")
expect "HEAD 404" "$r" '^HTTP/1.1 404 Not Found'
[[ "$r" == *$'\r\n\r' ]] || fail "HEAD 404: a body was sent"

r=$(exchange "GET / HTTP/1.0${CRLF}${CRLF}")
expect "HTTP/1.0" "$r" '^HTTP/1.1 200 OK' 'Connection: close' 'Hello, world!$'

r=$(exchange "GET /missing HTTP/1.1${CRLF}Host: test${CRLF}Connection: close${CRLF}${CRLF}")
expect "404" "$r" '^HTTP/1.1 404 Not Found'

r=$(exchange "GARBAGE${CRLF}${CRLF}")
expect "malformed" "$r" '^HTTP/1.1 400 Bad Request' 'Connection: close'

r=$(exchange "GET / HTTP/1.1${CRLF}Host: test${CRLF}X-Big: $(head -c 20000 /dev/zero | tr '\0' a)${CRLF}${CRLF}")
expect "large header section" "$r" '^HTTP/1.1 431 Request Header Fields Too Large'

r=$(exchange "GET /$(head -c 9000 /dev/zero | tr '\0' a) HTTP/1.1${CRLF}Host: test${CRLF}${CRLF}")
expect "long target" "$r" '^HTTP/1.1 414 URI Too Long'

r=$(exchange "GET / HTTP/2.0${CRLF}Host: test${CRLF}${CRLF}")
expect "HTTP/2.0" "$r" '^HTTP/1.1 505 HTTP Version Not Supported'

r=$(exchange "POST / HTTP/1.1${CRLF}Host: test${CRLF}Transfer-Encoding: chunked${CRLF}${CRLF}0${CRLF}${CRLF}")
expect "chunked" "$r" '^HTTP/1.1 501 Not Implemented'

r=$(exchange "POST / HTTP/1.1${CRLF}Host: test${CRLF}Content-Length: 2000000${CRLF}${CRLF}")
expect "large body" "$r" '^HTTP/1.1 413 Content Too Large'

r=$(exchange "POST / HTTP/1.1${CRLF}Host: test${CRLF}Content-Length: 5${CRLF}${CRLF}helloGET / HTTP/1.1${CRLF}Host: test${CRLF}Connection: close${CRLF}${CRLF}")
expect "body, then a request" "$r" '^HTTP/1.1 405 Method Not Allowed' 'Hello, world!$'

stop_server
echo "http_smoke: requests ok"

# Timeouts, made short: an idle connection is closed without a word; a
# request that stops half-way gets 408.
start_server "$bin" 0 --idle-timeout 0.2 --request-timeout 0.2
r=$(exchange "")
[ -z "$r" ] || fail "idle timeout: got a response:$CRLF$r"
r=$(exchange "GET / HTTP/1.1${CRLF}Host: te")
expect "request timeout" "$r" '^HTTP/1.1 408 Request Timeout' 'Connection: close'
# A body that trickles in, a byte well within each idle timeout, still gets
# 408 once it falls behind 16 KiB/s: 4096 bytes are due 0.25 s after the
# 0.2 s request timeout, and the trickle would take 2.5 s more.
exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
printf 'POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4096\r\n\r\n' >&"$fd"
line=
trap '' PIPE
for _ in $(seq 50); do
    printf a >&"$fd" 2>/dev/null || break
    read -r -t 0.05 -u "$fd" line && break
done
trap - PIPE
exec {fd}>&-
expect "body trickle" "$line" '^HTTP/1.1 408 Request Timeout'
stop_server
echo "http_smoke: timeouts ok"

# Two workers and the background queue: requests are still answered, and
# the report on stopping has a row per worker and the two queues.
start_server "$bin" 0 --workers 2 --bg-cpu
r=$(exchange "GET / HTTP/1.1${CRLF}Host: test${CRLF}Connection: close${CRLF}${CRLF}")
expect "--bg-cpu: GET /" "$r" '^HTTP/1.1 200 OK' 'Hello, world!$'
r=$(exchange "GET /stats HTTP/1.1${CRLF}Host: test${CRLF}Connection: close${CRLF}${CRLF}")
expect "--bg-cpu: GET /stats" "$r" '^HTTP/1.1 200 OK' '^workers +2'
stop_server
out=$(cat "$tmp/out")
expect "--bg-cpu report" "$out" '^per worker:' '^ +0 +[0-9]+ +[0-9]+' '^ +1 +[0-9]+ +[0-9]+' \
    '^background: [0-9]+ slices' '^http +100 ' '^bg +5 '
echo "http_smoke: --workers 2 --bg-cpu ok"

# A short load run: no failed request, every part of the report there.
"$bin" --load 0.5 --conns 8 --workers 2 --bg-cpu >"$tmp/out" 2>"$tmp/err" ||
    fail "--load 0.5 --workers 2 --bg-cpu: exit status $?"
out=$(cat "$tmp/out")
expect "--load report" "$out" '^weft_http: 2 workers' 'requests/s, 0 errors' '^load: latency p50' \
    '^ +1 +[0-9]+ +[0-9]+' '^background: [0-9]+ slices' '^bg +5 '
echo "http_smoke: --load with --workers 2 --bg-cpu ok"

for bad in abc -1 1024 ""; do
    "$bin" 0 --workers "$bad" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" = 2 ] || fail "--workers '$bad': exit status $rc, not 2"
    grep -q "not a number in 0..1023" "$tmp/err" || fail "--workers '$bad': no clear error"
done
echo "http_smoke: bad --workers values refused"
