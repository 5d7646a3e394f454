# shellcheck shell=bash
# bench/targets.sh — the call-routing targets shared by bench/proxy.sh, bench/b2bua.sh and
# bench/concurrent.sh (sourced after bench/common.sh; not a benchmark by itself).
#
#   start_uas TAG [sipp args]     a sipp UAS (fixtures/sipp/uas_rr.xml: answers with SDP, echoes
#                                 Record-Route) on a free port; sets UAS_PID UAS_PORT
#   stop_uas TAG                  soft-quits it (SIGUSR1) and sets PEER_FAIL from its statistics
#   start_sb_routed TAG MODE ROUTES [serve args]
#                                 switchboard serve --no-auth --mode MODE with a config of static
#                                 routes (ROUTES: "user=port ..." lines, e.g. "*=5070"), data in
#                                 WORK/TAG.data (SQLite on disk); checks the mode it reports;
#                                 sets SB_PID SB_PORT
#   t_start_kamailio / t_mem_kamailio / t_stop_kamailio   Kamailio's stateful record-routing proxy
#                                 (bench/kamailio-proxy.cfg) to a sipp UAS, as in bench/proxy.sh

KAM_CFG=$BENCH_DIR/kamailio-proxy.cfg

start_uas() {
	local tag=$1
	shift
	pick_port UAS_PORT
	"$SIPP" -sf "$SCENARIOS/uas_rr.xml" -i 127.0.0.1 -p "$UAS_PORT" -nostdin -buff_size "$SIPP_BUF" \
		-trace_stat -stf "$WORK/$tag.uas.csv" -fd 1 "$@" >/dev/null 2>"$WORK/$tag.uas.err" &
	UAS_PID=$!
	STARTED_PIDS+=("$UAS_PID")
	wait_udp_port "$UAS_PORT"
}
stop_uas() {
	kill -USR1 "$UAS_PID" 2>/dev/null # sipp soft quit: writes its final statistics
	stop_pid "$UAS_PID" 10
	PEER_FAIL=$(csv_last "$WORK/$1.uas.csv" "FailedCall(C)")
}

# --mode exists since the B2BUA landed (default b2bua). A binary without it only proxies.
sb_has_mode() { "$SB" serve --help 2>/dev/null | grep -q -- '--mode'; }

start_sb_routed() {
	local tag=$1 mode=$2 routes=$3 r mode_args=() i=0
	shift 3
	pick_port SB_PORT
	: >"$WORK/$tag.toml"
	for r in $routes; do
		printf '[[route]]\nuser = "%s"\ntarget = "sip:127.0.0.1:%s"\n' "${r%%=*}" "${r#*=}" >>"$WORK/$tag.toml"
	done
	if sb_has_mode; then
		mode_args=(--mode "$mode")
	elif [ "$mode" != proxy ]; then
		echo "ERROR: this switchboard has no --mode flag (proxy only)" >&2
		return 1
	fi
	mkdir -p "$WORK/$tag.data"
	RUST_LOG=${SB_LOG:-warn} "$SB" serve --no-auth "${mode_args[@]}" --config "$WORK/$tag.toml" --data "$WORK/$tag.data" \
		--listen "127.0.0.1:$SB_PORT" "${SB_NO_LIMIT[@]}" "$@" >"$WORK/$tag.sb.out" 2>"$WORK/$tag.sb.err" &
	SB_PID=$!
	STARTED_PIDS+=("$SB_PID")
	wait_udp_port "$SB_PORT" || { cat "$WORK/$tag.sb.err" >&2; return 1; }
	# The service names its mode on stderr at start ("...; mode Proxy"): make sure it is the one asked for.
	if [ ${#mode_args[@]} -gt 0 ]; then
		while ! grep -q '; mode ' "$WORK/$tag.sb.err" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		grep -qi "; mode $mode\$" "$WORK/$tag.sb.err" || {
			echo "ERROR: switchboard did not start in mode $mode:" >&2
			cat "$WORK/$tag.sb.err" >&2
			return 1
		}
	fi
}
stop_sb() {
	kill "$SB_PID" 2>/dev/null # SIGTERM: ends its calls and flushes its store
	stop_pid "$SB_PID" 15
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
kamailio_check() {
	"$KAMAILIO" -c -f "$KAM_CFG" >"$WORK/kamcheck.log" 2>&1 || { cat "$WORK/kamcheck.log" >&2; die "kamailio config check failed"; }
}
