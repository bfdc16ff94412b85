#!/usr/bin/env bash
# chat_smoke.sh - smoke test of weft_chat (examples/chat.c): three clients,
# each line reaching the others and not its sender; a client leaving; an
# idle client dropped with a goodbye; a stop on SIGINT that says goodbye to
# the clients still connected.
# usage: chat_smoke.sh PATH/TO/weft_chat
test_name=chat_smoke
# shellcheck source=examples/smoke/lib.sh
. "$(dirname "$0")/lib.sh"
bin=$1

# expect FD LINE: the next line on FD is LINE.
expect() {
    local got
    read -r -t 60 -u "$1" got || fail "expected '$2', got nothing"
    [ "$got" = "$2" ] || fail "expected '$2', got '$got'"
}

# join VAR: connects a client, reads its welcome; VAR gets the fd, ID_VAR its number.
join() {
    local fd line
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect"
    read -r -t 60 -u "$fd" line || fail "no welcome"
    case $line in
    "welcome, you are #"*) ;;
    *) fail "welcome: got '$line'" ;;
    esac
    printf -v "$1" '%s' "$fd"
    printf -v "id_$1" '%s' "${line#welcome, you are #}"
}

start_server "$bin" 0 --idle-ms 600000
join a
join b
join c
# The room's lines are posted once the three are subscribed (welcome said).
printf 'hello from a\n' >&"$a"
expect "$b" "#$id_a: hello from a"
expect "$c" "#$id_a: hello from a"
printf 'hi\n' >&"$b"
expect "$a" "#$id_b: hi" # a's own line never came back to it
expect "$c" "#$id_b: hi"
exec {b}>&- # b leaves
printf 'still here\n' >&"$c"
expect "$a" "#$id_c: still here"
echo "chat_smoke: lines reach the others ok"
kill -INT "$pid"
wait "$pid"
rc=$?
pid=
[ "$rc" = 0 ] || fail "exit status $rc after SIGINT"
grep -q "ops by opcode" "$tmp/out" || fail "no ops-by-opcode report after SIGINT"
expect "$a" "the server is stopping, bye"
expect "$c" "the server is stopping, bye"
exec {a}>&- {c}>&-
echo "chat_smoke: SIGINT says goodbye ok"

# An idle client is dropped, with a goodbye.
start_server "$bin" 0 --idle-ms 200
join d
expect "$d" "idle too long, bye"
read -r -t 60 -u "$d" line && fail "still open after the idle goodbye: '$line'"
exec {d}>&-
stop_server
echo "chat_smoke: idle client dropped ok"
