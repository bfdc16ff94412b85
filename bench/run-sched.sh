#!/usr/bin/env bash
# Runs weft_sched_bench (the scheduling benchmarks: priority, tail, overhead,
# yield_maybe) and prints markdown tables: the targets with pass/miss, then
# the priority variants and the tail policies in full, then every line the
# program printed. Builds nothing: point WEFT_SCHED_BENCH at a binary or build
# the release preset first (build/release/bench/weft_sched_bench).
#
# usage: bench/run-sched.sh [priority|tail|overhead|yield_maybe]...   (none = all)
# env:   WEFT_SCHED_BENCH  path of weft_sched_bench
#                          (default build/release/bench/weft_sched_bench)
# Takes about 190 s for all four (priority alone ~50 s, tail ~135 s).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${WEFT_SCHED_BENCH:-$root/build/release/bench/weft_sched_bench}

if [ ! -x "$bench" ]; then
    echo "run-sched.sh: no weft_sched_bench at $bench (build the release preset, or set WEFT_SCHED_BENCH)" >&2
    exit 1
fi

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

echo "run-sched.sh: running $bench $*..." >&2
if ! "$bench" "$@" >"$raw"; then
    echo "run-sched.sh: weft_sched_bench failed" >&2
    status=1
fi

awk '
    $1 == "weft" && NF == 2 {
        n = split($2, kv, "=")
        if (n == 2) val[kv[1]] = kv[2]
    }
    function has(k) { return (k in val) }
    function get(k) { return val[k] + 0 }
    function show(k) { return has(k) ? val[k] : "n/a" }
    # A target on the ratio a / b: op "<=" or ">=" against limit.
    function row(bench, label, a, b, target, op, limit,   r, verdict, rs) {
        verdict = "n/a"; rs = "n/a"
        if (has(a) && has(b) && get(b) > 0) {
            r = get(a) / get(b)
            rs = sprintf("%.2f", r)
            if (op == "<=") verdict = r <= limit ? "pass" : "**miss**"
            else verdict = r >= limit ? "pass" : "**miss**"
        }
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", bench, label, show(a), show(b), rs, target, verdict
    }
    function info(bench, label, a, b,   rs) {
        rs = (b != "" && has(a) && has(b) && get(b) > 0) ? sprintf("%.2f", get(a) / get(b)) : "n/a"
        printf "| %s | %s | %s | %s | %s | none | info |\n", bench, label, show(a),
            b == "" ? "n/a" : show(b), rs
    }
    END {
        print "| benchmark | figure | weft | reference | ratio | target | result |"
        print "|---|---|---:|---:|---:|---|---|"
        row("priority", "fg p99 queue delay µs: fg+bg (99:1) / fg-only",
            "priority_fgbg_qdelay_p99_us", "priority_fgonly_qdelay_p99_us", "≤ 1.1× fg-only", "<=", 1.1)
        row("priority", "bg iterations/s: fg+bg (99:1) / single FIFO",
            "priority_fgbg_bg_iters_per_s", "priority_fifo_bg_iters_per_s", "≥ 0.95× single FIFO", ">=", 0.95)
        row("tail", "thin p99 latency µs: LAS / runnable FIFO",
            "tail_las_thin_p99_us", "tail_fifo_thin_p99_us", "≤ 0.7× FIFO", "<=", 0.7)
        row("tail", "thin p99 latency µs: QLAS / runnable FIFO",
            "tail_qlas_thin_p99_us", "tail_fifo_thin_p99_us", "≤ 0.7× FIFO", "<=", 0.7)
        info("tail", "Clockworker'"'"'s mix (context): thin p99 µs, LAS / runnable FIFO",
             "tail_cw_las_thin_p99_us", "tail_cw_fifo_thin_p99_us")
        info("tail", "Clockworker'"'"'s mix (context): thin p99 µs, QLAS / runnable FIFO",
             "tail_cw_qlas_thin_p99_us", "tail_cw_fifo_thin_p99_us")
        info("tail", "Clockworker'"'"'s mix and sampling, one size per class (context): thin p99 µs, LAS / runnable FIFO",
             "tail_cw_same_las_thin_p99_us", "tail_cw_same_fifo_thin_p99_us")
        info("tail", "Clockworker'"'"'s mix and sampling, one size per class (context): thin p99 µs, QLAS / runnable FIFO",
             "tail_cw_same_qlas_thin_p99_us", "tail_cw_same_fifo_thin_p99_us")
        row("overhead", "spawn+run+join ns/task: LAS / FIFO",
            "overhead_las_ns_per_task", "overhead_fifo_ns_per_task", "≤ 1.3× FIFO", "<=", 1.3)
        row("overhead", "spawn+run+join ns/task: QLAS / FIFO",
            "overhead_qlas_ns_per_task", "overhead_fifo_ns_per_task", "≤ 1.3× FIFO", "<=", 1.3)
        info("overhead", "spawn+run+join ns/task: arrival FIFO / FIFO",
             "overhead_arrival_fifo_ns_per_task", "overhead_fifo_ns_per_task")
        info("overhead", "cold (fresh records) spawn+run+join ns/task: LAS / FIFO",
             "overhead_las_cold_ns_per_task", "overhead_fifo_cold_ns_per_task")
        info("overhead", "cold (fresh records) spawn+run+join ns/task: QLAS / FIFO",
             "overhead_qlas_cold_ns_per_task", "overhead_fifo_cold_ns_per_task")
        info("yield_maybe", "ns/call, default config", "yield_maybe_default_ns_per_call", "")
        info("yield_maybe", "ns/call, stats on", "yield_maybe_stats_ns_per_call", "")
        info("yield_maybe", "ns/call, two queues (one idle)", "yield_maybe_two_queues_ns_per_call", "")

        print ""
        print "Priority (µs; median of 3 runs each; queue delay from the scheduled arrival):"
        print ""
        print "| variant | qdelay p50 | p90 | p99 | latency p50 | p90 | p99 | bg iter/s | generator late p50 | p99 |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        split("fgonly fgbg fifo", vk, " ")
        split("fg-only|fg+bg 99:1|single FIFO", vl, "|")
        for (i = 1; i <= 3; i++) {
            p = "priority_" vk[i] "_"
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", vl[i],
                show(p "qdelay_p50_us"), show(p "qdelay_p90_us"), show(p "qdelay_p99_us"),
                show(p "latency_p50_us"), show(p "latency_p90_us"), show(p "latency_p99_us"),
                show(p "bg_iters_per_s"), show(p "gen_late_p50_us"), show(p "gen_late_p99_us")
        }

        tail_table("tail_", "Tail", 5)
        tail_table("tail_cw_", "Tail on Clockworker'"'"'s own mix (context: 90:10, thin 0-3 segments, fat 5-10)", 3)
        tail_table("tail_cw_same_", "Tail on Clockworker'"'"'s mix with its sampling (context: every thin task does the same work, " show("tail_cw_same_thin_segments") " segments, and every fat one, " show("tail_cw_same_fat_segments") ")", 3)
    }
    function tail_table(k, title, n,   i, p, r) {
        if (!has(k "fifo_thin_p99_us")) return
        print ""
        printf "%s (µs; median of 3 runs per policy by thin p99, %s tasks at %s/s, %s%% load):\n", title, show(k "tasks"), show(k "rate_per_s"), show(k "load_pct")
        print ""
        print "| policy | thin p50 | thin p99 | fat p50 | fat p99 | thin p99 ÷ FIFO |"
        print "|---|---:|---:|---:|---:|---:|"
        split("fifo las qlas arrival_fifo qlas_q2ms", tk, " ")
        split("runnable FIFO|LAS|QLAS|arrival FIFO (context)|QLAS, quantum 2 ms (context)", tl, "|")
        for (i = 1; i <= n; i++) {
            p = k tk[i] "_"
            r = "n/a"
            if (has(p "thin_p99_us") && get(k "fifo_thin_p99_us") > 0)
                r = sprintf("%.2f", get(p "thin_p99_us") / get(k "fifo_thin_p99_us"))
            printf "| %s | %s | %s | %s | %s | %s |\n", tl[i], show(p "thin_p50_us"),
                show(p "thin_p99_us"), show(p "fat_p50_us"), show(p "fat_p99_us"), r
        }
    }
' "$raw"

echo
echo '```'
cat "$raw"
echo '```'
exit "${status:-0}"
