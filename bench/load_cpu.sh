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
# TOOLS may name `floor` too: the minimal generator of benches/load_floor.rs (prebuilt templates,
# one sendmmsg and one recvmmsg per tick of FLOOR_TICK ms; `cargo build --release --benches`),
# the least CPU any generator can spend on the same calls here. TICK_MS sets `softphone load
# --tick-ms` (its paced loop; unset: the default, a round per arrival).
#
# TOOL=callgrind runs each generator under valgrind --tool=callgrind instead and prints its
# user-space instructions per call (all threads, start-up included; use a moderate RATE, e.g. 200).
#
# Usage:   bench/load_cpu.sh        (after cargo build --release --bin softphone --bin switchboard)
# Env:     BIN=target/release (softphone)  SB_BIN=$BIN (switchboard)  RATE=1000  CALLS=10000
#          REPS=3  WORKERS=(softphone's default)  TOOLS="softphone sipp"  TOOL=perf|callgrind
#          TICK_MS=(unset)  FLOOR_BIN=(newest target/release/deps/load_floor-*)  FLOOR_TICK=5
#          FLOOR_KEEP=0 (bytes of heap the floor leaves per call: the page faults of per-call state)
# Prints one line per run: tool, ok, failed, CPU-s per 10k calls, syscalls/call, ctx switches/call,
# page faults/call, user and system seconds per 10k calls (/usr/bin/time, 10 ms ticks, perf's own
# start-up included) and, for floor and softphone, the setup time's p50/p99 in ms
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
TICK_MS=${TICK_MS:-}
FLOOR_TICK=${FLOOR_TICK:-5}
FLOOR_KEEP=${FLOOR_KEEP:-0}
FLOOR_BIN=${FLOOR_BIN:-}
if [[ " $TOOLS " == *" floor "* ]] && [ -z "$FLOOR_BIN" ]; then
    FLOOR_BIN=$(ls -t target/release/deps/load_floor-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
    [ -x "$FLOOR_BIN" ] || { echo "load_cpu.sh: no load_floor bench (cargo build --release --benches, or FLOOR_BIN)" >&2; exit 2; }
fi
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
    WRAP=(/usr/bin/time -f "%U %S" -o "$WORK/time.out" perf stat -x' ' -e raw_syscalls:sys_enter,context-switches,page-faults,task-clock -o "$WORK/perf.out")
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
            ${TICK_MS:+--tick-ms "$TICK_MS"} \
            >"$WORK/gen.out" 2>/dev/null || true
        ok=$(awk '$1=="ok"{print $2}' "$WORK/gen.out" | grep . || echo 0)
        failed=$(awk '$1=="failed"{print $2}' "$WORK/gen.out" | grep . || echo "$CALLS")
        ;;
    floor)
        timeout "$LIMIT" "${WRAP[@]}" "$FLOOR_BIN" --target "127.0.0.1:$TARGET_PORT" --rate "$RATE" --calls "$CALLS" --tick-ms "$FLOOR_TICK" --keep "$FLOOR_KEEP" \
            >"$WORK/gen.out" 2>/dev/null || true
        ok=$(awk '$1=="floor"{for(i=1;i<NF;i++) if($i=="ok") print $(i+1)}' "$WORK/gen.out" | grep . || echo 0)
        failed=$((CALLS - ok))
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
    local sys cs pf ms us ss label=$tool setup="-"
    sys=$(perf_field raw_syscalls:sys_enter)
    cs=$(perf_field context-switches)
    pf=$(perf_field page-faults)
    ms=$(perf_field task-clock)
    read -r us ss < <(tail -1 "$WORK/time.out" 2>/dev/null || echo "0 0")
    case $tool in
    floor)
        label="floor/$FLOOR_TICK"
        [ "$FLOOR_KEEP" != 0 ] && label="$label+$FLOOR_KEEP"
        setup=$(awk '$1=="floor"{for(i=1;i<NF;i++){if($i=="p50")a=$(i+1);if($i=="p99")b=$(i+1)}} END{if(a!="")print a"/"b}' "$WORK/gen.out")
        ;;
    softphone)
        [ -n "$TICK_MS" ] && label="softphone/$TICK_MS"
        setup=$(awk '$1=="setup_p50_ms"{a=$2} $1=="setup_p99_ms"{b=$2} END{if(a!="")print a"/"b}' "$WORK/gen.out")
        ;;
    esac
    awk -v t="$label" -v ok="$ok" -v f="$failed" -v sys="$sys" -v cs="$cs" -v pf="$pf" -v ms="$ms" -v us="$us" -v ss="$ss" -v n="$CALLS" -v setup="${setup:--}" 'BEGIN{
        printf "%-12s ok %6d failed %5d  CPU-s/10k %.3f  syscalls/call %.2f  ctxsw/call %.2f  faults/call %.2f  user/10k %.2f  sys/10k %.2f  setup p50/p99 ms %s\n",
            t, ok, f, ms/1000/n*10000, sys/n, cs/n, pf/n, us/n*10000, ss/n*10000, setup}'
}

echo "# load_cpu: $RATE calls/s x $CALLS, softphone --workers ${WORKERS:-default} --tick-ms ${TICK_MS:-default}, floor tick ${FLOOR_TICK} ms, $(nproc) CPUs, $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$REPS"); do
    for tool in $TOOLS; do
        run_one "$tool"
    done
done
