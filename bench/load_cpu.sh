#!/usr/bin/env bash
# CPU per 10k calls at one rate, `softphone load` beside one `sipp -sn uac`, against the same target
# (a fresh `switchboard serve --data none` echo user per run), with the counts that do not depend on
# what else runs on a shared machine: system calls and context switches per call.
#
# Each run: the generator places CALLS calls (INVITE, 200, ACK, BYE, 200, no hold) at RATE calls/s
# under `perf stat -e raw_syscalls:sys_enter,context-switches,task-clock` (tracepoints and a
# software counter: no hardware counters needed); task-clock is the generator's CPU time, all its
# threads. Runs alternate softphone, sipp, REPS times.
#
# TOOL=callgrind runs each generator under valgrind --tool=callgrind instead and prints its
# user-space instructions per call (all threads, start-up included; use a moderate RATE, e.g. 200).
#
# Usage:   bench/load_cpu.sh        (after cargo build --release --bin softphone --bin switchboard)
# Env:     BIN=target/release (softphone)  SB_BIN=$BIN (switchboard)  RATE=1000  CALLS=10000
#          REPS=3  WORKERS=(softphone's default)  TOOLS="softphone sipp"  TOOL=perf|callgrind
# Prints one line per run: tool, ok, failed, CPU-s per 10k calls, syscalls/call, ctx switches/call
# (TOOL=callgrind: instructions per call).
set -euo pipefail

BIN=${BIN:-target/release}
SB_BIN=${SB_BIN:-$BIN}
RATE=${RATE:-1000}
CALLS=${CALLS:-10000}
REPS=${REPS:-3}
WORKERS=${WORKERS:-}
TOOLS=${TOOLS:-"softphone sipp"}
TOOL=${TOOL:-perf}
LIMIT=$((CALLS / RATE + 40))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sb-load-cpu.XXXXXX")
TARGET_PID=""

for tool in "$BIN/softphone" "$SB_BIN/switchboard"; do
    [ -x "$tool" ] || { echo "load_cpu.sh: $tool not found" >&2; exit 2; }
done
for t in sipp perf valgrind; do command -v $t >/dev/null || { echo "load_cpu.sh: $t not found" >&2; exit 2; }; done

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

NO_LIMIT=()
"$SB_BIN/switchboard" serve --help 2>/dev/null | grep -q -- '--rate-limit' && NO_LIMIT=(--rate-limit 0)
SB_CAPS_OFF=(--max-echo-calls-per-source 0 --unauth-port-share 100 --max-transactions 2000000)
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_target() {
    "$SB_BIN/switchboard" serve --data none --listen 127.0.0.1:0 "${SB_CAPS_OFF[@]}" "${NO_LIMIT[@]}" >"$WORK/svc.out" 2>"$WORK/svc.err" &
    TARGET_PID=$!
    TARGET_PORT=""
    for _ in $(seq 100); do
        TARGET_PORT=$(grep -o 'udp 127.0.0.1:[0-9]*' "$WORK/svc.out" 2>/dev/null | head -1 | cut -d: -f2 || true)
        [ -n "$TARGET_PORT" ] && break
        sleep 0.05
    done
    [ -n "$TARGET_PORT" ] || { echo "load_cpu.sh: the service did not start" >&2; exit 1; }
}

# The wrapper every generator runs under.
if [ "$TOOL" = callgrind ]; then
    WRAP=(valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out")
else
    WRAP=(perf stat -x' ' -e raw_syscalls:sys_enter,context-switches,task-clock -o "$WORK/perf.out")
fi

# perf_field NAME: the count of one event in $WORK/perf.out (commas dropped).
perf_field() { awk -v ev="$1" '$0 ~ ev {gsub(",", "", $1); print $1; exit}' "$WORK/perf.out"; }

run_one() {
    local tool=$1 ok failed
    start_target
    case $tool in
    softphone)
        timeout "$LIMIT" "${WRAP[@]}" \
            "$BIN/softphone" load "sip:echo@127.0.0.1:$TARGET_PORT" --rate "$RATE" --calls "$CALLS" ${WORKERS:+--workers "$WORKERS"} \
            >"$WORK/gen.out" 2>/dev/null || true
        ok=$(awk '$1=="ok"{print $2}' "$WORK/gen.out" | grep . || echo 0)
        failed=$(awk '$1=="failed"{print $2}' "$WORK/gen.out" | grep . || echo "$CALLS")
        ;;
    sipp)
        rm -f "$WORK/stat.csv"
        (cd "$WORK" && timeout "$LIMIT" "${WRAP[@]}" \
            sipp -sn uac -r "$RATE" -m "$CALLS" -d 0 -s echo -i 127.0.0.1 -p "$(free_port)" "127.0.0.1:$TARGET_PORT" \
            -nostdin -timeout "$((LIMIT - 5))s" -trace_stat -stf "$WORK/stat.csv" -fd 1 >/dev/null 2>&1) || true
        read -r ok failed < <(awk -F';' 'NR==1{for(i=1;i<=NF;i++){if($i=="SuccessfulCall(C)")s=i;if($i=="FailedCall(C)")f=i}}
            END{print $s+0, $f+0}' "$WORK/stat.csv" 2>/dev/null || echo "0 $CALLS")
        ;;
    esac
    stop_target
    if [ "$TOOL" = callgrind ]; then
        awk -v t="$tool" -v ok="$ok" -v f="$failed" -v n="$CALLS" '/^(summary|totals):/{ir=$2}
            END{printf "%-10s ok %6d failed %5d  instructions/call %.0f\n", t, ok, f, ir/n}' "$WORK/cg.out"
        return
    fi
    local sys cs ms
    sys=$(perf_field raw_syscalls:sys_enter)
    cs=$(perf_field context-switches)
    ms=$(perf_field task-clock)
    awk -v t="$tool" -v ok="$ok" -v f="$failed" -v sys="$sys" -v cs="$cs" -v ms="$ms" -v n="$CALLS" 'BEGIN{
        printf "%-10s ok %6d failed %5d  CPU-s/10k %.3f  syscalls/call %.2f  ctxsw/call %.2f\n", t, ok, f, ms/1000/n*10000, sys/n, cs/n}'
}

echo "# load_cpu: $RATE calls/s x $CALLS, softphone --workers ${WORKERS:-default}, $(nproc) CPUs, $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$REPS"); do
    for tool in $TOOLS; do
        run_one "$tool"
    done
done
