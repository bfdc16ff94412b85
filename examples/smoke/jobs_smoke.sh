#!/usr/bin/env bash
# jobs_smoke.sh - smoke test of weft_jobs (examples/jobs.c): each kind of
# job reported as it ended, the summary, a job over its time limit stopped,
# a background process that holds a job's pipes killed, SIGINT stopping
# every job, and no process left behind in any case.
# usage: jobs_smoke.sh PATH/TO/weft_jobs
test_name=jobs_smoke
# shellcheck source=examples/smoke/lib.sh
. "$(dirname "$0")/lib.sh"
bin=$1

# The processes still running whose command line starts "sleep 10<digit>"
# (the durations below mark this test's own).
left_behind() {
    for f in /proc/[0-9]*/cmdline; do
        { tr '\0' ' ' <"$f"; } 2>/dev/null # gone meanwhile: nothing
        echo
    done | grep -c '^sleep 10[1-9] ' || true
}

"$bin" 2 1000 'echo hi; echo oops >&2; exit 3' 'echo fine' 'exec sleep 101' \
    'sleep 102 & echo bg' 'kill -TERM $$' >"$tmp/out" 2>"$tmp/err"
status=$?
[ "$status" = 1 ] || fail "exit status $status, not 1"
for line in '[1] exit 3' '[1] hi' '[1]! oops' '[2] exit 0' '[2] fine' '[3] timed out' \
    '[4] exit 0' '[4] bg' '[5] killed by SIGTERM' 'ok 2, failed 2, timed out 1'; do
    grep -qxF -- "$line" "$tmp/out" || fail "no line '$line' in: $(cat "$tmp/out")"
done
n=$(left_behind)
[ "$n" = 0 ] || fail "$n sleep process(es) left behind"
echo "jobs_smoke: each kind of job reported, nothing left behind"

# SIGINT while jobs run: each is stopped, the rest never start.
"$bin" 2 60000 'exec sleep 103' 'exec sleep 104' 'exec sleep 105' >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 300); do
    [ "$(left_behind)" = 2 ] && break
    sleep 0.1
done
[ "$(left_behind)" = 2 ] || fail "the first two jobs did not start"
kill -INT "$pid"
for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "still running 30 s after SIGINT"
wait "$pid"
status=$?
pid=
[ "$status" = 130 ] || fail "exit status $status after SIGINT, not 130"
grep -qxF 'ok 0, failed 2, timed out 0 (interrupted)' "$tmp/out" ||
    fail "summary after SIGINT: $(cat "$tmp/out")"
n=$(left_behind)
[ "$n" = 0 ] || fail "$n sleep process(es) left behind after SIGINT"
echo "jobs_smoke: SIGINT stops every job"
