#!/usr/bin/env bash
# bench/b2bua.sh — switchboard as a back-to-back user agent (its default mode), signalling only,
# beside its own stateful proxy and Kamailio's, same harness, same run: calls from sipp through the
# service to a sipp UAS (0 ms hold, no RTP sent).
#
#   sipp uac_rr.xml -s 1234 -d 0 -> switchboard serve --no-auth --mode b2bua, config
#                                     [[route]] user="*" target="sip:127.0.0.1:UAS"  -> sipp uas_rr.xml
#   the same with --mode proxy (bench/proxy.sh's switchboard row)
#   the same through kamailio -f bench/kamailio-proxy.cfg (bench/proxy.sh's kamailio row)
#
# In B2BUA mode each call is two dialogs: the service answers the caller itself and places a new
# call (own Call-ID, tags, CSeq) to the route's target; it sends no Record-Route, so the caller's
# ACK and BYE go to the service's Contact (uac_rr.xml follows the 200's Contact as [next_url] when
# there is no route set). The B2BUA refuses an INVITE without an SDP offer (488) and needs an SDP
# answer: uac_rr.xml offers PCMU, uas_rr.xml answers. For each call the B2BUA binds two RTP/RTCP
# port pairs (four UDP sockets) from --rtp-ports RTP_PORTS and writes the call record and call
# state to SQLite in its data directory; no media flows (the calls last 0 ms).
# Every step starts fresh servers on free loopback ports in a mktemp -d directory and stops them
# by PID. Prints RESULT lines, SWEEP lines, and a table with the ratios b2bua/each other target.
#
# Usage: bash bench/b2bua.sh          (full: fixed 1000 cps x 20000, sweep 1000..20000 step 1000)
#        QUICK=1 bash bench/b2bua.sh  (tiny sizes, < 1 minute after the build)
# Env: FIXED_RATE FIXED_CALLS START STEP MAX MIN_CALLS SUSTAIN_S SWEEP SIPP_BUF SB_LOG
#      SWITCHBOARD_BIN KEEP_WORK NO_INSTALL (bench/common.sh); KAM_CHILDREN KAM_SHM KAM_PKG KAM_MM
#      (as bench/proxy.sh); RTP_PORTS (relay ports, 50000-59999: outside the 20000-49999 the
#      scripts pick SIP ports from); TARGETS ("b2bua proxy kamailio", the first is the one the
#      ratios divide: first/each other). Target b2bua_sig is the B2BUA with --no-relay (signalling
#      only: SDP passes through, no ports bound), the configuration issue 7's target 3 is about:
#      TARGETS="b2bua_sig b2bua proxy" gives the ratio to the proxy in one run.
. "$(dirname "$0")/common.sh"

: "${START:=1000}" "${STEP:=1000}" "${MAX:=20000}" "${RTP_PORTS:=50000-59999}"
: "${KAM_CHILDREN:=2}" "${KAM_SHM:=2048}" "${KAM_PKG:=16}" "${KAM_MM=tlsf}" "${TARGETS:=b2bua proxy kamailio}"
TITLE="b2bua: sipp uac -> switchboard B2BUA -> sipp uas (signalling only) vs switchboard proxy and Kamailio proxy (calls/s)"
. "$BENCH_DIR/targets.sh"

ensure_tools sipp
[[ " $TARGETS " == *" kamailio "* ]] && ensure_tools kamailio
build_switchboard
sb_has_mode || die "this switchboard has no --mode flag: it has no B2BUA"

UAC_COMMON=(-sf "$SCENARIOS/uac_rr.xml" -s 1234 -d 0)

t_start_b2bua() {
	start_uas "$1" || return 1
	start_sb_routed "$1" b2bua "*=$UAS_PORT" --rtp-ports "$RTP_PORTS" || return 1
	SRV_PIDS=$SB_PID SRV_ADDR=127.0.0.1:$SB_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
t_start_b2bua_sig() {
	start_uas "$1" || return 1
	start_sb_routed "$1" b2bua "*=$UAS_PORT" --no-relay || return 1
	SRV_PIDS=$SB_PID SRV_ADDR=127.0.0.1:$SB_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
t_start_proxy() {
	start_uas "$1" || return 1
	start_sb_routed "$1" proxy "*=$UAS_PORT" || return 1
	SRV_PIDS=$SB_PID SRV_ADDR=127.0.0.1:$SB_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
t_mem_b2bua() { MEM_MB=$(fdiv "$(proc_kb "$SB_PID" VmHWM)" 1024) MEM_WHAT=VmHWM; }
t_mem_proxy() { t_mem_b2bua; }
t_mem_b2bua_sig() { t_mem_b2bua; }
t_stop_b2bua_sig() { t_stop_b2bua "$1"; }
t_stop_proxy() {
	stop_sb
	stop_uas "$1"
}
t_stop_b2bua() {
	t_stop_proxy "$1"
	# The B2BUA writes a call record per call: every successful call must be there, ended by BYE.
	local have
	have=$("$SB" cdr --data "$WORK/$1.data" 2>/dev/null | grep -c ' bye ')
	if [ "$have" -lt "${UAC_OK:-0}" ]; then
		echo "WARNING: $1: $have call records ended by bye, the caller completed $UAC_OK calls" >&2
		PEER_FAIL=$((PEER_FAIL + UAC_OK - have))
	fi
	rm -rf "$WORK/$1.data"
}

echo "# b2bua: $SB_VERSION, $(kamailio_version 2>/dev/null), $(sipp_version), $(nproc) CPUs, $(date -u +%FT%TZ), load average $LOAD_AT_START"
echo "# b2bua: RUST_LOG=${SB_LOG:-warn} switchboard serve --no-auth --mode b2bua --rtp-ports $RTP_PORTS --config CFG --data DIR --listen 127.0.0.1:PORT; CFG: [[route]] user=\"*\" target=\"sip:127.0.0.1:UAS\""
echo "# b2bua_sig: the same with --no-relay instead of --rtp-ports; proxy: the same with --mode proxy (no --rtp-ports)"
echo "# kamailio: kamailio -f bench/kamailio-proxy.cfg -l udp:127.0.0.1:PORT -A UAS_ADDR=... -DD -E -n $KAM_CHILDREN -m $KAM_SHM -M $KAM_PKG ${KAM_MM:+-x $KAM_MM -X $KAM_MM}"
echo "# uac: sipp -sf fixtures/sipp/uac_rr.xml -s 1234 -d 0 ADDR -r RATE -m CALLS -buff_size $SIPP_BUF -trace_rtt -rtt_freq 1; uas: sipp -sf fixtures/sipp/uas_rr.xml"
[[ " $TARGETS " == *" kamailio "* ]] && kamailio_check
ROWS=()
for t in $TARGETS; do
	case "$t" in
	b2bua | b2bua_sig | proxy | kamailio) ROWS+=("$t") ;;
	*) die "unknown target $t (b2bua, b2bua_sig, proxy, kamailio)" ;;
	esac
done
bench_rounds "${ROWS[@]}"
print_table cps "${ROWS[@]}"
