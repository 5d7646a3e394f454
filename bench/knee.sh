#!/usr/bin/env bash
# bench/knee.sh — where the service's time goes at a given call rate (meant for the knee that
# bench/proxy.sh or bench/b2bua.sh found): per-thread CPU from /proc and, if perf is installed
# (Debian: apt-get install linux-perf), the top symbols of a perf profile of the service.
#
#   sipp uac_rr.xml -s 1234 -d 0 -r RATE -> switchboard serve --no-auth --mode MODE, [[route]]
#        user="*" -> sipp uas_rr.xml        (the same harness as bench/proxy.sh and bench/b2bua.sh)
#
# After WARM seconds of load, it samples utime+stime of every thread of the service (and of the
# sipp processes) over SAMPLE seconds and prints each as a share of one core; then perf record -g
# on the service for SAMPLE seconds and perf report's top TOP symbols (self time). The load runs
# for WARM + 2 x SAMPLE + 5 seconds, bounded by sipp -m and timeout; all processes are ours and
# stopped by PID.
#
# Usage: MODE=proxy RATE=3000 bash bench/knee.sh
# Env: MODE (proxy | b2bua, default proxy) RATE (calls/s, 2000) WARM (3) SAMPLE (5) TOP (10)
#      PERF=0 (no perf) RTP_PORTS (b2bua, 50000-59999) SIPP_BUF SB_LOG SWITCHBOARD_BIN KEEP_WORK
. "$(dirname "$0")/common.sh"
. "$BENCH_DIR/targets.sh"

: "${MODE:=proxy}" "${RATE:=2000}" "${WARM:=3}" "${SAMPLE:=5}" "${TOP:=10}" "${PERF:=1}" "${RTP_PORTS:=50000-59999}"
ensure_tools sipp
build_switchboard
sb_has_mode || die "this switchboard has no --mode flag"

# thread_ticks PID: "TID comm ticks" for every thread of PID.
thread_ticks() {
	local t
	for t in /proc/"$1"/task/*; do
		awk -v tid="${t##*/}" '{ c=$0; sub(/^[^(]*\(/, "", c); sub(/\).*$/, "", c); n=split($0, f, ") ");
			split(f[n], g, " "); gsub(/ /, "_", c); print tid, c, g[12]+g[13] }' "$t/stat" 2>/dev/null
	done
}

extra=()
[ "$MODE" = b2bua ] && extra=(--rtp-ports "$RTP_PORTS")
start_uas knee || die "sipp uas did not start"
start_sb_routed knee "$MODE" "*=$UAS_PORT" "${extra[@]}" || die "switchboard did not start"
pick_port LPORT
calls=$((RATE * (WARM + 2 * SAMPLE + 5)))
mkdir -p "$WORK/uac"
(cd "$WORK/uac" && exec timeout --signal=INT --kill-after=10 $((calls / RATE + 60)) "$SIPP" -sf "$SCENARIOS/uac_rr.xml" \
	-s 1234 -d 0 "127.0.0.1:$SB_PORT" -i 127.0.0.1 -p "$LPORT" -nostdin -buff_size "$SIPP_BUF" -r "$RATE" -m "$calls" \
	-trace_stat -stf "$WORK/uac/stat.csv" -fd 1 >/dev/null 2>"$WORK/uac/stderr") &
UAC=$!
STARTED_PIDS+=("$UAC")
sleep "$WARM"
SIPP_UAC=$(ps -o pid= --ppid "$UAC" | tr -d ' ')

echo "# knee: $SB_VERSION, mode $MODE, $RATE calls/s, $(nproc) CPUs, $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
thread_ticks "$SB_PID" >"$WORK/t0"
u0=$(cpu_ticks "$UAS_PID") c0=$(cpu_ticks "$SIPP_UAC")
t0=$(now)
sleep "$SAMPLE"
thread_ticks "$SB_PID" >"$WORK/t1"
u1=$(cpu_ticks "$UAS_PID") c1=$(cpu_ticks "$SIPP_UAC")
el=$(fsub "$(now)" "$t0")
echo
echo "== CPU per thread over ${el} s (share of one core) =="
printf '%-10s %-24s %8s\n' tid thread core
join <(sort "$WORK/t0") <(sort "$WORK/t1") | awk -v el="$el" -v h="$CLK_TCK" '{printf "%-10s %-24s %8.2f\n", $1, $2, ($5-$3)/h/el}' | sort -k3 -gr
printf '%-10s %-24s %8.2f\n' "$UAS_PID" "sipp_uas" "$(awk -v a="$u0" -v b="$u1" -v el="$el" -v h="$CLK_TCK" 'BEGIN{print (b-a)/h/el}')"
printf '%-10s %-24s %8.2f\n' "${SIPP_UAC:-NA}" "sipp_uac" "$(awk -v a="$c0" -v b="$c1" -v el="$el" -v h="$CLK_TCK" 'BEGIN{print (b-a)/h/el}')"
echo "# /proc/PID/task/TID/stat utime+stime; the machine has $(nproc) cores in all"

if [ "$PERF" = 1 ] && command -v perf >/dev/null 2>&1; then
	perf record -q -F 999 -g -o "$WORK/perf.data" -p "$SB_PID" -- sleep "$SAMPLE" >/dev/null 2>"$WORK/perf.err" ||
		{ cat "$WORK/perf.err" >&2; }
	echo
	echo "== perf: top $TOP symbols of the service by self time ($SAMPLE s at $RATE calls/s) =="
	perf report -q -i "$WORK/perf.data" --stdio --no-children --sort symbol 2>/dev/null |
		grep -E '^ +[0-9.]+%' | head -"$TOP" | sed -E 's/( +-)* *$//'
	echo "# perf record -F 999 -g -p SB_PID; perf report --no-children --sort symbol"
elif [ "$PERF" = 1 ]; then
	echo "# perf not installed (apt-get install linux-perf): no profile"
fi
wait "$UAC"
echo
echo "# service socket drops (receive buffer full, /proc/net/udp): $(udp_port_drops "$SB_PORT")"
echo "# uac: ok $(csv_last "$WORK/uac/stat.csv" "SuccessfulCall(C)") failed $(csv_last "$WORK/uac/stat.csv" "FailedCall(C)") retrans $(csv_last "$WORK/uac/stat.csv" "Retransmissions(C)") of $calls calls"
stop_sb
stop_uas knee
