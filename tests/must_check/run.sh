#!/usr/bin/env bash
# WEFT_MUST_CHECK really warns: for every function the public headers mark
# with it, a call that drops the result must fail to compile under
# -Werror=unused-result, and the same call with its result used must
# compile. Runs with the build's C compiler and, when installed, gcc and
# clang. usage: run.sh SOURCE_DIR [CC]
set -euo pipefail
src=$1
build_cc=${2:-gcc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One call per marked function, its arguments made from a void *p.
declare -A call=(
  [weft_mutex_lock]='weft_mutex_lock((weft_mutex *)p)'
  [weft_mutex_trylock]='weft_mutex_trylock((weft_mutex *)p)'
  [weft_sem_acquire]='weft_sem_acquire((weft_sem *)p)'
  [weft_sem_try_acquire]='weft_sem_try_acquire((weft_sem *)p)'
  [weft_watermark_wait]='weft_watermark_wait((weft_watermark *)p, 1)'
  [weft_write_all]='weft_write_all(1, p, 1, 0, NULL)'
  [weft_send_all]='weft_send_all(1, p, 1, 0, NULL)'
  [weft_writev_all]='weft_writev_all(1, (struct iovec *)p, 1, 0, NULL)'
  [weft_sendv_all]='weft_sendv_all(1, (struct iovec *)p, 1, 0, NULL)'
  [weft_readv_all]='weft_readv_all(0, (struct iovec *)p, 1, 0, NULL)'
  [weft_write_fixed_all]='weft_write_fixed_all(1, p, 1, 0, 0, NULL)'
  [weft_read_fixed_all]='weft_read_fixed_all(0, p, 1, 0, 0, NULL)'
  [weft_read_all]='weft_read_all(0, p, 1, 0, NULL)'
  [weft_recv_all]='weft_recv_all(0, p, 1, 0, NULL)'
  [weft_reader_read_all]='weft_reader_read_all((weft_reader *)p, p, 1, NULL)'
  [weft_relay]='weft_relay(0, 1, NULL, (weft_relay_counts *)p)'
  [weft_deadline_push]='weft_deadline_push((uint64_t)(uintptr_t)p)'
  [weft_deadline_suspend]='weft_deadline_suspend()'
  [weft_deadline_push_in]='weft_deadline_push_in((uint64_t)(uintptr_t)p)'
  [weft_select]='weft_select((weft_select_case *)p, 1)'
  [weft_try_select]='weft_try_select((weft_select_case *)p, 1)'
  [weft_select_blocking]='weft_select_blocking((weft_select_case *)p, 1)'
  [weft_select_blocking_for]='weft_select_blocking_for((weft_select_case *)p, 1, 0)'
  [weft_process_spawn]='weft_process_spawn((weft_process **)p, "x", (char *const *)p, NULL)'
  [weft_process_output]='weft_process_output((weft_process *)p, (weft_output *)p, NULL)'
  [weft_dial]='weft_dial("h", "1", NULL)'
  [weft_dial_addrs]='weft_dial_addrs((const struct addrinfo *)p, NULL)'
  [weft_listen_on]='weft_listen_on("h", "1", NULL)'
)

# The marked functions, read from the headers (a declaration may span
# lines, its return type any type): a new one without a line above fails
# the test instead of going unchecked.
marked=$(cat "$src"/include/weft/*.h | tr '\n' ' ' |
         grep -o 'WEFT_MUST_CHECK[^;(]*[^a-zA-Z0-9_]weft_[a-zA-Z0-9_]* *(' |
         sed 's/.*\(weft_[a-zA-Z0-9_]*\) *(/\1/' | sort -u)
[ -n "$marked" ] || { echo "must_check: no marked function found"; exit 1; }

compilers=("$build_cc")
for cc in gcc clang; do
  command -v "$cc" >/dev/null &&
    [ "$(readlink -f "$(command -v "$cc")")" != "$(readlink -f "$(command -v "$build_cc")")" ] &&
    compilers+=("$cc")
done
passed=0 failed=0
for f in $marked; do
  if [ -z "${call[$f]:-}" ]; then
    echo "must_check: $f is marked WEFT_MUST_CHECK but has no call in $0"
    failed=$((failed + 1))
    continue
  fi
  printf '#include <weft.h>\nvoid drop(void *p) { %s; }\n' "${call[$f]}" > "$tmp/drop.c"
  printf '#include <weft.h>\nint use(void *p) { return %s; }\n' "${call[$f]}" > "$tmp/use.c"
  for cc in "${compilers[@]}"; do
    # Not -fsyntax-only: gcc looks for dropped results only when it
    # generates code.
    flags=(-std=c11 -D_GNU_SOURCE -c -o "$tmp/x.o" -Werror=unused-result -I "$src/include")
    if "$cc" "${flags[@]}" "$tmp/drop.c" 2> "$tmp/err"; then
      echo "must_check: $cc accepts a dropped result of $f"
      failed=$((failed + 1))
    elif ! grep -q "$f" "$tmp/err" || ! grep -qi 'unused' "$tmp/err"; then
      echo "must_check: $cc rejects the dropped result of $f for another reason:"
      cat "$tmp/err"
      failed=$((failed + 1))
    elif ! "$cc" "${flags[@]}" "$tmp/use.c" 2> "$tmp/err"; then
      echo "must_check: $cc rejects a used result of $f:"
      cat "$tmp/err"
      failed=$((failed + 1))
    else
      passed=$((passed + 1))
    fi
  done
done
echo "must_check: $passed passed, $failed failed (${compilers[*]})"
[ "$failed" -eq 0 ]
