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
# registration. The service runs with --mode proxy (its default is b2bua, see bench/b2bua.sh); the
# script checks that the service reports that mode at start (a binary from before the flag has no
# --mode and only proxies: it runs without the flag).
# Every step starts fresh servers on free loopback ports in a mktemp -d directory and stops them
# by PID. Prints RESULT lines, SWEEP lines, and a table with the ratio switchboard/kamailio.
#
# Usage: bash bench/proxy.sh          (full: fixed 1000 cps x 20000, sweep 1000..20000 step 1000)
#        QUICK=1 bash bench/proxy.sh  (tiny sizes, < 1 minute after the build)
# Env: FIXED_RATE FIXED_CALLS START STEP MAX MIN_CALLS SUSTAIN_S SWEEP SIPP_BUF SB_LOG
#      SWITCHBOARD_BIN KEEP_WORK NO_INSTALL (bench/common.sh)
#      KAM_CHILDREN (-n, 2) KAM_SHM (-m MB, 2048) KAM_PKG (-M MB, 16) KAM_MM (-x/-X, tlsf)
#      TARGETS ("switchboard kamailio": measure only some; "sipp" adds the generator's own ceiling:
#      the same uac_rr.xml straight to the uas_rr.xml callee, no proxy between, so a sweep shows
#      the rate at which sipp itself stops, the figure issue 16's "or the generator's ceiling" asks for)
. "$(dirname "$0")/common.sh"

: "${START:=1000}" "${STEP:=1000}" "${MAX:=20000}"
: "${KAM_CHILDREN:=2}" "${KAM_SHM:=2048}" "${KAM_PKG:=16}" "${KAM_MM=tlsf}" "${TARGETS:=switchboard kamailio}"
TITLE="proxy: sipp uac -> proxy -> sipp uas, switchboard vs Kamailio (calls/s)"
. "$BENCH_DIR/targets.sh"

ensure_tools sipp kamailio
build_switchboard
# The service's default mode is b2bua now: --mode proxy is required (a binary from before the flag
# only proxies, and runs without it). start_sb_routed checks the mode the service reports.
if sb_has_mode; then MODE_ARGS="--mode proxy"; else MODE_ARGS=""; fi

UAC_COMMON=(-sf "$SCENARIOS/uac_rr.xml" -s 1234 -d 0)

t_start_switchboard() {
	start_uas "$1" || return 1
	start_sb_routed "$1" proxy "*=$UAS_PORT" || return 1
	SRV_PIDS=$SB_PID SRV_ADDR=127.0.0.1:$SB_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
t_mem_switchboard() { MEM_MB=$(fdiv "$(proc_kb "$SB_PID" VmHWM)" 1024) MEM_WHAT=VmHWM; }
t_stop_switchboard() {
	stop_sb
	stop_uas "$1"
}

# The generator's own ceiling: the same caller straight to the callee. The "server" whose CPU is
# counted is the callee sipp (there is no proxy), so only this row's max cps is comparable.
t_start_sipp() {
	start_uas "$1" || return 1
	SRV_PIDS=$UAS_PID SRV_ADDR=127.0.0.1:$UAS_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
t_mem_sipp() { MEM_MB=$(fdiv "$(proc_kb "$UAS_PID" VmHWM)" 1024) MEM_WHAT=VmHWM; }
t_stop_sipp() { stop_uas "$1"; }

echo "# proxy: $SB_VERSION, $(kamailio_version), $(sipp_version), $(nproc) CPUs, $(date -u +%FT%TZ)"
echo "# switchboard: RUST_LOG=${SB_LOG:-warn} switchboard serve --no-auth ${MODE_ARGS:-(no --mode flag yet)} --config CFG --data DIR --listen 127.0.0.1:PORT; CFG: [[route]] user=\"*\" target=\"sip:127.0.0.1:UAS\""
echo "# kamailio: kamailio -f bench/kamailio-proxy.cfg -l udp:127.0.0.1:PORT -A UAS_ADDR=... -DD -E -n $KAM_CHILDREN -m $KAM_SHM -M $KAM_PKG ${KAM_MM:+-x $KAM_MM -X $KAM_MM}"
echo "# uac: sipp -sf fixtures/sipp/uac_rr.xml -s 1234 -d 0 ADDR -r RATE -m CALLS -buff_size $SIPP_BUF -trace_rtt -rtt_freq 1; uas: sipp -sf fixtures/sipp/uas_rr.xml"
[[ " $TARGETS " == *" kamailio "* ]] && kamailio_check
ROWS=()
for t in $TARGETS; do
	case "$t" in
	switchboard | kamailio | sipp) ROWS+=("$t") ;;
	*) die "unknown target $t (switchboard, kamailio, sipp)" ;;
	esac
done
bench_rounds "${ROWS[@]}"
print_table cps "${ROWS[@]}"
