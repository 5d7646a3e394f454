#!/usr/bin/env bash
# The highest call rate with no failed call, `softphone load` against one `sipp -sn uac`, on
# loopback. Two targets: the service's echo user (`switchboard serve --data none`), and a
# `sipp -sn uas` sink, which shows a generator's own ceiling when the service is the limit.
#
# Each step places STEP_SECS seconds' worth of calls (INVITE, 200, ACK, BYE, 200, no hold) at one
# rate, against a freshly started target. A step passes when every call succeeded and the
# generator kept the pace: wall <= 1.1 x STEP_SECS + 0.6 s (wall: from starting the generator to
# its exit; the 0.6 s leaves room for start-up and one late retransmission). A ramp stops at its
# first failing step; the figure is its last passing rate. Each ramp runs REPS times: the median.
#
# Usage:   bench/load.sh            (after cargo build --release --bin softphone --bin switchboard)
# Env:     BIN=target/release  STEP_SECS=5  REPS=3  WORKERS=(cores)
#          ECHO_RATES="1000 2000 ... 14000"  SINK_RATES="1000 2000 ... 12000"
# Needs:   sipp (Debian package sip-tester), bc.
# Bounded: every generator runs with a timeout (STEP_SECS + 20 s), every process started here is
# stopped by its PID, and nothing listens beyond 127.0.0.1.
set -euo pipefail

BIN=${BIN:-target/release}
STEP_SECS=${STEP_SECS:-5}
REPS=${REPS:-3}
WORKERS=${WORKERS:-$(nproc)}
ECHO_RATES=${ECHO_RATES:-"1000 2000 3000 4000 5000 6000 7000 8000 10000 12000 14000"}
SINK_RATES=${SINK_RATES:-"1000 2000 3000 4000 5000 6000 7000 8000 9000 10000 12000"}
LIMIT=$((STEP_SECS + 20))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sb-load-bench.XXXXXX")
TARGET_PID=""

for tool in "$BIN/softphone" "$BIN/switchboard"; do
    [ -x "$tool" ] || { echo "load.sh: $tool not found; build with cargo build --release first" >&2; exit 2; }
done
command -v sipp >/dev/null || { echo "load.sh: sipp not found (apt-get install sip-tester)" >&2; exit 2; }
command -v bc >/dev/null || { echo "load.sh: bc not found" >&2; exit 2; }

# The load comes from one address and loopback is not exempt from the per-source rate limit
# (issue 14): turn it off where the binary has it, and say so.
NO_LIMIT=()
if "$BIN/switchboard" serve --help 2>/dev/null | grep -q -- '--rate-limit'; then
    NO_LIMIT=(--rate-limit 0)
    echo "# switchboard runs with rate_limit = 0 (--rate-limit 0): the load comes from one address"
fi

stop_target() {
    if [ -n "$TARGET_PID" ]; then
        kill "$TARGET_PID" 2>/dev/null || true
        wait "$TARGET_PID" 2>/dev/null || true
        TARGET_PID=""
    fi
}
cleanup() { stop_target; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# All the load comes from one address, far past the caps a stranger gets (issue 14 point 5).
SB_CAPS_OFF=(--max-echo-calls-per-source 0 --unauth-port-share 100 --max-transactions 2000000)

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_target echo|sink: starts a fresh target; sets TARGET_PID, TARGET_PORT and TARGET_USER.
start_target() {
    case $1 in
    echo)
        "$BIN/switchboard" serve --data none --listen 127.0.0.1:0 "${SB_CAPS_OFF[@]}" "${NO_LIMIT[@]}" >"$WORK/svc.out" 2>"$WORK/svc.err" &
        TARGET_PID=$!
        TARGET_USER=echo
        TARGET_PORT=""
        for _ in $(seq 100); do
            TARGET_PORT=$(grep -o 'udp 127.0.0.1:[0-9]*' "$WORK/svc.out" 2>/dev/null | head -1 | cut -d: -f2 || true)
            [ -n "$TARGET_PORT" ] && break
            sleep 0.05
        done
        [ -n "$TARGET_PORT" ] || { echo "load.sh: the service did not start" >&2; exit 1; }
        ;;
    sink)
        TARGET_PORT=$(free_port)
        TARGET_USER=service
        sipp -sn uas -i 127.0.0.1 -p "$TARGET_PORT" -nostdin >/dev/null 2>&1 &
        TARGET_PID=$!
        sleep 0.3
        ;;
    esac
}

# run_softphone RATE CALLS: prints "OK FAILED WALL_S".
run_softphone() {
    local t0 t1 out
    t0=$(date +%s.%N)
    out=$(timeout "$LIMIT" "$BIN/softphone" load "sip:$TARGET_USER@127.0.0.1:$TARGET_PORT" --rate "$1" --calls "$2" \
        --workers "$WORKERS" --timeout "$((STEP_SECS + 10))" 2>/dev/null || true)
    t1=$(date +%s.%N)
    echo "$(awk '$1=="ok"{print $2}' <<<"$out" | grep . || echo 0) $(awk '$1=="failed"{print $2}' <<<"$out" | grep . || echo "$2") $(bc <<<"$t1 - $t0")"
}

# run_sipp RATE CALLS: prints "OK FAILED WALL_S" (from sipp's statistics file).
run_sipp() {
    local t0 t1 stat="$WORK/sipp_stat.csv"
    rm -f "$stat"
    t0=$(date +%s.%N)
    (cd "$WORK" && timeout "$LIMIT" sipp -sn uac -r "$1" -m "$2" -d 0 -s "$TARGET_USER" -i 127.0.0.1 -p "$(free_port)" \
        "127.0.0.1:$TARGET_PORT" -nostdin -timeout "$((STEP_SECS + 10))s" -trace_stat -stf "$stat" -fd 1 >/dev/null 2>&1) || true
    t1=$(date +%s.%N)
    if [ -s "$stat" ]; then
        awk -F';' -v wall="$(bc <<<"$t1 - $t0")" 'NR==1{for(i=1;i<=NF;i++){if($i=="SuccessfulCall(C)")s=i;if($i=="FailedCall(C)")f=i}}
            END{print $s+0, $f+0, wall}' "$stat"
    else
        echo "0 $2 $(bc <<<"$t1 - $t0")"
    fi
}

# ramp TOOL TARGET "RATES": prints the last passing rate (0 if none); logs each step to stderr.
ramp() {
    local tool=$1 target=$2 best=0 rate calls ok failed wall achieved
    for rate in $3; do
        calls=$((rate * STEP_SECS))
        start_target "$target"
        read -r ok failed wall < <("run_$tool" "$rate" "$calls")
        stop_target
        achieved=$(bc <<<"scale=1; $ok / $wall")
        printf '  %-9s -> %-4s rate %6s  ok %7s  failed %6s  wall %6.2f s  achieved %8s/s\n' \
            "$tool" "$target" "$rate" "$ok" "$failed" "$wall" "$achieved" >&2
        if [ "$failed" -eq 0 ] && [ "$ok" -eq "$calls" ] && [ "$(bc <<<"$wall <= 1.1 * $STEP_SECS + 0.6")" -eq 1 ]; then
            best=$rate
        else
            break
        fi
    done
    echo "$best"
}

median() { tr ' ' '\n' <<<"$*" | grep . | sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

declare -A RESULT
for target in echo sink; do
    rates=$ECHO_RATES
    [ "$target" = sink ] && rates=$SINK_RATES
    for tool in softphone sipp; do
        runs=""
        for rep in $(seq "$REPS"); do
            echo "$tool -> $target, run $rep/$REPS" >&2
            runs="$runs $(ramp "$tool" "$target" "$rates")"
        done
        RESULT[$tool,$target]="$(median $runs) (runs:$runs)"
    done
done

echo
echo "switchboard caps lifted for one-address load: ${SB_CAPS_OFF[*]}"
echo "max calls/s with 0 failed (median of $REPS ramps, $STEP_SECS s per step, softphone load with $WORKERS workers)"
printf '%-34s %-28s %-28s\n' "generator" "-> switchboard echo" "-> sipp -sn uas"
printf '%-34s %-28s %-28s\n' "softphone load" "${RESULT[softphone,echo]}" "${RESULT[softphone,sink]}"
printf '%-34s %-28s %-28s\n' "sipp -sn uac" "${RESULT[sipp,echo]}" "${RESULT[sipp,sink]}"
