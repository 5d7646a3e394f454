#!/usr/bin/env bash
# bench/uas.sh — switchboard as the called party: sipp's built-in uac calls the service's echo user
# (sip:echo@...), signalling only (-d 0: INVITE / 100 / 200 / ACK / BYE / 200, no hold; the echo
# user still sets up and tears down its media session for every call). The reference beside it is
# sipp's built-in uas on the same harness (the load generator answering itself).
#
#   sipp -sn uac -s echo -d 0  ->  switchboard serve --no-auth --data DIR   (echo user)
#   sipp -sn uac -d 0          ->  sipp -sn uas                             (reference)
#
# Every step starts a fresh server on free loopback ports in a mktemp -d directory and stops it by
# PID. Prints RESULT lines per run, SWEEP lines, and a table with the ratio switchboard/sipp-uas.
#
# Usage: bash bench/uas.sh          (full: fixed 1000 cps x 20000, sweep 1000..20000 step 1000)
#        QUICK=1 bash bench/uas.sh  (tiny sizes, < 1 minute after the build)
# Env: FIXED_RATE FIXED_CALLS START STEP MAX MIN_CALLS SUSTAIN_S SWEEP SIPP_BUF SB_LOG
#      SWITCHBOARD_BIN KEEP_WORK NO_INSTALL (see bench/common.sh); RTP_PORTS (echo media ports)
. "$(dirname "$0")/common.sh"

: "${START:=1000}" "${STEP:=1000}" "${MAX:=20000}" "${RTP_PORTS:=40000-59999}"
TITLE="uas: sipp uac -> switchboard echo user vs sipp uas (calls/s)"

ensure_tools sipp
build_switchboard

t_start_switchboard() {
	local dir=$WORK/$1.data
	pick_port SB_PORT
	mkdir -p "$dir"
	RUST_LOG=${SB_LOG:-warn} "$SB" serve --no-auth --data "$dir" --listen "127.0.0.1:$SB_PORT" --rtp-ports "$RTP_PORTS" "${SB_NO_LIMIT[@]}" \
		>"$WORK/$1.sb.out" 2>"$WORK/$1.sb.err" &
	SB_PID=$!
	STARTED_PIDS+=("$SB_PID")
	wait_udp_port "$SB_PORT" || { cat "$WORK/$1.sb.err" >&2; return 1; }
	SRV_PIDS=$SB_PID SRV_ADDR=127.0.0.1:$SB_PORT
	UAC_ARGS=(-sn uac -s echo -d 0)
}
t_mem_switchboard() { MEM_MB=$(fdiv "$(proc_kb "$SB_PID" VmHWM)" 1024) MEM_WHAT=VmHWM; }
t_stop_switchboard() {
	kill "$SB_PID" 2>/dev/null # SIGTERM: the service ends its calls and flushes its store
	stop_pid "$SB_PID" 15
	PEER_FAIL=0
}

t_start_sipp_uas() {
	pick_port UAS_PORT
	"$SIPP" -sn uas -i 127.0.0.1 -p "$UAS_PORT" -nostdin -buff_size "$SIPP_BUF" \
		-trace_stat -stf "$WORK/$1.uas.csv" -fd 1 >/dev/null 2>"$WORK/$1.uas.err" &
	UAS_PID=$!
	STARTED_PIDS+=("$UAS_PID")
	wait_udp_port "$UAS_PORT" || return 1
	SRV_PIDS=$UAS_PID SRV_ADDR=127.0.0.1:$UAS_PORT
	UAC_ARGS=(-sn uac -d 0)
}
t_mem_sipp_uas() { MEM_MB=$(fdiv "$(proc_kb "$UAS_PID" VmHWM)" 1024) MEM_WHAT=VmHWM; }
t_stop_sipp_uas() {
	kill -USR1 "$UAS_PID" 2>/dev/null # sipp soft quit: writes its final statistics
	stop_pid "$UAS_PID" 10
	PEER_FAIL=$(csv_last "$WORK/$1.uas.csv" "FailedCall(C)")
}

echo "# uas: $SB_VERSION, $(sipp_version), $(nproc) CPUs, $(date -u +%FT%TZ)"
echo "# switchboard: RUST_LOG=${SB_LOG:-warn} switchboard serve --no-auth --data DIR --listen 127.0.0.1:PORT --rtp-ports $RTP_PORTS"
echo "# uac: sipp -sn uac [-s echo] -d 0 ADDR -i 127.0.0.1 -p PORT -nostdin -buff_size $SIPP_BUF -r RATE -m CALLS -trace_rtt -rtt_freq 1 -trace_stat"
bench_rounds switchboard sipp_uas
print_table cps switchboard sipp_uas
