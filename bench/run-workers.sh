#!/usr/bin/env bash
# Runs the multi-worker benchmarks (issue 5) beside the peers in one go on one
# machine and prints markdown tables with the targets:
#
#   micro  shared/peers/micro-bench.sh 2 (Tokio multi_thread with 2 workers,
#          Go with GOMAXPROCS=2), the peers' ping-pong with the two tasks
#          forced onto two threads (bench/peers/tokio-cross: a
#          current_thread runtime per thread; bench/peers/go-cross:
#          GOMAXPROCS=2, both goroutines LockOSThread), then
#          weft_workers_bench (skew, channel ping-pong, cross-worker wake
#          latency) and weft_micro spawn with each worker count (spawn+join)
#   echo   shared/peers/echo-bench.sh with Tokio on 2 threads (TOKIO_THREADS=2)
#          and weft_echo with 1 and with 2 workers, 64 conns x 64 B, 3 s each
#
# Builds nothing of weft: build the release preset first.
# usage: bench/run-workers.sh [micro|echo]...      (none = both)
#        WORKERS="1 2 4 8 16" bench/run-workers.sh micro   (the scaling table)
# env:   BUILD        weft's release build (default build/release)
#        WORKERS      worker counts for skew and spawn+join (default "1 2")
#        PEERS_DIR    the peers' folder (default <repo root>/../shared/peers)
#        PEERS_BUILD  where the peers are built (default /tmp/peers-build)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$root/build/release}
peers=${PEERS_DIR:-$root/../shared/peers}
workers=${WORKERS:-1 2}
bench=$build/bench/weft_workers_bench
micro=$build/bench/weft_micro
echo_bin=$build/examples/weft_echo

want_micro=0 want_echo=0
[ $# -eq 0 ] && want_micro=1 && want_echo=1
for a in "$@"; do
    case $a in
    micro) want_micro=1 ;;
    echo) want_echo=1 ;;
    *)
        echo "usage: $0 [micro|echo]..." >&2
        exit 2
        ;;
    esac
done
note() { echo "run-workers.sh: $*" >&2; }

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
status=0

if [ $want_micro = 1 ]; then
    if [ ! -x "$bench" ]; then
        note "no weft_workers_bench at $bench (build the release preset, or set BUILD)"
        exit 1
    fi
    if [ -f "$peers/micro-bench.sh" ]; then
        note "running the peers ($peers/micro-bench.sh 2)..."
        bash "$peers/micro-bench.sh" 2 >>"$raw" ||
            note "micro-bench.sh failed part-way; missing figures show as n/a"
    else
        note "no peers at $peers; their columns show as n/a"
    fi
    # The ping-pong with the tasks pinned apart, in each peer's own way of
    # pinning a task to a thread (Tokio multi_thread cannot pin one).
    pbuild=${PEERS_BUILD:-/tmp/peers-build}
    if command -v cargo >/dev/null && ls /usr/share/cargo/registry 2>/dev/null | grep -q '^tokio-1'; then
        note "running bench/peers/tokio-cross..."
        if bash "$root/bench/peers/cargo-offline.sh" "$root/bench/peers/tokio-cross" "$pbuild/tokio-cross" >/dev/null 2>&1; then
            "$pbuild/tokio-cross/target/release/tokio-cross" >>"$raw" || note "tokio-cross failed"
        else
            note "tokio-cross did not build; its figure shows as n/a"
        fi
    fi
    if command -v go >/dev/null; then
        note "running bench/peers/go-cross (GOMAXPROCS=2)..."
        mkdir -p "$pbuild/go-cross"
        if cp "$root/bench/peers/go-cross/main.go" "$pbuild/go-cross/" &&
            (cd "$pbuild/go-cross" && go build -o go_cross main.go) >/dev/null 2>&1; then
            GOMAXPROCS=2 "$pbuild/go-cross/go_cross" >>"$raw" || note "go-cross failed"
        else
            note "go-cross did not build; its figure shows as n/a"
        fi
    fi
    wargs=()
    for w in $workers; do wargs+=(-w "$w"); done
    note "running $bench ${wargs[*]}..."
    if ! "$bench" "${wargs[@]}" >>"$raw"; then
        note "weft_workers_bench failed"
        status=1
    fi
    # Spawn+join is weft_micro's benchmark, run with each worker count.
    for w in $workers; do
        note "running WEFT_MICRO_WORKERS=$w $micro spawn..."
        if ! WEFT_MICRO_WORKERS=$w "$micro" spawn | sed "s/^weft /weft workers=$w /" >>"$raw"; then
            note "weft_micro spawn failed"
            status=1
        fi
    done
    # And with WEFT_WAKE_TO_OWNER, 2 workers: "weft-owner workers=2 ...".
    note "running WEFT_MICRO_WORKERS=2 WEFT_MICRO_WAKE=owner $micro spawn..."
    if ! WEFT_MICRO_WORKERS=2 WEFT_MICRO_WAKE=owner "$micro" spawn |
        sed "s/^weft /weft-owner workers=2 /" >>"$raw"; then
        note "weft_micro spawn (wake to owner) failed"
        status=1
    fi
fi

if [ $want_echo = 1 ]; then
    if [ -x "$echo_bin" ] && [ -f "$peers/echo-bench.sh" ]; then
        note "echo: echo-bench.sh 64 conns x 64 B, 3 s per server, Tokio on 2 threads..."
        out=$(TOKIO_THREADS=2 bash "$peers/echo-bench.sh" 64 64 3 -- \
            "weft-1w=$echo_bin {port} --workers 1" "weft-2w=$echo_bin {port} --workers 2" 2>/dev/null)
        # "NAME conns=.. reqs_per_s=..": prog "echo:NAME".
        awk 'NF > 1 { $1 = "echo:" $1; print }' <<<"$out" >>"$raw"
    else
        note "echo: no $echo_bin (or no echo-bench.sh in $peers): skipped"
    fi
fi

awk -v workers="$workers" '
    # "prog [k=v ...] key=value": the last field is the figure. weft lines
    # carry "workers=N", kept in the key so that counts stay apart.
    NF >= 2 && $1 !~ /^#/ {
        n = split($NF, kv, "=")
        if (n != 2) next
        p = $1
        if ($2 ~ /^workers=/) { split($2, w, "="); p = p "@" w[2] }
        val[p SUBSEP kv[1]] = kv[2]
        for (i = 2; i < NF; i++) if (split($i, kv2, "=") == 2) val[p SUBSEP kv2[1]] = kv2[2]
    }
    function has(p, k) { return ((p SUBSEP k) in val) && val[p SUBSEP k] != "n/a" }
    function get(p, k) { return val[p SUBSEP k] + 0 }
    function show(p, k) { return has(p, k) ? val[p SUBSEP k] : "n/a" }
    function verdict(ok, known) { return known ? (ok ? "pass" : "**miss**") : "n/a" }
    function rat(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "n/a" }
    END {
        print "| benchmark | weft | reference | weft ÷ reference | target | result |"
        print "|---|---:|---:|---:|---|---|"
        # Skew: tasks/s with 2 workers over 1 worker.
        k = "skew_tasks_per_s"
        if (has("weft@2", k) && has("weft@1", k))
            printf "| skew: 10k × 100 µs tasks/s, 2 workers / 1 worker | %s | %s | %s | ≥ 1.8 | %s |\n",
                show("weft@2", k), show("weft@1", k), rat(get("weft@2", k), get("weft@1", k)),
                verdict(get("weft@2", k) >= 1.8 * get("weft@1", k), 1)
        # Spawn+join and ping-pong: weft with 2 workers against each peer,
        # like for like: the peers place the tasks themselves where weft
        # does, and pin them apart (in their own way) where weft does.
        split("spawn_join_ns_per_task channel_pingpong_ns_per_roundtrip channel_pingpong_cross_ns_per_roundtrip", ks, " ")
        split("spawn+join ns/task|channel ping-pong ns/round trip (placed by the runtime)|channel ping-pong ns/round trip (pinned on workers 0 and 1)", ls, "|")
        for (i = 1; i <= 3; i++) {
            pk = ks[i]
            if (i == 3)
                split("Tokio, a current_thread runtime per thread (pinned)|Go (GOMAXPROCS=2), goroutines LockOSThread (pinned)", pn, "|")
            else
                split("Tokio multi_thread (2)|Go (GOMAXPROCS=2)", pn, "|")
            for (j = 1; j <= 2; j++) {
                peer = (j == 1) ? "tokio" : "go"
                # Peers print "tokio threads=2 ..." / "go procs=2 ...": keyed by prog.
                # (no bare ">" in printf arguments: awk reads it as a redirection)
                known = has(peer, pk) && has("weft@2", ks[i])
                r = known ? rat(get("weft@2", ks[i]), get(peer, pk)) : "n/a"
                printf "| %s, 2 workers, vs %s | %s | %s | %s | < 1 (faster) | %s |\n", ls[i], pn[j],
                    show("weft@2", ks[i]), show(peer, pk), r,
                    verdict(get("weft@2", ks[i]) < get(peer, pk), known)
            }
        }
        # With WEFT_WAKE_TO_OWNER: spawn+join, and ping-pong placed by the
        # runtime. Not targets: the default placement is.
        split("spawn_join_ns_per_task channel_pingpong_owner_ns_per_roundtrip", mk, " ")
        split("weft-owner@2 weft@2", mp, " ")
        split("spawn+join ns/task|channel ping-pong ns/round trip", ml2, "|")
        split("Tokio multi_thread (2)|Go (GOMAXPROCS=2)", pn, "|")
        for (i = 1; i <= 2; i++) {
            pk = (i == 1) ? "spawn_join_ns_per_task" : "channel_pingpong_ns_per_roundtrip"
            for (j = 1; j <= 2; j++) {
                peer = (j == 1) ? "tokio" : "go"
                known = has(peer, pk) && has(mp[i], mk[i])
                r = known ? rat(get(mp[i], mk[i]), get(peer, pk)) : "n/a"
                printf "| %s, 2 workers, WEFT_WAKE_TO_OWNER, vs %s | %s | %s | %s | (not a target) | n/a |\n",
                    ml2[i], pn[j], show(mp[i], mk[i]), show(peer, pk), r
            }
        }
        # weft pinned against the peers placed (both tasks on one thread, as
        # they run them): not like for like, shown as context. Sessions before
        # 2026-12-07 counted these rows as the target.
        for (j = 1; j <= 2; j++) {
            peer = (j == 1) ? "tokio" : "go"
            k = "channel_pingpong_cross_ns_per_roundtrip"
            pk = "channel_pingpong_ns_per_roundtrip"
            known = has(peer, pk) && has("weft@2", k)
            printf "| channel ping-pong ns/round trip, weft pinned on workers 0 and 1 vs %s placed by itself | %s | %s | %s | (context) | n/a |\n",
                (j == 1) ? "Tokio multi_thread (2)" : "Go (GOMAXPROCS=2)", show("weft@2", k), show(peer, pk),
                known ? rat(get("weft@2", k), get(peer, pk)) : "n/a"
        }
        # The floor of the pinned ping-pong on this machine: one cache line there
        # and back between two plain threads. Context, not a target.
        k = "channel_pingpong_cross_ns_per_roundtrip"
        fk = "cache_line_roundtrip_ns"
        if (has("os", fk))
            printf "| channel ping-pong ns/round trip (pinned on workers 0 and 1), vs one cache line there and back (two plain threads) | %s | %s | %s | (context) | n/a |\n",
                show("weft@2", k), show("os", fk), has("weft@2", k) ? rat(get("weft@2", k), get("os", fk)) : "n/a"
        k = "wake_parked_p99_us"
        fk = "wake_parked_eventfd_p99_us"
        printf "| cross-worker wake p99 µs (woken worker parked), vs two plain threads (eventfd) | %s | %s | %s | ≤ 50 µs | %s |\n",
            show("weft@2", k), show("os", fk), has("os", fk) ? rat(get("weft@2", k), get("os", fk)) : "n/a",
            verdict(get("weft@2", k) <= 50, has("weft@2", k))
        # Echo: weft with 2 workers against Tokio with 2 threads.
        if (has("echo:tokio", "reqs_per_s") && has("echo:weft-2w", "reqs_per_s"))
            printf "| echo 64 × 64 B req/s, 2 workers vs Tokio multi_thread (2) | %s | %s | %s | ≥ 1.0 | %s |\n",
                show("echo:weft-2w", "reqs_per_s"), show("echo:tokio", "reqs_per_s"),
                rat(get("echo:weft-2w", "reqs_per_s"), get("echo:tokio", "reqs_per_s")),
                verdict(get("echo:weft-2w", "reqs_per_s") >= get("echo:tokio", "reqs_per_s"), 1)

        # The scaling table: every worker count that ran.
        n = split(workers, wl, " ")
        if (n > 0) {
            print ""
            print "| workers | skew tasks/s | skew speed-up | spawn+join ns/task |"
            print "|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) {
                p = "weft@" wl[i]
                up = "n/a"
                if (has(p, "skew_tasks_per_s") && has("weft@1", "skew_tasks_per_s"))
                    up = rat(get(p, "skew_tasks_per_s"), get("weft@1", "skew_tasks_per_s"))
                printf "| %s | %s | %s | %s |\n", wl[i], show(p, "skew_tasks_per_s"), up,
                    show(p, "spawn_join_ns_per_task")
            }
        }
        print ""
        print "| cross-worker wake µs | p50 | p90 | p99 | max | MSG_RING wakes |"
        print "|---|---:|---:|---:|---:|---:|"
        split("parked spinning", ml, " ")
        for (i = 1; i <= 2; i++)
            printf "| %s | %s | %s | %s | %s | %s |\n", ml[i],
                show("weft@2", "wake_" ml[i] "_p50_us"), show("weft@2", "wake_" ml[i] "_p90_us"),
                show("weft@2", "wake_" ml[i] "_p99_us"), show("weft@2", "wake_" ml[i] "_max_us"),
                show("weft@2", "wake_" ml[i] "_msg_ring_wakes")
        printf "| parked, two plain threads (eventfd), no weft | %s | %s | %s | %s | n/a |\n",
            show("os", "wake_parked_eventfd_p50_us"), show("os", "wake_parked_eventfd_p90_us"),
            show("os", "wake_parked_eventfd_p99_us"), show("os", "wake_parked_eventfd_max_us")
    }
' "$raw"

echo
echo '```'
cat "$raw"
echo '```'
exit $status
