#!/usr/bin/env bash
# bench/syscalls.sh — repeatable per-call counts for the proxy (issue 16 point 2): system calls,
# context switches (wake-ups) and, under callgrind, user-space instructions, on the harness of
# bench/proxy.sh and bench/knee.sh. Counts, unlike CPU seconds, do not depend on what else runs on
# a shared machine.
#
#   sipp uac_rr.xml -s 1234 -d 0 -r RATE -m CALLS -> switchboard serve --no-auth --mode proxy,
#        [[route]] user="*" -> sipp uas_rr.xml
#
# TOOL=perf      perf stat -e raw_syscalls:sys_enter,context-switches,task-clock -p SB for the
#                whole run (tracepoints: no hardware counters needed); with NAMES="recvmmsg
#                epoll_wait ..." also each by name, per call as NAME=x and NAME_failed=y (the
#                calls that returned an error: for recvmmsg, EAGAIN, an empty receive)
# TOOL=strace    strace -c -f -p SB for the whole run: the table of system calls by name (slows the
#                service: use a moderate RATE)
# TOOL=callgrind the service under valgrind --tool=callgrind; prints its total instructions (Ir)
#                (about 50x slower: RATE 100 or so)
# Prints "PER_CALL tool=... calls=N key=value/call ..." and the tool's raw output.
#
# Usage: TOOL=perf RATE=1000 CALLS=5000 bash bench/syscalls.sh
# Env: TOOL RATE (1000) CALLS (5000) NAMES (perf: system calls counted by name) SIPP_BUF SB_LOG
#      SWITCHBOARD_BIN KEEP_WORK
. "$(dirname "$0")/common.sh"
. "$BENCH_DIR/targets.sh"

: "${TOOL:=perf}" "${RATE:=1000}" "${CALLS:=5000}"
case "$TOOL" in perf) ensure_tools sipp; command -v perf >/dev/null || die "perf not found" ;;
strace) command -v strace >/dev/null || die "strace not found" ;;
callgrind) command -v valgrind >/dev/null || die "valgrind not found" ;;
*) die "TOOL is perf, strace or callgrind" ;; esac
ensure_tools sipp
build_switchboard
sb_has_mode || die "this switchboard has no --mode flag"

REAL_SB=$SB
if [ "$TOOL" = callgrind ]; then
	# The wrapper execs valgrind: SB_PID is the service under callgrind, which writes its profile
	# when the service exits (SIGTERM, as stop_sb sends).
	printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/callgrind.out "%s" "$@"\n' "$WORK" "$REAL_SB" >"$WORK/sb-cg"
	chmod +x "$WORK/sb-cg"
	SB=$WORK/sb-cg
fi
start_uas syscalls || die "sipp uas did not start"
start_sb_routed syscalls proxy "*=$UAS_PORT" || die "switchboard did not start"
pick_port LPORT
case "$TOOL" in
perf)
	events=(-e raw_syscalls:sys_enter,context-switches,task-clock)
	for name in ${NAMES:-}; do events+=(-e "syscalls:sys_enter_$name" -e "syscalls:sys_exit_$name" --filter 'ret < 0'); done
	perf stat "${events[@]}" -p "$SB_PID" -o "$WORK/tool.out" &
	TOOL_PID=$!
	;;
strace)
	strace -c -f -p "$SB_PID" -o "$WORK/tool.out" 2>/dev/null &
	TOOL_PID=$!
	;;
callgrind) TOOL_PID= ;;
esac
sleep 0.5
mkdir -p "$WORK/uac"
(cd "$WORK/uac" && exec timeout --signal=INT --kill-after=10 $((CALLS / RATE + 120)) "$SIPP" -sf "$SCENARIOS/uac_rr.xml" \
	-s 1234 -d 0 "127.0.0.1:$SB_PORT" -i 127.0.0.1 -p "$LPORT" -nostdin -buff_size "$SIPP_BUF" -r "$RATE" -m "$CALLS" \
	-trace_stat -stf "$WORK/uac/stat.csv" -fd 1 >/dev/null 2>"$WORK/uac/stderr")
OK=$(csv_last "$WORK/uac/stat.csv" "SuccessfulCall(C)")
FAIL=$(csv_last "$WORK/uac/stat.csv" "FailedCall(C)")
RETR=$(csv_last "$WORK/uac/stat.csv" "Retransmissions(C)")
if [ -n "$TOOL_PID" ]; then
	kill -INT "$TOOL_PID" 2>/dev/null
	wait "$TOOL_PID" 2>/dev/null
fi
if [ "$TOOL" = callgrind ]; then
	kill "$SB_PID" 2>/dev/null
	i=0
	while kill -0 "$SB_PID" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
	kill -0 "$SB_PID" 2>/dev/null && kill -9 "$SB_PID" 2>/dev/null
	wait "$SB_PID" 2>/dev/null
	callgrind_annotate "$WORK/callgrind.out" 2>/dev/null | head -30 >"$WORK/tool.out"
else
	stop_sb
fi
stop_uas syscalls
echo "# syscalls: $SB_VERSION, tool $TOOL, $RATE calls/s x $CALLS, $(nproc) CPUs, $(date -u +%FT%TZ), load average $LOAD_AT_START"
echo "# uac: ok=$OK failed=$FAIL retransmissions=$RETR"
cat "$WORK/tool.out"
n=${OK:-0}
[ "$n" -gt 0 ] || die "no successful call"
case "$TOOL" in
perf)
	sc=$(awk '/raw_syscalls:sys_enter/{gsub(",","",$1); print $1}' "$WORK/tool.out")
	cs=$(awk '/context-switches/{gsub(",","",$1); print $1}' "$WORK/tool.out")
	tc=$(awk '/task-clock/{gsub(",","",$1); print $1}' "$WORK/tool.out")
	by_name=""
	for name in ${NAMES:-}; do
		c=$(awk -v e="syscalls:sys_enter_$name" '$2==e{gsub(",","",$1); print $1}' "$WORK/tool.out")
		e=$(awk -v e="syscalls:sys_exit_$name" '$2==e{gsub(",","",$1); print $1}' "$WORK/tool.out")
		by_name+=" $name=$(fdiv "${c:-0}" "$n") ${name}_failed=$(fdiv "${e:-0}" "$n")"
	done
	echo "PER_CALL tool=perf calls=$n syscalls=$(fdiv "$sc" "$n") context_switches=$(fdiv "$cs" "$n") task_clock_us=$(fdiv "$(awk -v t="$tc" 'BEGIN{print t*1000}')" "$n")$by_name"
	;;
strace)
	tot=$(awk '$NF=="total"{print $4}' "$WORK/tool.out")
	echo "PER_CALL tool=strace calls=$n syscalls=$(fdiv "$tot" "$n")"
	;;
callgrind)
	ir=$(awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}' "$WORK/tool.out")
	echo "PER_CALL tool=callgrind calls=$n instructions=$(fdiv "$ir" "$n")"
	;;
esac
