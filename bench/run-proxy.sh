#!/usr/bin/env bash
# The TCP proxy benchmark: weft's proxy (examples/proxy.c, on weft_relay)
# beside a Tokio proxy (tokio::io::copy_bidirectional, bench/peers/tokio-proxy)
# and a hand-written epoll proxy (bench/peers/epoll_proxy.c), each in front
# of the same echo server, under the peers' closed-loop echo client
# (shared/peers/echo_client.c). One line per proxy and load, then a
# markdown table with weft's ratios.
#
# The proxy runs on CPU 0; the client and the echo server share CPU 1. The
# fair figure is the proxy's CPU time per request (user + sys from /proc,
# in microseconds): requests/s is bounded by whichever process is slowest,
# and on two CPUs that may be the client. A "direct" line (client to the
# echo server, no proxy) gives the floor.
#
# Builds nothing of weft: build the release preset first.
# usage: bench/run-proxy.sh            (64 conns x 64 B, then 16 conns x 16 KiB)
# env:   BUILD        weft's release build (default build/release)
#        PEERS_DIR    shared peers (default <repo root>/../shared/peers)
#        PEERS_BUILD  where peers are built (default /tmp/peers-build)
#        SECS         seconds per run (default 3)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build/release}
peers=${PEERS_DIR:-$root/../shared/peers}
out=${PEERS_BUILD:-/tmp/peers-build}
secs=${SECS:-3}
note() { echo "run-proxy.sh: $*" >&2; }

weft_proxy=$build/examples/weft_proxy
if [ ! -x "$weft_proxy" ]; then
    note "no weft_proxy at $weft_proxy (build the release preset, or set BUILD)"
    exit 1
fi
if [ ! -f "$peers/echo_client.c" ]; then
    note "no echo_client.c in $peers"
    exit 1
fi
mkdir -p "$out"
cc -O2 -o "$out/echo_client" "$peers/echo_client.c" || exit 1
cc -O2 -o "$out/epoll_echo" "$peers/epoll_echo.c" || exit 1
cc -O2 -o "$out/epoll_proxy" "$root/bench/peers/epoll_proxy.c" || exit 1
proxies=("epoll=$out/epoll_proxy {port} {up}")
if [ -d /usr/share/cargo/registry ] && ls /usr/share/cargo/registry | grep -q '^tokio-1'; then
    if "$root/bench/peers/tokio-proxy/build.sh" "$out/tokio-proxy" >/dev/null 2>&1; then
        proxies+=("tokio=$out/tokio-proxy/target/release/tokio-proxy {port} {up} 1")
    else
        note "the Tokio proxy did not build: its rows show n/a"
    fi
else
    note "no Tokio in /usr/share/cargo/registry (apt-get install librust-tokio-dev): its rows show n/a"
fi
proxies+=("weft=$weft_proxy {port} {up} --workers 1")

wait_listen() {
    for _ in $(seq 50); do
        ss -ltn "sport = :$1" | grep -q LISTEN && return 0
        sleep 0.1
    done
    return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

raw=$(mktemp)
trap 'rm -f "$raw"; kill $(jobs -p) 2>/dev/null' EXIT
port=$((20000 + RANDOM % 20000))
tck=$(getconf CLK_TCK)

for load in "64 64" "16 16384"; do
    read -r conns msg <<<"$load"
    port=$((port + 1))
    up=$port
    taskset -c 1 "$out/epoll_echo" "$up" >/dev/null 2>&1 &
    echo_pid=$!
    wait_listen "$up" || { note "the echo server did not start"; exit 1; }
    line=$(taskset -c 1 "$out/echo_client" 127.0.0.1 "$up" "$conns" "$msg" "$secs" || true)
    echo "direct conns=$conns msg=$msg $line proxy_cpu_us_per_req=n/a" | tee -a "$raw"
    for spec in "${proxies[@]}"; do
        name=${spec%%=*}
        cmd=${spec#*=}
        port=$((port + 1))
        cmd=${cmd//\{port\}/$port}
        cmd=${cmd//\{up\}/$up}
        taskset -c 0 $cmd >/dev/null 2>&1 &
        pid=$!
        if ! wait_listen "$port"; then
            note "$name did not start"
            kill "$pid" 2>/dev/null
            continue
        fi
        t0=$(cpu_ticks "$pid")
        line=$(taskset -c 1 "$out/echo_client" 127.0.0.1 "$port" "$conns" "$msg" "$secs" || true)
        t1=$(cpu_ticks "$pid")
        kill "$pid"
        wait "$pid" 2>/dev/null
        rps=$(sed -n 's/.*reqs_per_s=\([0-9]*\).*/\1/p' <<<"$line")
        cpu=$(awk -v a=$((t1 - t0)) -v t="$tck" -v r="${rps:-0}" -v s="$secs" \
            'BEGIN { if (r > 0) printf "%.2f", a / t * 1e6 / (r * s); else print "n/a" }')
        echo "$name conns=$conns msg=$msg $line proxy_cpu_us_per_req=$cpu" | tee -a "$raw"
    done
    kill "$echo_pid"
    wait "$echo_pid" 2>/dev/null
done

# The table: per load, weft's figure over each peer's.
fig() { # NAME CONNS MSG KEY
    awk -v n="$1" -v c="conns=$2" -v m="msg=$3" -v k="$4" '
        $1 == n && $2 == c && $3 == m {
            for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) { print kv[2]; exit } }
        }' "$raw"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "| load | figure | weft | Tokio | epoll | direct | weft ÷ Tokio | weft ÷ epoll |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for load in "64 64" "16 16384"; do
    read -r conns msg <<<"$load"
    for key in proxy_cpu_us_per_req reqs_per_s p99_us; do
        w=$(fig weft "$conns" "$msg" "$key")
        t=$(fig tokio "$conns" "$msg" "$key")
        e=$(fig epoll "$conns" "$msg" "$key")
        d=$(fig direct "$conns" "$msg" "$key")
        echo "| $conns conns x $msg B | $key | ${w:-n/a} | ${t:-n/a} | ${e:-n/a} | ${d:-n/a} | $(ratio "$w" "$t") | $(ratio "$w" "$e") |"
    done
done
