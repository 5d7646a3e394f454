#!/usr/bin/env bash
# bench/proxy.sh — switchboard as a stateful record-routing proxy beside Kamailio, same harness,
# same run: calls from sipp through the proxy to a sipp UAS (0 ms hold).
#
#   sipp uac_rr.xml -s 1234 -d 0 -> switchboard serve --no-auth [--mode proxy], config
#                                     [[route]] user="*" target="sip:127.0.0.1:UAS"  -> sipp uas_rr.xml
#   sipp uac_rr.xml -s 1234 -d 0 -> kamailio -f bench/kamailio-proxy.cfg (tm, record_route, t_relay
#                                     to $du; options as shared/peers/kamailio-proxy.sh) -> sipp uas_rr.xml
#
# uac_rr.xml/uas_rr.xml follow the Record-Route (sipp's built-in scenarios ignore it), and tolerate
# the 180/200 and ACK/BYE reordering of a multi-worker proxy. The static route stands in for a
# registration: --mode proxy is passed when `switchboard serve --help` lists it (the flag lands on
# another branch); until then the proxy is the service's only mode for routed calls.
# Every step starts fresh servers on free loopback ports in a mktemp -d directory and stops them
# by PID. Prints RESULT lines, SWEEP lines, and a table with the ratio switchboard/kamailio.
#
# Usage: bash bench/proxy.sh          (full: fixed 1000 cps x 20000, sweep 1000..20000 step 1000)
#        QUICK=1 bash bench/proxy.sh  (tiny sizes, < 1 minute after the build)
# Env: FIXED_RATE FIXED_CALLS START STEP MAX MIN_CALLS SUSTAIN_S SWEEP SIPP_BUF SB_LOG
#      SWITCHBOARD_BIN KEEP_WORK NO_INSTALL (bench/common.sh)
#      KAM_CHILDREN (-n, 2) KAM_SHM (-m MB, 2048) KAM_PKG (-M MB, 16) KAM_MM (-x/-X, tlsf)
#      TARGETS ("switchboard kamailio": measure only some)
. "$(dirname "$0")/common.sh"

: "${START:=1000}" "${STEP:=1000}" "${MAX:=20000}"
: "${KAM_CHILDREN:=2}" "${KAM_SHM:=2048}" "${KAM_PKG:=16}" "${KAM_MM=tlsf}" "${TARGETS:=switchboard kamailio}"
TITLE="proxy: sipp uac -> proxy -> sipp uas, switchboard vs Kamailio (calls/s)"
KAM_CFG=$BENCH_DIR/kamailio-proxy.cfg

ensure_tools sipp kamailio
build_switchboard
MODE_ARGS=$(sb_mode_args)

# The callee: sipp uas_rr.xml on a free port (sets UAS_PID, UAS_PORT).
start_uas() {
	pick_port UAS_PORT
	"$SIPP" -sf "$SCENARIOS/uas_rr.xml" -i 127.0.0.1 -p "$UAS_PORT" -nostdin -buff_size "$SIPP_BUF" \
		-trace_stat -stf "$WORK/$1.uas.csv" -fd 1 >/dev/null 2>"$WORK/$1.uas.err" &
	UAS_PID=$!
	STARTED_PIDS+=("$UAS_PID")
	wait_udp_port "$UAS_PORT"
}
stop_uas() {
	kill -USR1 "$UAS_PID" 2>/dev/null # sipp soft quit: writes its final statistics
	stop_pid "$UAS_PID" 10
	PEER_FAIL=$(csv_last "$WORK/$1.uas.csv" "FailedCall(C)")
}
UAC_COMMON=(-sf "$SCENARIOS/uac_rr.xml" -s 1234 -d 0)

t_start_switchboard() {
	start_uas "$1" || return 1
	pick_port SB_PORT
	printf '[[route]]\nuser = "*"\ntarget = "sip:127.0.0.1:%s"\n' "$UAS_PORT" >"$WORK/$1.toml"
	mkdir -p "$WORK/$1.data"
	# shellcheck disable=SC2086
	RUST_LOG=${SB_LOG:-warn} "$SB" serve --no-auth $MODE_ARGS --config "$WORK/$1.toml" --data "$WORK/$1.data" \
		--listen "127.0.0.1:$SB_PORT" >"$WORK/$1.sb.out" 2>"$WORK/$1.sb.err" &
	SB_PID=$!
	STARTED_PIDS+=("$SB_PID")
	wait_udp_port "$SB_PORT" || { cat "$WORK/$1.sb.err" >&2; return 1; }
	SRV_PIDS=$SB_PID SRV_ADDR=127.0.0.1:$SB_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
t_mem_switchboard() { MEM_MB=$(fdiv "$(proc_kb "$SB_PID" VmHWM)" 1024) MEM_WHAT=VmHWM; }
t_stop_switchboard() {
	kill "$SB_PID" 2>/dev/null
	stop_pid "$SB_PID" 15
	stop_uas "$1"
}

t_start_kamailio() {
	start_uas "$1" || return 1
	pick_port KAM_PORT
	start_kamailio "$KAM_CFG" "$1" "$KAM_PORT" -A "UAS_ADDR=\"sip:127.0.0.1:$UAS_PORT\"" || return 1
	SRV_PIDS=$KPIDS SRV_ADDR=127.0.0.1:$KAM_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
# Kamailio pre-faults its whole shm (-m) at start, so its RSS says nothing; count what its
# allocator used (shm max_used) plus the private anonymous memory of its processes.
t_mem_kamailio() {
	local anon=0 p
	for p in $KPIDS; do anon=$((anon + $(proc_kb "$p" RssAnon))); done
	MEM_MB=$(fdiv $(($(kam_shm_max_used_kb) + anon)) 1024) MEM_WHAT=shm+anon
}
t_stop_kamailio() {
	stop_kamailio
	stop_uas "$1"
}

echo "# proxy: $SB_VERSION, $(kamailio_version), $(sipp_version), $(nproc) CPUs, $(date -u +%FT%TZ)"
echo "# switchboard: RUST_LOG=${SB_LOG:-warn} switchboard serve --no-auth ${MODE_ARGS:-(no --mode flag yet)} --config CFG --data DIR --listen 127.0.0.1:PORT; CFG: [[route]] user=\"*\" target=\"sip:127.0.0.1:UAS\""
echo "# kamailio: kamailio -f bench/kamailio-proxy.cfg -l udp:127.0.0.1:PORT -A UAS_ADDR=... -DD -E -n $KAM_CHILDREN -m $KAM_SHM -M $KAM_PKG ${KAM_MM:+-x $KAM_MM -X $KAM_MM}"
echo "# uac: sipp -sf fixtures/sipp/uac_rr.xml -s 1234 -d 0 ADDR -r RATE -m CALLS -buff_size $SIPP_BUF -trace_rtt -rtt_freq 1; uas: sipp -sf fixtures/sipp/uas_rr.xml"
"$KAMAILIO" -c -f "$KAM_CFG" >"$WORK/kamcheck.log" 2>&1 || { cat "$WORK/kamcheck.log" >&2; die "kamailio config check failed"; }
ROWS=()
for t in $TARGETS; do
	case "$t" in
	switchboard) bench_target switchboard && ROWS+=(switchboard) ;;
	kamailio) bench_target kamailio && ROWS+=(kamailio) ;;
	*) die "unknown target $t (switchboard, kamailio)" ;;
	esac
done
print_table cps "${ROWS[@]}"
