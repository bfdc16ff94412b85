#!/usr/bin/env bash
# The I/O benchmarks of issue 4, weft beside its peers in one go on one
# machine, then a markdown table with the ratios and the targets, then every
# line the programs printed.
#
#   nop   weft_io_bench nop (1 task, 64 tasks looping weft_nop) beside the raw
#         liburing NOP peer (shared/peers/micro/uring_nop.c) at batch 1 and
#         batch 32; best of 3 runs of 2M ops on each side
#   read  4 KiB random page-cache reads of a file in a temp dir: 32 weft tasks
#         (weft_io_bench read) against fio's io_uring engine at iodepth 32
#   echo  shared/peers/echo-bench.sh with weft_echo (64 conns x 64 B and
#         512 conns x 4096 B, 3 s each), when build/release/examples/weft_echo
#         exists
#   http  wrk against weft_http and against nginx (worker_processes 1), both
#         pinned to CPU 0 with wrk on CPU 1, HTTP_ROUNDS rounds taking turns,
#         best round each, when weft_http exists
#
# usage: bench/run-io.sh [nop|read|echo|http]...   (none = all)
# env:   NO_BUILD=1     build nothing (default: cmake --preset release, then build the
#                       targets weft_io_bench, weft_echo, weft_http)
#        BUILD_DIR      weft's release build (default build/release)
#        PEERS_DIR      the peers' folder (default <repo root>/../shared/peers)
#        PEERS_BUILD    where the peers are built (default /tmp/peers-build)
#        IO_TMPDIR      where the read benchmark's file goes (default ${TMPDIR:-/tmp})
#        READ_MIB       the file's size in MiB (default 1024; made smaller when
#                       the disk has less room, and the table says so)
#        READ_SECONDS   each read run's duration (default 5)
#        HTTP_SECONDS   each wrk run's duration (default 5)
#        HTTP_ROUNDS    wrk runs per server, taking turns (default 2; best is kept)
# Needs fio, wrk and nginx for the read and http peers (Debian packages;
# `make deps-demo` installs them); a missing one shows as n/a. Takes about
# 100 s in all.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build/release}
peers=${PEERS_DIR:-$root/../shared/peers}
pbuild=${PEERS_BUILD:-/tmp/peers-build}
read_mib=${READ_MIB:-1024}
read_secs=${READ_SECONDS:-5}
http_secs=${HTTP_SECONDS:-5}
bench=$build/bench/weft_io_bench

want() { # want NAME: is NAME among the arguments (or are there none)?
    [ ${#args[@]} -eq 0 ] && return 0
    local a
    for a in "${args[@]}"; do [ "$a" = "$1" ] && return 0; done
    return 1
}
args=("$@")
for a in "${args[@]}"; do
    case $a in nop | read | echo | http) ;; *)
        echo "usage: $0 [nop|read|echo|http]..." >&2
        exit 2
        ;;
    esac
done
note() { echo "run-io.sh: $*" >&2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    # Only the targets used here; the examples are optional.
    note "building weft_io_bench, weft_echo and weft_http (release preset)..."
    (cd "$root" && cmake --preset release >/dev/null &&
        cmake --build "$build" -j"$(nproc)" --target weft_io_bench >/dev/null) || {
        note "building weft_io_bench failed"
        exit 1
    }
    for t in weft_echo weft_http; do
        (cd "$root" && cmake --build "$build" -j"$(nproc)" --target "$t" >/dev/null 2>&1) ||
            note "building $t failed (its benchmark is skipped if there is no older binary)"
    done
fi
if [ ! -x "$bench" ]; then
    note "no weft_io_bench at $bench"
    exit 1
fi
mkdir -p "$pbuild"

raw=$(mktemp)      # every figure, "prog key=value ..." a line
log=$(mktemp)      # every line as printed, for the record
work=""            # the read benchmark's temp dir
srv_pid=""         # servers started by this script
nginx_pid=""
ndir=""            # nginx's config and logs
cleanup() {
    local p
    for p in $srv_pid $nginx_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    [ -n "$work" ] && rm -rf "$work"
    [ -n "$ndir" ] && rm -rf "$ndir"
    rm -f "$raw" "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
emit() { # emit LINE...: record figures (and log them)
    local l
    for l in "$@"; do
        echo "$l" >>"$raw"
        echo "$l" >>"$log"
    done
}
status=0

# ---- nop -------------------------------------------------------------------
if want nop; then
    note "nop: raw liburing NOPs (peer), batch 1 and 32, 3 runs each..."
    if cc -O2 -o "$pbuild/uring_nop" "$peers/micro/uring_nop.c" -luring 2>/dev/null; then
        for b in 1 32; do
            for k in 1 2 3; do
                line=$("$pbuild/uring_nop" 2000000 "$b") && {
                    v=${line##*ns_per_op=}
                    emit "uring_nop batch${b}_run${k}_ns_per_op=$v"
                }
            done
        done
    else
        note "nop: could not build $peers/micro/uring_nop.c (liburing-dev?)"
    fi
    note "nop: weft_io_bench nop..."
    out=$("$bench" nop) || { note "weft_io_bench nop failed"; status=1; }
    emit "$out"
fi

# ---- read ------------------------------------------------------------------
if want read; then
    base=${IO_TMPDIR:-${TMPDIR:-/tmp}}
    work=$(mktemp -d "$base/weft-io-read.XXXXXX")
    avail=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
    mib=$read_mib
    while [ "$mib" -gt 64 ] && [ $((mib + 512)) -gt "${avail:-0}" ]; do mib=$((mib / 2)); done
    [ "$mib" != "$read_mib" ] && note "read: only ${avail} MiB free under $base: using a ${mib} MiB file"
    emit "setup read_file_mib=$mib"
    f=$work/data
    note "read: writing a ${mib} MiB file in $work and reading it into the page cache..."
    if dd if=/dev/urandom of="$f" bs=1M count="$mib" status=none && cat "$f" >/dev/null; then
        note "read: weft_io_bench read (32 tasks, ${read_secs} s)..."
        out=$("$bench" read "$f" "$read_secs" 32) || { note "weft_io_bench read failed"; status=1; }
        emit "$out"
        if command -v fio >/dev/null; then
            # --invalidate=0: fio's default drops the file's pages from the
            # page cache before it starts, which would make it read the disk.
            fio_base=(fio --name=rr --filename="$f" --rw=randread --bs=4k --ioengine=io_uring
                --iodepth=32 --runtime="$read_secs" --time_based --numjobs=1 --size="${mib}M"
                --invalidate=0 --output-format=terse)
            cat "$f" >/dev/null
            note "read: fio (io_uring, iodepth 32, ${read_secs} s)..."
            t=$("${fio_base[@]}") && emit "fio read_4k_rand_iops=$(cut -d';' -f8 <<<"$t")"
            # Context: fio with batching and registered files/buffers.
            cat "$f" >/dev/null
            note "read: fio tuned (batch submit 32, registered files and buffers)..."
            t=$("${fio_base[@]}" --iodepth_batch_submit=32 --iodepth_batch_complete_max=32 \
                --registerfiles --fixedbufs) &&
                emit "fio_tuned read_4k_rand_iops=$(cut -d';' -f8 <<<"$t")"
        else
            note "read: no fio (apt-get install fio): its figures show as n/a"
        fi
    else
        note "read: could not create $f"
        status=1
    fi
    rm -rf "$work"
    work=""
fi

# ---- echo ------------------------------------------------------------------
echo_bin=$build/examples/weft_echo
if want echo; then
    if [ -x "$echo_bin" ] && [ -f "$peers/echo-bench.sh" ]; then
        for shape in "64 64" "512 4096"; do
            set -- $shape
            note "echo: echo-bench.sh $1 conns x $2 B, 3 s per server..."
            out=$(PEERS_BUILD=$pbuild bash "$peers/echo-bench.sh" "$1" "$2" 3 -- \
                "weft=$echo_bin {port}" "weft-multishot=$echo_bin {port} --multishot" 2>/dev/null)
            echo "$out" >>"$log"
            # "NAME conns=.. reqs_per_s=..": prog "echo<C>x<B>:NAME".
            awk -v p="echo${1}x${2}:" 'NF > 1 { $1 = p $1; print }' <<<"$out" >>"$raw"
        done
    else
        note "echo: no $echo_bin (or no echo-bench.sh in $peers): skipped"
    fi
fi

# ---- http ------------------------------------------------------------------
http_bin=$build/examples/weft_http
# cpu_ticks PID...: user+sys clock ticks of the processes.
cpu_ticks() {
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    echo $t
}
wait_listen() {
    for _ in $(seq 50); do
        ss -ltn "sport = :$1" | grep -q LISTEN && return 0
        sleep 0.1
    done
    return 1
}
# run_wrk NAME ROUND PORT PID...: wrk on CPU 1 against the server on PORT,
# whose processes are PID...; logs "http:NAME round=ROUND ... reqs_per_s=..".
run_wrk() {
    local name=$1 round=$2 port=$3
    shift 3
    local c0 c1 out rps lat cpu
    c0=$(cpu_ticks "$@")
    out=$(taskset -c 1 wrk -t1 -c64 -d"${http_secs}s" --latency "http://127.0.0.1:$port/" 2>&1)
    c1=$(cpu_ticks "$@")
    { echo "# wrk against $name, round $round:"; echo "$out"; } >>"$log"
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    # Latency percentiles, and the non-2xx responses and socket errors wrk
    # reports (0 when it prints no such line).
    lat=$(awk '$1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 }
        /Non-2xx/ { bad = $NF } /Socket errors/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
        END { print "p50=" p50 " p99=" p99 " non_2xx=" bad + 0 " socket_errors=" err + 0 }' <<<"$out")
    cpu=$(awk -v a=$((c1 - c0)) -v t="$(getconf CLK_TCK)" -v r="${rps:-0}" -v s="$http_secs" \
        'BEGIN { if (r > 0) printf "%.2f", a / t * 1e6 / (r * s); else print "n/a" }')
    echo "http:$name round=$round $lat server_cpu_us_per_req=$cpu reqs_per_s=${rps:-n/a}" >>"$log"
}
if want http; then
    if [ ! -x "$http_bin" ]; then
        note "http: no $http_bin: skipped"
    elif ! command -v wrk >/dev/null; then
        note "http: no wrk (apt-get install wrk): skipped"
    else
        # Both servers run (each idle while the other is measured) pinned to
        # CPU 0; wrk takes turns between them, so that a slow spell of the
        # machine hits both.
        port=$((20000 + RANDOM % 20000))
        nginx_port=$((port + 1))
        weft_port=$((port + 2))
        nginx_pids=""
        ndir=$(mktemp -d)
        if command -v nginx >/dev/null; then
            cat >"$ndir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $ndir/nginx.pid;
error_log $ndir/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $ndir/body;
    proxy_temp_path $ndir/proxy;
    fastcgi_temp_path $ndir/fastcgi;
    uwsgi_temp_path $ndir/uwsgi;
    scgi_temp_path $ndir/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        location / { return 200 "Hello, world!"; }
    }
}
EOF
            taskset -c 0 nginx -c "$ndir/nginx.conf" -p "$ndir" >/dev/null 2>&1 &
            nginx_pid=$!
            if wait_listen "$nginx_port"; then
                body=$(curl -s "http://127.0.0.1:$nginx_port/" 2>/dev/null || true)
                [ -n "$body" ] && [ "$body" != "Hello, world!" ] && note "http: nginx answered '$body'"
                nginx_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
            else
                note "http: nginx did not start: $(cat "$ndir/error.log" 2>/dev/null)"
            fi
        else
            note "http: no nginx (apt-get install nginx): its figures show as n/a"
        fi
        taskset -c 0 "$http_bin" "$weft_port" >/dev/null 2>&1 &
        srv_pid=$!
        weft_ok=1
        wait_listen "$weft_port" || {
            note "http: weft_http did not start listening on $weft_port"
            weft_ok=0
            status=1
        }
        rounds=${HTTP_ROUNDS:-2}
        for r in $(seq "$rounds"); do
            if [ -n "$nginx_pids" ]; then
                note "http: round $r/$rounds: nginx (1 worker, CPU 0) under wrk -t1 -c64 -d${http_secs}s (CPU 1)..."
                run_wrk nginx "$r" "$nginx_port" $nginx_pids
            fi
            if [ "$weft_ok" = 1 ]; then
                note "http: round $r/$rounds: weft_http (CPU 0) under wrk -t1 -c64 -d${http_secs}s (CPU 1)..."
                run_wrk weft "$r" "$weft_port" "$srv_pid"
            fi
        done
        kill "$srv_pid" 2>/dev/null
        wait "$srv_pid" 2>/dev/null
        srv_pid=""
        if [ -n "$nginx_pid" ]; then
            kill "$nginx_pid" 2>/dev/null
            wait "$nginx_pid" 2>/dev/null
            nginx_pid=""
        fi
        rm -rf "$ndir"
        ndir=""
        # The figures: each server's best round by requests/s.
        awk '$1 ~ /^http:/ {
                v = $NF; sub(/.*=/, "", v)
                if (!($1 in best) || v + 0 > best[$1] + 0) { best[$1] = v; line[$1] = $0 }
            }
            END { for (k in line) { l = line[k]; sub(/ round=[0-9]+/, "", l); print l } }' "$log" >>"$raw"
    fi
fi

# ---- the table -------------------------------------------------------------
awk '
    # "prog k1=v1 k2=v2 ...". Repeated run keys of the raw NOP peer keep the
    # lowest (best of 3, as weft_io_bench reports its own).
    NF >= 2 {
        for (i = 2; i <= NF; i++) {
            n = split($i, kv, "=")
            if (n == 2) val[$1 SUBSEP kv[1]] = kv[2]
        }
        if ($1 == "uring_nop" && match($2, /^batch[0-9]+_run[0-9]+_ns_per_op=/)) {
            split($2, kv, "="); b = kv[1]; sub(/_run[0-9]+/, "", b)
            if (!(("uring_nop" SUBSEP b) in val) || kv[2] + 0 < val["uring_nop" SUBSEP b] + 0)
                val["uring_nop" SUBSEP b] = kv[2]
        }
    }
    function has(p, k) { return ((p SUBSEP k) in val) && val[p SUBSEP k] != "n/a" && val[p SUBSEP k] != "" }
    function get(p, k) { return val[p SUBSEP k] + 0 }
    function show(p, k) { return has(p, k) ? val[p SUBSEP k] : "n/a" }
    # One row: weft (wp, wk) against a peer (pp, pk); target op/limit on
    # weft ÷ peer ("" = information only).
    function row(bench, label, wp, wk, peer, pp, pk, target, op, limit,   r, rs, verdict) {
        rs = "n/a"; verdict = target == "" ? "info" : "n/a"
        if (has(wp, wk) && has(pp, pk) && get(pp, pk) > 0) {
            r = get(wp, wk) / get(pp, pk)
            rs = sprintf("%.2f", r)
            if (op == "<=") verdict = r <= limit ? "pass" : "**miss**"
            else if (op == ">=") verdict = r >= limit ? "pass" : "**miss**"
        }
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", bench, label, show(wp, wk), peer,
            show(pp, pk), rs, target == "" ? "none" : target, verdict
    }
    END {
        print "| benchmark | figure | weft | peer | peer figure | weft ÷ peer | target | result |"
        print "|---|---|---:|---|---:|---:|---|---|"
        row("nop", "ns/op, 1 task", "weft", "nop_1task_ns_per_op", "raw liburing, batch 1",
            "uring_nop", "batch1_ns_per_op", "≤ 1.3×", "<=", 1.3)
        row("nop", "ns/op, 64 tasks", "weft", "nop_64tasks_ns_per_op", "raw liburing, batch 32",
            "uring_nop", "batch32_ns_per_op", "≤ 1.3×", "<=", 1.3)
        mib = has("setup", "read_file_mib") ? val["setup" SUBSEP "read_file_mib"] : "?"
        row("read", "4 KiB random reads/s, " mib " MiB file, 32 tasks", "weft", "read_4k_rand_iops",
            "fio io_uring, iodepth 32", "fio", "read_4k_rand_iops", "≥ 0.9×", ">=", 0.9)
        row("read", "4 KiB random reads/s, " mib " MiB file, 32 tasks", "weft", "read_4k_rand_iops",
            "fio tuned (batch 32, fixed files+bufs)", "fio_tuned", "read_4k_rand_iops", "", "", 0)
        split("64x64 512x4096", shapes, " ")
        for (s = 1; s <= 2; s++) {
            sh = shapes[s]; split(sh, cb, "x"); p = "echo" sh ":"
            lab = "req/s, " cb[1] " conns × " cb[2] " B"
            row("echo", lab, p "weft", "reqs_per_s", "raw liburing", p "raw-liburing", "reqs_per_s", "")
            row("echo", lab, p "weft", "reqs_per_s", "epoll", p "epoll", "reqs_per_s", "")
            row("echo", lab, p "weft", "reqs_per_s", "Tokio", p "tokio", "reqs_per_s", "")
            row("echo", lab " (weft --multishot)", p "weft-multishot", "reqs_per_s", "raw liburing",
                p "raw-liburing", "reqs_per_s", "")
            lab = "server CPU µs/req, " cb[1] " conns × " cb[2] " B"
            row("echo", lab, p "weft", "server_cpu_us_per_req", "raw liburing", p "raw-liburing",
                "server_cpu_us_per_req", "")
            row("echo", lab, p "weft", "server_cpu_us_per_req", "epoll", p "epoll",
                "server_cpu_us_per_req", "")
        }
        row("http", "req/s, wrk -t1 -c64", "http:weft", "reqs_per_s", "nginx (1 worker)", "http:nginx",
            "reqs_per_s", "")
        row("http", "server CPU µs/req", "http:weft", "server_cpu_us_per_req", "nginx (1 worker)",
            "http:nginx", "server_cpu_us_per_req", "")
    }
' "$raw"

echo
echo '```'
cat "$log"
echo '```'
exit "$status"
