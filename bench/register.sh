#!/usr/bin/env bash
# bench/register.sh — REGISTER with digest authentication: switchboard's registrar beside
# Kamailio's, same harness, same run. One sipp "call" = REGISTER -> 401 -> REGISTER with
# credentials -> 200, and the 200 must carry the saved binding (Contact ...;expires=).
#
#   sipp register_auth_inf.xml -inf users.csv -> switchboard serve --data DIR (digest auth; users
#        made with `switchboard users add`; every binding persisted to SQLite on disk)
#   sipp register_auth_inf.xml -inf users.csv -> kamailio -f bench/kamailio-registrar-auth.cfg
#        (auth module: 401 with qop=auth, nonce-count checks; usrloc in memory, db_mode 0)
#
# Differences to keep in mind: Kamailio keeps registrations in memory only, switchboard writes
# each one to disk (off the signalling loop); Kamailio runs KAM_CHILDREN worker processes,
# switchboard one signalling thread plus its store writer.
# The run has USERS distinct users (sipp cycles through them: after the first USERS REGISTERs
# the rest refresh existing bindings, on both servers alike). Every step starts a fresh server
# (switchboard from a copy of one data directory holding the users) on free loopback ports in a
# mktemp -d directory and stops it by PID. Prints RESULT lines, SWEEP lines, and a table with the
# ratio switchboard/kamailio.
#
# Usage: bash bench/register.sh          (full: fixed 1000/s x 20000, sweep 1000..20000 step 1000)
#        QUICK=1 bash bench/register.sh  (tiny sizes, < 1 minute after the build)
# Env: FIXED_RATE FIXED_CALLS START STEP MAX MIN_CALLS SUSTAIN_S SWEEP SIPP_BUF SB_LOG
#      SWITCHBOARD_BIN KEEP_WORK NO_INSTALL (bench/common.sh); KAM_CHILDREN KAM_SHM KAM_PKG KAM_MM
#      (as bench/proxy.sh); USERS (distinct users, 2000; `users add` takes ~30 ms each);
#      TARGETS ("switchboard kamailio")
. "$(dirname "$0")/common.sh"

[ "${QUICK:-0}" = 1 ] && : "${USERS:=20}"
: "${START:=1000}" "${STEP:=1000}" "${MAX:=20000}" "${USERS:=2000}"
: "${KAM_CHILDREN:=2}" "${KAM_SHM:=2048}" "${KAM_PKG:=16}" "${KAM_MM=tlsf}" "${TARGETS:=switchboard kamailio}"
TITLE="register: REGISTER with digest auth, switchboard (persisted) vs Kamailio (in memory) (registrations/s)"
KAM_CFG=$BENCH_DIR/kamailio-registrar-auth.cfg

ensure_tools sipp kamailio
build_switchboard

# Users u00000001..: password pw-USER, in the injection file as sipp's [authentication] keyword
# (sipp 3.6.1 does not substitute [field0] inside [authentication ...] in a scenario).
USERS_CSV=$WORK/users.csv
{
	echo SEQUENTIAL
	seq -f 'u%08g' 1 "$USERS" | awk '{printf "%s;[authentication username=%s password=pw-%s];\n", $1, $1, $1}'
} >"$USERS_CSV"
TEMPLATE=$WORK/users.data
if [[ " $TARGETS " == *" switchboard "* ]]; then
	echo "# creating $USERS users with switchboard users add" >&2
	"$SB" users --data "$TEMPLATE" add u00000001 --password pw-u00000001 >/dev/null || die "switchboard users add failed"
	seq -f 'u%08g' 2 "$USERS" | xargs -r -P 2 -I{} "$SB" users --data "$TEMPLATE" add {} --password pw-{} >/dev/null ||
		die "switchboard users add failed"
	n=$("$SB" users --data "$TEMPLATE" list 2>/dev/null | grep -c '^u')
	[ "$n" = "$USERS" ] || die "expected $USERS users in the store, found $n"
fi
UAC_COMMON=(-sf "$SCENARIOS/register_auth_inf.xml" -inf "$USERS_CSV")

t_start_switchboard() {
	pick_port SB_PORT
	cp -a "$TEMPLATE" "$WORK/$1.data"
	RUST_LOG=${SB_LOG:-warn} "$SB" serve --data "$WORK/$1.data" --listen "127.0.0.1:$SB_PORT" "${SB_NO_LIMIT[@]}" \
		>"$WORK/$1.sb.out" 2>"$WORK/$1.sb.err" &
	SB_PID=$!
	STARTED_PIDS+=("$SB_PID")
	wait_udp_port "$SB_PORT" || { cat "$WORK/$1.sb.err" >&2; return 1; }
	SRV_PIDS=$SB_PID SRV_ADDR=127.0.0.1:$SB_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
t_mem_switchboard() { MEM_MB=$(fdiv "$(proc_kb "$SB_PID" VmHWM)" 1024) MEM_WHAT=VmHWM; }
t_stop_switchboard() {
	kill "$SB_PID" 2>/dev/null # SIGTERM: flushes the store, then exits
	stop_pid "$SB_PID" 30
	# Every 200 must have reached the disk: count the bindings the store holds after shutdown.
	local want=$((UAC_OK < USERS ? UAC_OK : USERS)) have
	have=$("$SB" registrations --data "$WORK/$1.data" 2>/dev/null | grep -c '^sip:')
	[ "$have" -ge "$want" ] || {
		echo "WARNING: $1: store holds $have bindings, expected $want" >&2
		PEER_FAIL=$((want - have))
	}
	rm -rf "$WORK/$1.data"
}

t_start_kamailio() {
	pick_port KAM_PORT
	start_kamailio "$KAM_CFG" "$1" "$KAM_PORT" || return 1
	SRV_PIDS=$KPIDS SRV_ADDR=127.0.0.1:$KAM_PORT UAC_ARGS=("${UAC_COMMON[@]}")
}
# Kamailio pre-faults its whole shm (-m) at start, so its RSS says nothing; count what its
# allocator used (shm max_used) plus the private anonymous memory of its processes.
t_mem_kamailio() {
	local anon=0 p
	for p in $KPIDS; do anon=$((anon + $(proc_kb "$p" RssAnon))); done
	MEM_MB=$(fdiv $(($(kam_shm_max_used_kb) + anon)) 1024) MEM_WHAT=shm+anon
}
t_stop_kamailio() { stop_kamailio; }

echo "# register: $SB_VERSION, $(kamailio_version), $(sipp_version), $(nproc) CPUs, $(date -u +%FT%TZ)"
echo "# switchboard: RUST_LOG=${SB_LOG:-warn} switchboard serve --data DIR --listen 127.0.0.1:PORT (digest, MD5; $USERS users)"
echo "# kamailio: kamailio -f bench/kamailio-registrar-auth.cfg -l udp:127.0.0.1:PORT -DD -E -n $KAM_CHILDREN -m $KAM_SHM -M $KAM_PKG ${KAM_MM:+-x $KAM_MM -X $KAM_MM}"
echo "# uac: sipp -sf fixtures/sipp/register_auth_inf.xml -inf users.csv ADDR -r RATE -m REGS -buff_size $SIPP_BUF -trace_rtt -rtt_freq 1"
"$KAMAILIO" -c -f "$KAM_CFG" >"$WORK/kamcheck.log" 2>&1 || { cat "$WORK/kamcheck.log" >&2; die "kamailio config check failed"; }
ROWS=()
for t in $TARGETS; do
	case "$t" in
	switchboard | kamailio) ROWS+=("$t") ;;
	*) die "unknown target $t (switchboard, kamailio)" ;;
	esac
done
bench_rounds "${ROWS[@]}"
print_table reg/s "${ROWS[@]}"
echo "# p50/p99 here: from the first REGISTER to the 200 (both round trips)."
