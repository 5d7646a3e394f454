#!/usr/bin/env bash
# bench/soak.sh — issue 13, "nothing per call outlives the call": does the service give back what
# its calls took? sipp's built-in uac calls the echo user (sip:echo@...) CALLS times at RATE calls/s,
# each call held HOLD_MS, in rounds of CHUNK calls against ONE service process. After each round,
# once no call is up and the calls' timers have run (IDLE_S), it prints the service's idle RSS. A
# service that keeps something per call grows round after round; the goal (issue 13) is that the
# last three figures are within 2 MB of each other.
#
#   sipp -sn uac -s echo -d HOLD_MS -r RATE -m CHUNK  ->  switchboard serve --no-auth --data DIR (echo user)
#
# Usage: bash bench/soak.sh                                     (200,000 calls at 200/s, RSS after
#                                                                each 50,000: ~17 min of calls)
#        CALLS=40000 RATE=500 CHUNK=10000 IDLE_S=40 bash bench/soak.sh   (a short check, ~4 min)
# Env: CALLS (200000) RATE (200) CHUNK (50000) HOLD_MS (1000) IDLE_S (70: 64*T1 for the dialogs'
#      and transactions' lingering state, plus the UA core's 64*T1 sweep of learned peers)
#      RTP_PORTS (echo media ports, 40000-59999) SIPP_BUF SB_LOG SWITCHBOARD_BIN KEEP_WORK
#      NO_INSTALL (see bench/common.sh)
. "$(dirname "$0")/common.sh"

: "${CALLS:=200000}" "${RATE:=200}" "${CHUNK:=50000}" "${HOLD_MS:=1000}" "${IDLE_S:=70}" "${RTP_PORTS:=40000-59999}"
[ "$CHUNK" -gt 0 ] && [ "$CALLS" -gt 0 ] && [ "$RATE" -gt 0 ] || die "CALLS, RATE and CHUNK must be positive"

ensure_tools sipp
build_switchboard

mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

DATA=$WORK/soak.data
mkdir -p "$DATA"
pick_port SB_PORT
SERVE=(serve --no-auth --data "$DATA" --listen "127.0.0.1:$SB_PORT" --rtp-ports "$RTP_PORTS" "${SB_CAPS_OFF[@]}")
echo "# soak: $SB_VERSION, $(sipp_version), $(nproc) CPUs, $(date -u +%FT%TZ), load average $(cut -d" " -f1-3 /proc/loadavg)"
echo "# switchboard: RUST_LOG=${SB_LOG:-warn} switchboard ${SERVE[*]}"
echo "# uac: sipp -sn uac -s echo -d $HOLD_MS ADDR -i 127.0.0.1 -p PORT -nostdin -buff_size $SIPP_BUF -r $RATE -m CHUNK (CHUNK=$CHUNK, CALLS=$CALLS in all)"
echo "# idle RSS: VmRSS of the service ${IDLE_S}s after each round's last call (no call up, timers run)"
RUST_LOG=${SB_LOG:-warn} "$SB" "${SERVE[@]}" >"$WORK/soak.sb.out" 2>"$WORK/soak.sb.err" &
SB_PID=$!
STARTED_PIDS+=("$SB_PID")
wait_udp_port "$SB_PORT" || { cat "$WORK/soak.sb.err" >&2; die "the service did not start"; }
sleep 1
RSS0=$(proc_kb "$SB_PID" VmRSS)
echo "SOAK calls=0 idle_rss_mb=$(mb "$RSS0")"

done_calls=0 total_ok=0 total_fail=0 round=0
RSS_LIST=()
while [ "$done_calls" -lt "$CALLS" ]; do
	n=$CHUNK
	[ $((done_calls + n)) -gt "$CALLS" ] && n=$((CALLS - done_calls))
	round=$((round + 1))
	pick_port lport
	run_uac "soak-$round" "$RATE" "$n" "$lport" "127.0.0.1:$SB_PORT" -sn uac -s echo -d "$HOLD_MS"
	kill -0 "$SB_PID" 2>/dev/null || { tail -5 "$WORK/soak.sb.err" >&2; die "the service exited during round $round"; }
	done_calls=$((done_calls + n))
	total_ok=$((total_ok + ${UAC_OK:-0}))
	total_fail=$((total_fail + ${UAC_FAIL:-0}))
	busy=$(proc_kb "$SB_PID" VmRSS)
	sleep "$IDLE_S"
	rss=$(proc_kb "$SB_PID" VmRSS)
	RSS_LIST+=("$rss")
	echo "SOAK calls=$done_calls ok=${UAC_OK:-NA} failed=${UAC_FAIL:-NA} cps=$UAC_CPS rss_at_end_mb=$(mb "$busy") idle_rss_mb=$(mb "$rss") hwm_mb=$(mb "$(proc_kb "$SB_PID" VmHWM)") $(date -u +%T)"
done
kill "$SB_PID" 2>/dev/null # SIGTERM: the service ends its calls and flushes its store
stop_pid "$SB_PID" 15

echo
echo "== soak: $CALLS echo calls at $RATE/s, held ${HOLD_MS} ms, idle RSS every $CHUNK =="
printf '%-12s %14s\n' calls "idle RSS MB"
printf '%-12s %14s\n' 0 "$(mb "$RSS0")"
for i in "${!RSS_LIST[@]}"; do
	c=$(((i + 1) * CHUNK))
	[ "$c" -gt "$CALLS" ] && c=$CALLS
	printf '%-12s %14s\n' "$c" "$(mb "${RSS_LIST[$i]}")"
done
n=${#RSS_LIST[@]}
if [ "$n" -ge 3 ]; then
	last3=("${RSS_LIST[@]:$((n - 3))}")
	spread=$(printf '%s\n' "${last3[@]}" | sort -n | awk 'NR==1{lo=$1} {hi=$1} END{printf "%.1f", (hi-lo)/1024}')
	ok=$(awk -v s="$spread" 'BEGIN{print (s <= 2.0) ? "yes" : "no"}')
	echo "# last three idle RSS within $spread MB of each other (goal: <= 2 MB): $ok"
fi
per_call=$(awk -v a="${RSS_LIST[0]:-0}" -v b="${RSS_LIST[$((n - 1))]:-0}" -v c="$(((n - 1) * CHUNK))" 'BEGIN{ if (c<=0) print "NA"; else printf "%.0f", (b-a)*1024/c }')
echo "# growth from the first round's idle RSS to the last: $per_call bytes per call; calls ok=$total_ok failed=$total_fail"
