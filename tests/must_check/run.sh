#!/usr/bin/env bash
# WEFT_MUST_CHECK really warns: for every function the public headers mark
# with it, a call that drops the result must fail to compile under
# -Werror=unused-result, and the same call with its result used must
# compile. Runs with gcc and, when installed, clang. usage: run.sh SOURCE_DIR
set -euo pipefail
src=$1
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
)

# The marked functions, read from the headers: a new one without a line
# above fails the test instead of going unchecked.
marked=$(grep -ho 'WEFT_MUST_CHECK [a-z_ ]*\*\? *weft_[a-z_0-9]*(' "$src"/include/weft/*.h |
         sed 's/.*\(weft_[a-z_0-9]*\)(/\1/' | sort -u)
[ -n "$marked" ] || { echo "must_check: no marked function found"; exit 1; }

# Not -fsyntax-only: gcc looks for dropped results only when it generates
# code.
# And the other way: every function above must still be marked.
for f in "${!call[@]}"; do
  grep -qx "$f" <<< "$marked" || { echo "must_check: $f lost its WEFT_MUST_CHECK"; exit 1; }
done

compilers=(gcc)
command -v clang >/dev/null && compilers+=(clang)
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
