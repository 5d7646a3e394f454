#!/usr/bin/env bash
# bench/concurrent.sh — memory per established call (issue 7, target 5: 100,000 concurrent calls
# held with <= 2 KiB of RSS per call in proxy mode and <= 8 KiB in B2BUA mode, without media).
#
#   UACS x sipp uac_rr.xml -s cK -d HOLD -r RATE/UACS -m N/UACS -l N/UACS
#        -> switchboard serve --no-auth --mode MODE, [[route]] user="cK" -> sipp uas_rr.xml number K
#
# For each mode: start UACS sipp UASes and the service (data in SQLite on disk, as in service),
# read its VmRSS at 0 calls, ramp N calls at RATE calls/s, each held HOLD ms (long enough to
# outlast the ramp and both samples), wait until every call is established (the callers' ACK
# counts, sipp -trace_counts) and held (sipp's pause), then read VmRSS again: KiB per call =
# (RSS_N - RSS_0) / N. A second sample LATE seconds later shows the steady state after the
# transactions' own timers (Timer M / L, 64*T1 = 32 s; the B2BUA's Call-IDs linger as long) have
# run out. Then (FINISH=1) the calls end by themselves with BYE and the callers must report N
# successful calls and 0 failed; FINISH=0 stops everything right after the samples.
#
# Limits (stated, not hidden):
#  * B2BUA mode binds two RTP/RTCP port pairs per call (4 UDP sockets, even if no media flows),
#    so N is capped by the relay port range: (ports in RTP_PORTS)/4 calls. The default range
#    10000-60999 (below the SIP ports, which come from SIP_PORTS=61000-64999) gives 12,750 calls;
#    ports other programs hold at the time are skipped. 100,000 calls would need 400,000 sockets
#    and ports: impossible on one IP address. See the next point for file descriptors.
#  * The relay ends a call after --rtp-timeout without media (30 s by default): the service runs
#    with --rtp-timeout 0 here, since no media flows.
#  * File descriptors: 8 per B2BUA call (each relay socket is held twice: the reader task's tokio
#    socket and a std clone for sending). The script raises its own `ulimit -n` (soft to hard, and
#    the hard limit to NOFILE=200000 where that is allowed) for the processes it starts; N_B2BUA
#    defaults to 95% of min(port range, (ulimit -n - 200) / 8). In a container whose hard limit is
#    20,000 that is 2,351 calls.
#  * sipp in UDP mono-socket mode uses one socket per process, so -max_socket does not apply;
#    UACS > 1 splits the calls over several sipp pairs (each with its own route) if one is not
#    enough.
#
# Usage: bash bench/concurrent.sh                  (proxy: 100,000 calls; b2bua: port range cap)
#        QUICK=1 bash bench/concurrent.sh          (1,000 calls per mode at 500/s, LATE=0, FINISH=0)
# Env: NO_RELAY=1 runs the B2BUA signalling-only (--no-relay: no ports per call, so no caps).
# Env: MODES ("proxy b2bua") N_PROXY (100000) N_B2BUA (95% of what ports and fds allow) RATE (1000)
#      UACS (1) LATE (seconds to the second sample, 40) FINISH (1) RTP_PORTS (10000-60999)
#      SIP_PORTS (61000-64999) NOFILE (200000) SIPP_BUF SB_LOG SWITCHBOARD_BIN KEEP_WORK NO_INSTALL
: "${SIP_PORTS:=61000-64999}"
. "$(dirname "$0")/common.sh"
. "$BENCH_DIR/targets.sh"

if [ "${QUICK:-0}" = 1 ]; then
	: "${N_PROXY:=1000}" "${N_B2BUA:=1000}" "${RATE:=500}" "${LATE:=0}" "${FINISH:=0}"
fi
: "${MODES:=proxy b2bua}" "${N_PROXY:=100000}" "${RATE:=1000}" "${UACS:=1}" "${LATE:=40}" "${FINISH:=1}"
: "${RTP_PORTS:=10000-60999}" "${NOFILE:=200000}"
RTP_LO=${RTP_PORTS%-*} RTP_HI=${RTP_PORTS#*-}
RTP_CAP=$(((RTP_HI - RTP_LO + 1) / 4))

ensure_tools sipp
build_switchboard
sb_has_mode || die "this switchboard has no --mode flag"

# Room for 4 sockets per B2BUA call: raise the soft limit to the hard one, and the hard one too
# where allowed (root outside a container that caps it; nr_open caps it anyway).
ulimit -Hn "$NOFILE" 2>/dev/null
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null
FDS=$(ulimit -n)
FD_CAP=$(((FDS - 200) / 8))
: "${N_B2BUA:=$(((RTP_CAP < FD_CAP ? RTP_CAP : FD_CAP) * 95 / 100))}"

# Sum of one column of the last line of every caller's -trace_counts csv.
counts_sum() {
	local col=$1 f s=0 v
	for f in "$WORK"/uac.*/*_counts.csv; do
		[ -f "$f" ] || continue
		v=$(csv_last "$f" "$col")
		[[ "$v" =~ ^[0-9]+$ ]] && s=$((s + v))
	done
	echo "$s"
}
stat_sum() {
	local col=$1 f s=0 v
	for f in "$WORK"/uac.*/stat.csv; do
		[ -f "$f" ] || continue
		v=$(csv_last "$f" "$col")
		[[ "$v" =~ ^[0-9]+$ ]] && s=$((s + v))
	done
	echo "$s"
}
kib_per_call() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN{ if (n<=0) print "NA"; else printf "%.2f", (b-a)/n}'; }

declare -A T_N T_EST T_RAMP T_RSS0 T_RSSN T_KIBN T_RSSL T_KIBL T_HWM T_CPU T_OK T_FAIL T_NOTE
# run_mode MODE N
run_mode() {
	local mode=$1 n=$2 k per rate_k hold_ms lim t0 t1 pause fail deadline rss0 rssn rssl c0 c1 routes="" extra=()
	local uas_pids=() uac_pids=() uas_ports=() note=""
	rm -rf "$WORK"/uac.*
	if [ "$mode" = b2bua ] && [ "${NO_RELAY:-0}" = 1 ]; then
		# Signalling-only B2BUA: no relay ports, so neither the port range nor the fd limit caps N.
		extra=(--no-relay --rtp-timeout 0)
		note="--no-relay;"
	elif [ "$mode" = b2bua ]; then
		extra=(--rtp-ports "$RTP_PORTS" --rtp-timeout 0)
		if [ "$n" -gt "$RTP_CAP" ]; then
			note="N capped from $n to the port range's $RTP_CAP;"
			n=$RTP_CAP
		fi
		if [ $((n * 8 + 200)) -gt "$FDS" ]; then
			note="$note N capped by ulimit -n $FDS (hard limit);"
			n=$(((FDS - 200) / 8))
		fi
	fi
	per=$(((n + UACS - 1) / UACS))
	n=$((per * UACS))
	rate_k=$(awk -v r="$RATE" -v u="$UACS" 'BEGIN{v=r/u; printf "%g", (v<1?1:v)}')
	local ramp=$((n / RATE + 1))
	hold_ms=$(((ramp + LATE + 30) * 1000))
	lim=$((2 * ramp + LATE + 120))
	echo "# $mode: $n calls at $RATE/s over $UACS caller(s), hold $((hold_ms / 1000)) s; ramp ~${ramp} s" >&2
	for k in $(seq 1 "$UACS"); do
		start_uas "$mode.uas$k" -l $((per + 1000)) || return 1
		uas_pids+=("$UAS_PID") uas_ports+=("$UAS_PORT")
		routes="$routes c${k}x=$UAS_PORT"
	done
	start_sb_routed "$mode" "$mode" "$routes" "${extra[@]}" || return 1
	sleep 2
	rss0=$(proc_kb "$SB_PID" VmRSS)
	c0=$(cpu_ticks "$SB_PID")
	t0=$(now)
	for k in $(seq 1 "$UACS"); do
		local dir=$WORK/uac.$k lport
		mkdir -p "$dir"
		pick_port lport
		(cd "$dir" && exec timeout --signal=INT --kill-after=10 "$lim" "$SIPP" -sf "$SCENARIOS/uac_rr.xml" -s "c${k}x" \
			-d "$hold_ms" "127.0.0.1:$SB_PORT" -i 127.0.0.1 -p "$lport" -nostdin -buff_size "$SIPP_BUF" \
			-r "$rate_k" -m "$per" -l "$per" -trace_counts -trace_stat -stf "$dir/stat.csv" -fd 1 \
			-trace_err -error_file "$dir/errors.log" >/dev/null 2>"$dir/stderr") &
		uac_pids+=($!)
		STARTED_PIDS+=($!)
	done
	# Wait until every call is established and held (the callers sent N ACKs and hold N calls in
	# the pause) or failed, or the deadline passed. Failed calls are reported, and the figure is per
	# call actually held.
	deadline=$(($(date +%s) + ramp * 3 + 60))
	while :; do
		sleep 1
		pause=$(counts_sum 5_Pause_Sessions)
		fail=$(stat_sum "FailedCall(C)")
		[ $((pause + fail)) -ge "$n" ] && break
		[ "$(date +%s)" -ge "$deadline" ] && { note="$note only $pause of $n held at the deadline;"; break; }
	done
	if [ "$fail" -gt 0 ]; then
		note="$note $fail failed during the ramp;"
		# Why: the first lines of sipp's unexpected-message log, and the service's warnings.
		grep -ho "while expecting [^,]*, received '[^']\{0,30\}" "$WORK"/uac.*/errors.log 2>/dev/null | sort | uniq -c | sort -rn | head -3 | sed 's/^/# uac: /' >&2
		grep -o 'WARN.*' "$WORK/$mode.sb.err" | sed 's/[0-9.]*ms//' | sort | uniq -c | sort -rn | head -3 | sed 's/^/# service: /' >&2
	fi
	t1=$(now)
	sleep 2
	rssn=$(proc_kb "$SB_PID" VmRSS)
	c1=$(cpu_ticks "$SB_PID")
	pause=$(counts_sum 5_Pause_Sessions)
	T_N[$mode]=$n T_EST[$mode]=$pause T_RAMP[$mode]=$(fsub "$t1" "$t0") T_RSS0[$mode]=$rss0 T_RSSN[$mode]=$rssn
	T_KIBN[$mode]=$(kib_per_call "$rss0" "$rssn" "$pause")
	T_CPU[$mode]=$(fdiv "$(ticks_to_s $((c1 - c0)))" "$(fdiv "$pause" 10000)")
	echo "SAMPLE mode=$mode n=$n held=$pause acks=$(counts_sum 4_ACK_Sent) ramp_s=${T_RAMP[$mode]} rss0_kb=$rss0 rssN_kb=$rssn kib_per_call=${T_KIBN[$mode]} server_cpu_per10k=${T_CPU[$mode]}"
	if [ "$mode" = b2bua ]; then
		# After the RSS sample: building this answer allocates in the service.
		echo "SAMPLE mode=$mode service_calls_up=$("$SB" calls --data "$WORK/$mode.data" --json 2>/dev/null | grep -c '"phase":"up"')"
	fi
	T_RSSL[$mode]=NA T_KIBL[$mode]=NA
	if [ "$LATE" -gt 0 ]; then
		sleep "$LATE"
		rssl=$(proc_kb "$SB_PID" VmRSS)
		T_RSSL[$mode]=$rssl T_KIBL[$mode]=$(kib_per_call "$rss0" "$rssl" "$pause")
		echo "SAMPLE mode=$mode late_s=$LATE held=$(counts_sum 5_Pause_Sessions) rss_kb=$rssl kib_per_call=${T_KIBL[$mode]}"
	fi
	T_HWM[$mode]=$(proc_kb "$SB_PID" VmHWM)
	if [ "$FINISH" = 1 ] && [ "$pause" -ge "$n" ]; then
		for k in "${uac_pids[@]}"; do wait "$k" 2>/dev/null; done
		T_OK[$mode]=$(stat_sum "SuccessfulCall(C)") T_FAIL[$mode]=$(stat_sum "FailedCall(C)")
	else
		for k in "${uac_pids[@]}"; do kill "$k" 2>/dev/null; done
		for k in "${uac_pids[@]}"; do stop_pid "$k" 10; done
		T_OK[$mode]=NA T_FAIL[$mode]=$(stat_sum "FailedCall(C)")
	fi
	stop_sb
	for k in "${uas_pids[@]}"; do kill "$k" 2>/dev/null; done
	for k in "${uas_pids[@]}"; do stop_pid "$k" 10; done
	T_NOTE[$mode]=${note:--}
	echo "RESULT mode=$mode n=$n held=${T_EST[$mode]} kib_per_call=${T_KIBN[$mode]} kib_per_call_late=${T_KIBL[$mode]} vmhwm_kb=${T_HWM[$mode]} ok=${T_OK[$mode]} failed=${T_FAIL[$mode]} note=${T_NOTE[$mode]}"
}

echo "# concurrent: $SB_VERSION, $(sipp_version), $(nproc) CPUs, $(date -u +%FT%TZ), load average $LOAD_AT_START; ulimit -n $FDS"
echo "# switchboard serve --no-auth --mode MODE --config CFG --data DIR --listen 127.0.0.1:PORT [b2bua: --rtp-ports $RTP_PORTS --rtp-timeout 0]; CFG: [[route]] user=\"cKx\" target=\"sip:127.0.0.1:UAS_K\""
echo "# uac: $UACS x sipp -sf fixtures/sipp/uac_rr.xml -s cKx -d HOLD ADDR -r RATE/$UACS -m N/$UACS -l N/$UACS -trace_counts; uas: sipp -sf fixtures/sipp/uas_rr.xml -l N/$UACS+1000"
for m in $MODES; do
	case "$m" in
	proxy) run_mode proxy "$N_PROXY" ;;
	b2bua) run_mode b2bua "$N_B2BUA" ;;
	*) die "unknown mode $m (proxy, b2bua)" ;;
	esac
done

echo
echo "== concurrent: established calls held, switchboard RSS per call (target: proxy <= 2 KiB, b2bua <= 8 KiB) =="
echo "# $(date -u +%F), $(nproc) CPUs, load average now $(cut -d" " -f1-3 /proc/loadavg) (at start $LOAD_AT_START); QUICK=${QUICK:-0}; rate $RATE/s; $UACS caller(s); LATE=$LATE s"
printf '%-6s %8s %8s %8s %10s %10s %9s %10s %9s %10s %11s %9s  %s\n' mode calls held ramp_s rss0_MB rssN_MB KiB/call rssLate_MB KiB/late VmHWM_MB cpu_s/10k ok/fail note
for m in $MODES; do
	[ -n "${T_N[$m]:-}" ] || continue
	printf '%-6s %8s %8s %8s %10s %10s %9s %10s %9s %10s %11s %9s  %s\n' "$m" "${T_N[$m]}" "${T_EST[$m]}" "${T_RAMP[$m]}" \
		"$(fdiv "${T_RSS0[$m]}" 1024)" "$(fdiv "${T_RSSN[$m]}" 1024)" "${T_KIBN[$m]}" "$(fdiv "${T_RSSL[$m]}" 1024)" "${T_KIBL[$m]}" \
		"$(fdiv "${T_HWM[$m]}" 1024)" "${T_CPU[$m]}" "${T_OK[$m]}/${T_FAIL[$m]}" "${T_NOTE[$m]}"
done
echo "# KiB/call = (VmRSS with the calls held - VmRSS at 0 calls) / calls held, 2 s after the last ACK; KiB/late the same" \
	"LATE s later (transaction timers run out). cpu_s/10k: service CPU during the ramp per 10,000 calls set up." \
	"ok/fail: the callers' successful/failed calls after the calls ended with BYE (FINISH=1; NA: stopped)."
