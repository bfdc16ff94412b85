#!/usr/bin/env bash
# Runs the peer micro-benchmarks (shared/peers/micro-bench.sh: Boost.Context,
# Tokio, Go) and then weft_micro, in one go on one machine, and prints a
# markdown table of weft's figures beside the peers', the ratios and the
# targets. Builds nothing of weft: point WEFT_MICRO at a weft_micro binary or
# build the release preset first (build/release/bench/weft_micro).
#
# usage: bench/run-micro.sh [THREADS]     (THREADS goes to the peers; default 1)
# env:   WEFT_MICRO   path of weft_micro (default build/release/bench/weft_micro)
#        PEERS_DIR    the peers' folder (default <repo root>/../shared/peers)
#        PEERS_BUILD  where the peers are built (micro-bench.sh; default /tmp/peers-build)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threads=${1:-1}
micro=${WEFT_MICRO:-$root/build/release/bench/weft_micro}
peers=${PEERS_DIR:-$root/../shared/peers}

if [ ! -x "$micro" ]; then
    echo "run-micro.sh: no weft_micro at $micro (build the release preset, or set WEFT_MICRO)" >&2
    exit 1
fi

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

if [ -x "$peers/micro-bench.sh" ] || [ -f "$peers/micro-bench.sh" ]; then
    echo "run-micro.sh: running the peers ($peers/micro-bench.sh $threads)..." >&2
    bash "$peers/micro-bench.sh" "$threads" >>"$raw" ||
        echo "run-micro.sh: micro-bench.sh failed part-way; missing figures show as n/a" >&2
else
    echo "run-micro.sh: no peers at $peers; their columns show as n/a" >&2
fi
echo "run-micro.sh: running $micro..." >&2
if ! "$micro" >>"$raw"; then
    echo "run-micro.sh: weft_micro failed" >&2
    status=1
fi

awk -v threads="$threads" '
    # "prog k1=v1 k2=v2 ...": the last field is the figure, keyed by prog.
    NF >= 2 {
        n = split($NF, kv, "=")
        if (n == 2) val[$1 SUBSEP kv[1]] = kv[2]
    }
    function has(p, k) { return ((p SUBSEP k) in val) }
    function get(p, k) { return val[p SUBSEP k] + 0 }
    function show(p, k) { return has(p, k) ? val[p SUBSEP k] : "n/a" }
    function ratio(p, k, wk) {
        if (!has(p, k) || !has("weft", wk) || get(p, k) == 0) return "n/a"
        return sprintf("%.2f", get("weft", wk) / get(p, k))
    }
    # One row. pk = the peer whose ratio the target is about ("" = absolute).
    function row(label, wk, bk, tk, gk, target, pk, pkey, limit,   r, verdict) {
        verdict = "n/a"
        if (pk == "" && has("weft", wk))
            verdict = get("weft", wk) <= limit ? "pass" : "**miss**"
        else if (pk != "" && has(pk, pkey) && has("weft", wk) && get(pk, pkey) > 0)
            verdict = get("weft", wk) / get(pk, pkey) <= limit ? "pass" : "**miss**"
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label,
            show("weft", wk),
            bk == "" ? "n/a" : show("boost_context", bk),
            tk == "" ? "n/a" : show("tokio", tk),
            gk == "" ? "n/a" : show("go", gk),
            bk == "" ? "n/a" : ratio("boost_context", bk, wk),
            tk == "" ? "n/a" : ratio("tokio", tk, wk),
            gk == "" ? "n/a" : ratio("go", gk, wk),
            target, verdict
    }
    END {
        tok = threads <= 1 ? "Tokio current_thread" : "Tokio multi_thread (" threads ")"
        go = "Go (GOMAXPROCS=" threads ")"
        printf "| metric | weft | Boost.Context | %s | %s | weft ÷ Boost | weft ÷ Tokio | weft ÷ Go | target | result |\n", tok, go
        print "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
        row("switch ns", "ns_per_switch", "ns_per_switch", "", "",
            "≤ 2× Boost", "boost_context", "ns_per_switch", 2.0)
        row("spawn+join ns/task", "spawn_join_ns_per_task", "", "spawn_join_ns_per_task",
            "spawn_join_ns_per_task", "≥ 5× faster than Tokio (≤ 0.2)", "tokio",
            "spawn_join_ns_per_task", 0.2)
        row("yield ns/switch", "yield_ns_per_switch", "", "yield_ns_per_switch", "",
            "≥ 5× faster than Tokio (≤ 0.2)", "tokio", "yield_ns_per_switch", 0.2)
        k = "sleep_1ms_x100000_cold_total_ms"
        row("100k sleeps cold ms", k, "", k, k, "≤ 1.2× Tokio cold", "tokio", k, 1.2)
        k = "sleep_1ms_x100000_warm_total_ms"
        row("100k sleeps warm ms", k, "", k, k, "≤ 0.5× Tokio warm", "tokio", k, 0.5)
        # Void when some sleepers ended before all had parked: fewer than
        # 1M stacks were held at the peak.
        if (get("weft", "sleep_1m_tasks_finished_early") > 0)
            printf "| 1M sleepers RSS bytes/task | %s | n/a | n/a | n/a | n/a | n/a | n/a | ≤ 6 KiB (6144 B) | n/a (%s sleepers ended before the last parked) |\n", \
                show("weft", "sleep_1m_tasks_per_task_bytes"), show("weft", "sleep_1m_tasks_finished_early")
        else
            row("1M sleepers RSS bytes/task", "sleep_1m_tasks_per_task_bytes", "", "", "",
                "≤ 6 KiB (6144 B)", "", "", 6144)
        # Not a target: the second storm, on reused records.
        if (has("weft", "spawn_join_warm_ns_per_task"))
            printf "\nspawn+join again in the same runtime, on reused task records: %s ns/task (Tokio prints no such figure).\n", \
                show("weft", "spawn_join_warm_ns_per_task")
        # Not a target: the sleep rounds without the stack helper thread,
        # which faults stacks in on another CPU (Tokio current_thread has one).
        if (has("weft", "sleep_1ms_x100000_no_helper_cold_total_ms"))
            printf "\n100k sleeps without the stack helper thread (one thread, as Tokio current_thread): cold %s ms (%s× Tokio cold), warm %s ms.\n", \
                show("weft", "sleep_1ms_x100000_no_helper_cold_total_ms"), \
                ratio("tokio", "sleep_1ms_x100000_cold_total_ms", "sleep_1ms_x100000_no_helper_cold_total_ms"), \
                show("weft", "sleep_1ms_x100000_no_helper_warm_total_ms")
        # Not a target: the warm sleep round behind a long timer armed first.
        if (has("weft", "sleep_1ms_x100000_behind_60s_warm_total_ms"))
            printf "\n100k sleeps warm with a 60 s sleeper armed first (weft_micro sleeplong): %s ms (no peer prints it).\n", \
                show("weft", "sleep_1ms_x100000_behind_60s_warm_total_ms")
        # Not a target: what 100k fresh pages cost on this machine, the floor
        # under a cold round that gives each sleeper a stack page of its own.
        if (has("weft", "fresh_page_x100000_ms")) {
            printf "\nA fresh page here: %s ns at first touch; 100k of them: %s ms", \
                show("weft", "fresh_page_first_touch_ns"), show("weft", "fresh_page_x100000_ms")
            if (has("tokio", "sleep_1ms_x100000_cold_total_ms"))
                printf " (the cold target, 1.2× Tokio cold: %.1f ms)", \
                    1.2 * get("tokio", "sleep_1ms_x100000_cold_total_ms")
            printf ".\n"
        }
    }
' "$raw"

echo
echo '```'
cat "$raw"
echo '```'
exit "${status:-0}"
