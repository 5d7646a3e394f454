# shellcheck shell=bash
# bench/common.sh — shared by the bench/*.sh load scripts (sourced).
#
# The method and several helpers (CPU seconds from /proc/PID/stat, sipp statistics parsing, the
# pass/fail judgement, the ascending sweep, starting Kamailio in the foreground under a scratch
# directory) follow the project's shared peer benchmarks, ../shared/peers/common.sh (written by us,
# not a third party), copied and adapted here so that the scripts run from a clean clone.
#
# Every process is started by this file or the script that sources it, on 127.0.0.1, on ports
# picked free at start; it is stopped by PID (never by name) when its step ends and again at exit.
# Every load run is bounded by sipp -m and by coreutils timeout; every wait has a deadline.
#
# Environment (each script adds its own):
#   QUICK=1            tiny sizes, for checking that a script works end to end (< 1 min per script
#                      after the build)
#   FIXED_RATE FIXED_CALLS   the fixed-rate phase (CPU per 10k and latency at a moderate rate)
#   START STEP MAX     the ascending sweep; each step runs max(MIN_CALLS, SUSTAIN_S x rate) calls
#   MIN_CALLS SUSTAIN_S
#   SWEEP=0            skip the sweep (fixed phase only)
#   REPS               rounds of the whole measurement (default 1); the table shows the median of
#                      each column over the rounds, every round is printed as a ROUND line
#   SIP_PORTS          range the SIP ports of servers and sipp are picked from (20000-49999)
#   SIPP_BUF           sipp socket buffers (default 4 MiB; the kernel caps it at rmem_max)
#   SB_LOG             RUST_LOG of the service (default warn: errors-only, as Kamailio's debug=-1)
#   SWITCHBOARD_BIN    use this binary instead of building one with cargo
#   KEEP_WORK=1        keep the scratch directory (sipp csv files, logs)
#   NO_INSTALL=1       do not apt-get missing tools, fail instead

set -u

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SIPP=${SIPP:-sipp}
SIPP_BUF=${SIPP_BUF:-4194304}
KAMAILIO=${KAMAILIO:-/usr/sbin/kamailio}
KAMCMD=${KAMCMD:-/usr/sbin/kamcmd}
CLK_TCK=$(getconf CLK_TCK)
SCENARIOS=$ROOT/fixtures/sipp

if [ "${QUICK:-0}" = 1 ]; then
	: "${FIXED_RATE:=50}" "${FIXED_CALLS:=100}" "${START:=100}" "${STEP:=100}" "${MAX:=200}"
	: "${MIN_CALLS:=200}" "${SUSTAIN_S:=1}" "${KAM_SHM:=256}"
fi
: "${SIP_PORTS:=20000-49999}"
: "${FIXED_RATE:=1000}" "${FIXED_CALLS:=20000}" "${MIN_CALLS:=20000}" "${SUSTAIN_S:=10}" "${SWEEP:=1}"

WORK=$(mktemp -d -t sb-bench.XXXXXX)
LOAD_AT_START=$(cut -d" " -f1-3 /proc/loadavg)
STARTED_PIDS=()
PICKED_PORTS=()

# True if PID is still one of the processes we started (guards against PID reuse: it must still
# run one of our programs).
ours() {
	local c
	c=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
	case "$c" in sipp | kamailio | switchboard | timeout) return 0 ;; *) return 1 ;; esac
}
cleanup() {
	local p
	for p in "${STARTED_PIDS[@]:-}"; do
		[ -n "$p" ] && ours "$p" && kill "$p" 2>/dev/null
	done
	sleep 0.3
	for p in "${STARTED_PIDS[@]:-}"; do
		[ -n "$p" ] && ours "$p" && kill -9 "$p" 2>/dev/null
	done
	if [ -n "${KEEP_WORK:-}" ]; then echo "# scratch kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "ERROR: $*" >&2
	exit 1
}
now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a-b}'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b==0 || a=="NA" || b=="NA") print "NA"; else printf "%.3f", a/b}'; }

# ---- tools -----------------------------------------------------------------------------------

# ensure_tools sipp [kamailio]: installs the Debian packages of missing tools (we run as root on
# a fresh VM), or fails with the command to run.
ensure_tools() {
	local want=() t
	for t in "$@"; do
		case "$t" in
		sipp) command -v "$SIPP" >/dev/null 2>&1 || want+=(sip-tester) ;;
		kamailio) { [ -x "$KAMAILIO" ] && [ -x "$KAMCMD" ]; } || want+=(kamailio) ;;
		esac
	done
	command -v ss >/dev/null 2>&1 || want+=(iproute2)
	command -v /usr/bin/time >/dev/null 2>&1 || want+=(time)
	[ ${#want[@]} = 0 ] && return 0
	if [ -n "${NO_INSTALL:-}" ] || [ "$(id -u)" != 0 ]; then
		die "missing ${want[*]}: run apt-get update && apt-get install -y ${want[*]}"
	fi
	echo "# installing ${want[*]} (apt-get)" >&2
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}"; } >"$WORK/apt.log" 2>&1 ||
		{ tail -20 "$WORK/apt.log" >&2; die "apt-get install ${want[*]} failed"; }
}

# Builds switchboard in release (unless SWITCHBOARD_BIN is set) and copies the binary into the
# scratch directory, so a rebuild elsewhere cannot swap it out during the run. Sets SB.
build_switchboard() {
	if [ -n "${SWITCHBOARD_BIN:-}" ]; then
		cp "$SWITCHBOARD_BIN" "$WORK/switchboard" || die "cannot copy $SWITCHBOARD_BIN"
	else
		command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) or set SWITCHBOARD_BIN"
		echo "# building switchboard (cargo build --release --bin switchboard)" >&2
		(cd "$ROOT" && cargo build --release --bin switchboard) >"$WORK/build.log" 2>&1 ||
			{ tail -30 "$WORK/build.log" >&2; die "cargo build failed"; }
		local td=${CARGO_TARGET_DIR:-$ROOT/target}
		case "$td" in /*) ;; *) td=$ROOT/$td ;; esac
		cp "$td/release/switchboard" "$WORK/switchboard" || die "no binary at $td/release/switchboard"
	fi
	SB=$WORK/switchboard
	# The checkout describes a binary built here; a given binary may come from another commit.
	local origin
	if [ -n "${SWITCHBOARD_BIN:-}" ]; then
		origin="SWITCHBOARD_BIN=$SWITCHBOARD_BIN"
	else
		origin=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'no git')
	fi
	SB_VERSION="$("$SB" --version 2>/dev/null) ($origin)"
	# The caps of issue 14 point 5 are sized for strangers; a bench loads the service from one
	# address far past them, so every script passes SB_CAPS_OFF to serve and prints it in its
	# header. Empty for a binary that predates the flags.
	SB_CAPS_OFF=()
	if "$SB" serve --help 2>/dev/null | grep -q -- '--max-transactions'; then
		SB_CAPS_OFF=(--max-echo-calls-per-source 0 --unauth-port-share 100 --max-transactions 2000000 --max-bindings 10000000)
		echo "# switchboard caps lifted for one-address load: ${SB_CAPS_OFF[*]}"
	fi
	# Every load here comes from one address (127.0.0.1), and loopback is not exempt from the
	# per-source rate limit (issue 14): turn it off, and say so. An older binary has no such flag.
	SB_NO_LIMIT=()
	if "$SB" serve --help 2>/dev/null | grep -q -- '--rate-limit'; then
		SB_NO_LIMIT=(--rate-limit 0)
		echo "# switchboard runs with rate_limit = 0 (--rate-limit 0): the load comes from one address"
	fi
	SB_CAPS_OFF+=("${SB_NO_LIMIT[@]}")
	# serve --workers (issue 16 point 1) reads SWITCHBOARD_WORKERS; unset, it runs one per core.
	if "$SB" serve --help 2>/dev/null | grep -q -- '--workers'; then
		echo "# switchboard workers: ${SWITCHBOARD_WORKERS:-one per core ($(nproc))} (env SWITCHBOARD_WORKERS)"
	fi
}

# ---- ports and processes -----------------------------------------------------------------------

# pick_port VAR: a UDP port on 127.0.0.1 that nothing listens on and that we have not handed out,
# from SIP_PORTS (default 20000-49999; keep media port ranges outside it).
pick_port() {
	local p i lo=${SIP_PORTS%-*} hi=${SIP_PORTS#*-}
	for i in $(seq 1 500); do
		p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
		[[ " ${PICKED_PORTS[*]:-} " == *" $p "* ]] && continue
		ss -Hlun "sport = :$p" 2>/dev/null | grep -q . && continue
		PICKED_PORTS+=("$p")
		printf -v "$1" '%s' "$p"
		return 0
	done
	die "no free UDP port found"
}

# Wait until something listens on udp 127.0.0.1:PORT (max ~10 s).
wait_udp_port() {
	local port=$1 i=0
	while [ $i -lt 100 ]; do
		ss -Hlun "sport = :$port" 2>/dev/null | grep -q . && return 0
		sleep 0.1
		i=$((i + 1))
	done
	echo "ERROR: nothing listening on udp port $port" >&2
	return 1
}

# Refuse to start a step if a previous one left something bound to PORT(s).
assert_ports_free() {
	local port
	for port in "$@"; do
		if ss -Hlun "sport = :$port" 2>/dev/null | grep -q .; then
			echo "ERROR: udp port $port already in use" >&2
			return 1
		fi
	done
}

# Wait up to $2 seconds for PID $1 to exit; then TERM, then KILL (only if it is still ours).
stop_pid() {
	local pid=$1 lim=${2:-10} i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt $((lim * 10)) ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$pid" 2>/dev/null && ours "$pid"; then
		kill "$pid" 2>/dev/null
		sleep 1
		kill -0 "$pid" 2>/dev/null && ours "$pid" && kill -9 "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	return 0
}
children_of() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' | tr '\n' ' '; }

# ---- measurements ------------------------------------------------------------------------------

# stat_ticks EXPR PID...: the sum over the PIDs (all threads) of an awk expression of fields of
# /proc/PID/stat ($14 utime, $15 stime, in clock ticks); missing PIDs count 0.
stat_ticks() {
	local expr=$1 s=0 p t
	shift
	for p in "$@"; do
		t=$(awk "{print $expr}" "/proc/$p/stat" 2>/dev/null) || t=0
		s=$((s + ${t:-0}))
	done
	echo "$s"
}
# utime+stime; stime alone (the kernel's share: system calls, packet delivery, scheduling).
cpu_ticks() { stat_ticks '$14+$15' "$@"; }
sys_ticks() { stat_ticks '$15' "$@"; }
ticks_to_s() { awk -v t="$1" -v h="$CLK_TCK" 'BEGIN{printf "%.3f", t/h}'; }
# /proc/PID/status field in kB (VmRSS, VmHWM)
proc_kb() { awk -v f="$2:" '$1==f{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Sum of PSS (kB) over PIDs: the fair total for processes sharing memory.
pss_kb() {
	local s=0 p v
	for p in "$@"; do
		v=$(awk '$1=="Pss:"{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || v=0
		s=$((s + ${v:-0}))
	done
	echo "$s"
}
# Datagrams the kernel dropped on the UDP socket(s) bound to 127.0.0.1:PORT (receive buffer full),
# from the drops column of /proc/net/udp; 0 if none is bound.
udp_port_drops() {
	awk -v p="$(printf '%04X' "$1")" 'NR>1 { split($2, a, ":"); if (a[2]==p) d+=$NF } END{print d+0}' /proc/net/udp
}
udp_rcvbuf_errors() { awk '/^Udp:/{n++} /^Udp:/&&n==2{print $6}' /proc/net/snmp; }

# Value of column NAME in the last line of a sipp -trace_stat csv.
csv_last() {
	awk -F';' -v n="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==n) c=i; next} {l=$0} END{split(l,a,";"); print (c ? a[c] : "NA")}' "$1" 2>/dev/null
}

# "p50 p99" of the response times (ms, column 2) of sipp -trace_rtt files given as arguments.
# sipp measures in whole milliseconds, from the start of the call to the response marked rtd.
rtt_pct() {
	cat "$@" 2>/dev/null | awk -F';' '$2 ~ /^[0-9.]+$/ {print $2}' | sort -g |
		awk '{a[NR]=$1} END{ if (NR==0) {print "NA NA"; exit}
			i50=int(0.50*NR+0.999999); i99=int(0.99*NR+0.999999); if (i50<1) i50=1; if (i99<1) i99=1;
			printf "%g %g\n", a[i50], a[i99]}'
}

# Run a sipp UAC in the foreground from its own directory, bounded by -m and by timeout.
# Args: tag rate calls local_port remote scenario-args...   Results in UAC_* globals.
run_uac() {
	local tag=$1 rate=$2 calls=$3 lport=$4 remote=$5
	shift 5
	local lim t0 t1 dir=$WORK/$tag.uac
	lim=$(awk -v c="$calls" -v r="$rate" 'BEGIN{printf "%d", c/r + 60}')
	mkdir -p "$dir"
	UAC_CSV=$dir/stat.csv
	t0=$(now)
	(cd "$dir" && /usr/bin/time -f "%U %S %M %e" -o "$dir/time" \
		timeout --signal=INT --kill-after=10 "$lim" \
		"$SIPP" "$@" "$remote" -i 127.0.0.1 -p "$lport" -nostdin -buff_size "$SIPP_BUF" \
		-r "$rate" -m "$calls" -trace_rtt -rtt_freq 1 \
		-trace_stat -stf "$UAC_CSV" -fd 1 -trace_err -error_file "$dir/errors.log" \
		>/dev/null 2>"$dir/stderr")
	UAC_RC=$?
	t1=$(now)
	UAC_WALL=$(fsub "$t1" "$t0")
	read -r UAC_USER UAC_SYS UAC_MAXRSS _ < <(tail -1 "$dir/time" 2>/dev/null || echo "0 0 0 0")
	UAC_CPU=$(awk -v u="${UAC_USER:-0}" -v s="${UAC_SYS:-0}" 'BEGIN{printf "%.3f", u+s}')
	UAC_OK=$(csv_last "$UAC_CSV" "SuccessfulCall(C)")
	UAC_FAIL=$(csv_last "$UAC_CSV" "FailedCall(C)")
	UAC_RETRANS=$(csv_last "$UAC_CSV" "Retransmissions(C)")
	UAC_CPS=$(fdiv "${UAC_OK:-0}" "$UAC_WALL")
	read -r UAC_P50 UAC_P99 < <(rtt_pct "$dir"/*_rtt.csv)
}

# PASS iff every call completed and the offered rate was reached: successful calls / wall time
# >= 95% of the target (sipp silently falls behind when it cannot keep up; 0.2 s for start-up).
judge() {
	local rate=$1 calls=$2
	PASS=0
	if [ "${UAC_FAIL:-NA}" = 0 ] && [ "${UAC_OK:-0}" = "$calls" ] &&
		awk -v w="$UAC_WALL" -v c="$calls" -v r="$rate" 'BEGIN{exit !(w <= c/(0.95*r) + 0.2)}'; then
		PASS=1
	fi
}

# Calls for one sweep step: at least MIN_CALLS and at least SUSTAIN_S seconds.
calls_for_rate() {
	local n=$(($1 * SUSTAIN_S))
	[ "$n" -lt "$MIN_CALLS" ] && n=$MIN_CALLS
	echo "$n"
}

# ---- Kamailio ----------------------------------------------------------------------------------

# start_kamailio CFG TAG PORT [-A DEFINE...]: Kamailio in the foreground (-DD -E) so $! is the
# main PID, listening on 127.0.0.1:PORT (-l), with pidfile, runtime dir and ctl socket in a fresh
# directory. Options as shared/peers/kamailio-proxy.sh: -n KAM_CHILDREN -m KAM_SHM -M KAM_PKG
# -x/-X KAM_MM. Sets KP (main PID) and KPIDS (main and children).
start_kamailio() {
	local cfg=$1 tag=$2 port=$3 i=0 run=$WORK/$2.kam
	shift 3
	mkdir -p "$run"
	KAM_CTL=$run/ctl
	"$KAMAILIO" -f "$cfg" -l "udp:127.0.0.1:$port" -A "CTL_SOCK=\"unix:$KAM_CTL\"" "$@" -DD -E \
		-n "$KAM_CHILDREN" -m "$KAM_SHM" -M "$KAM_PKG" ${KAM_MM:+-x "$KAM_MM" -X "$KAM_MM"} \
		-P "$run/kam.pid" -Y "$run" -w "$run" >"$run/log" 2>&1 &
	KP=$!
	STARTED_PIDS+=("$KP")
	wait_udp_port "$port" || { tail -5 "$run/log" >&2; return 1; }
	while [ ! -S "$KAM_CTL" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	sleep 0.5
	KPIDS="$KP $(children_of "$KP")"
	# shellcheck disable=SC2206
	STARTED_PIDS+=($KPIDS)
}
# Kamailio's shared-memory high-water mark in kB, from its own allocator.
kam_shm_max_used_kb() {
	"$KAMCMD" -s "unix:$KAM_CTL" core.shmmem 2>/dev/null | awk '$1=="max_used:"{printf "%d", $2/1024}'
}
stop_kamailio() {
	kill "$KP" 2>/dev/null
	stop_pid "$KP" 15
}
kamailio_version() { "$KAMAILIO" -v 2>/dev/null | head -1 | awk '{print $2, $3}'; }
sipp_version() { "$SIPP" -v 2>/dev/null | grep -o 'SIPp v[^ -]*' | head -1; }

# ---- one step, the phases, the table -----------------------------------------------------------
#
# A script defines, for each target NAME it measures:
#   t_start_NAME TAG start the server (and its UAS if any); set SRV_PIDS (processes whose CPU
#                    counts), SRV_ADDR (ip:port sipp calls) and UAC_ARGS (scenario arguments)
#   t_mem_NAME       after the load, before stopping: set MEM_MB (peak memory figure) and MEM_WHAT
#   t_stop_NAME TAG  stop everything it started; set PEER_FAIL (failed calls at the UAS, 0 if none)

declare -A R_FIX_SYS R_MAX R_FIX_CPU R_MAX_CPU R_MEM R_MEMWHAT R_FIX_P50 R_FIX_P99 R_MAX_P50 R_MAX_P99 R_FIX_OK R_FIX_CPS
PHASE=""

# run_one NAME RATE CALLS: one bounded run; sets PASS and LAST_* and prints a RESULT line.
run_one() {
	local name=$1 rate=$2 calls=$3 tag="$1-$PHASE-r$2" c0 c1 e0 e1 lport cpu
	PEER_FAIL=0
	if ! "t_start_$name" "$tag"; then
		"t_stop_$name" "$tag" 2>/dev/null
		PASS=0
		echo "RESULT target=$name phase=$PHASE rate=$rate calls=$calls start_failed pass=0"
		return
	fi
	pick_port lport
	# shellcheck disable=SC2086
	c0=$(cpu_ticks $SRV_PIDS) k0=$(sys_ticks $SRV_PIDS)
	e0=$(udp_rcvbuf_errors)
	run_uac "$tag" "$rate" "$calls" "$lport" "$SRV_ADDR" "${UAC_ARGS[@]}"
	# shellcheck disable=SC2086
	c1=$(cpu_ticks $SRV_PIDS) k1=$(sys_ticks $SRV_PIDS)
	e1=$(udp_rcvbuf_errors)
	SRV_DROPS=$(udp_port_drops "${SRV_ADDR##*:}")
	"t_mem_$name"
	"t_stop_$name" "$tag"
	cpu=$(ticks_to_s $((c1 - c0)))
	judge "$rate" "$calls"
	[ "${PEER_FAIL:-0}" = 0 ] || PASS=0
	LAST_CPU10K=$(fdiv "$cpu" "$(fdiv "$calls" 10000)")
	LAST_SYS10K=$(fdiv "$(ticks_to_s $((k1 - k0)))" "$(fdiv "$calls" 10000)")
	LAST_CPS=$UAC_CPS LAST_P50=$UAC_P50 LAST_P99=$UAC_P99 LAST_MEM=$MEM_MB LAST_MEMWHAT=$MEM_WHAT
	echo "RESULT target=$name phase=$PHASE rate=$rate calls=$calls ok=$UAC_OK failed=$UAC_FAIL peer_failed=$PEER_FAIL" \
		"achieved=$UAC_CPS wall_s=$UAC_WALL retrans=$UAC_RETRANS rcvbuf_errors=$((e1 - e0)) server_socket_drops=$SRV_DROPS" \
		"server_cpu_s=$cpu server_cpu_per10k=$LAST_CPU10K server_sys_per10k=$LAST_SYS10K core_util=$(fdiv "$cpu" "$UAC_WALL") uac_cpu_s=$UAC_CPU" \
		"mem_mb=$MEM_MB($MEM_WHAT) p50_ms=$UAC_P50 p99_ms=$UAC_P99 pass=$PASS"
}

# bench_target NAME: the fixed-rate phase, then (unless SWEEP=0 or START > MAX) the ascending
# sweep START, START+STEP, ... MAX that stops at the first failing step. Fills the R_* tables.
bench_target() {
	local name=$1 r
	PHASE=fixed
	run_one "$name" "$FIXED_RATE" "$FIXED_CALLS"
	R_FIX_OK[$name]=$PASS R_FIX_CPU[$name]=$LAST_CPU10K R_FIX_SYS[$name]=$LAST_SYS10K R_FIX_P50[$name]=$LAST_P50 R_FIX_P99[$name]=$LAST_P99
	R_FIX_CPS[$name]=$LAST_CPS R_MEM[$name]=$LAST_MEM R_MEMWHAT[$name]=$LAST_MEMWHAT
	R_MAX[$name]=0 R_MAX_CPU[$name]=NA R_MAX_P50[$name]=NA R_MAX_P99[$name]=NA
	[ "$SWEEP" = 1 ] || return 0
	PHASE=max
	r=$START
	while [ "$r" -le "$MAX" ]; do
		run_one "$name" "$r" "$(calls_for_rate "$r")"
		[ "$PASS" = 1 ] || break
		R_MAX[$name]=$r R_MAX_CPU[$name]=$LAST_CPU10K R_MAX_P50[$name]=$LAST_P50 R_MAX_P99[$name]=$LAST_P99
		R_MEM[$name]=$LAST_MEM R_MEMWHAT[$name]=$LAST_MEMWHAT
		r=$((r + STEP))
	done
	local note=""
	[ "${R_MAX[$name]}" -ge "$MAX" ] && note=" (hit MAX: the ceiling is higher)"
	[ "${R_MAX[$name]}" = 0 ] && note=" (START already failed: lower START)"
	echo "SWEEP target=$name max_pass=${R_MAX[$name]}$note"
}

# median_of VALUE...: the middle of the numeric values (the lower middle for an even count), NA if none.
median_of() {
	printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g | awk '{v[NR]=$1} END{if (NR) print v[int((NR+1)/2)]; else print "NA"}'
}

# bench_rounds NAME...: REPS rounds (default 1), each running bench_target for every NAME in turn,
# interleaved so that drift in the machine's load hits every target alike. Each round is printed
# as a ROUND line; afterwards the R_* tables hold the median over the rounds, per target and per
# column (the fixed phase counts as passed only if it passed in every round).
bench_rounds() {
	local rep n col v vals
	local -A seen=()
	for rep in $(seq "${REPS:-1}"); do
		for n in "$@"; do
			echo "# round $rep of ${REPS:-1}: $n, $(date -u +%T), load average $(cut -d" " -f1-3 /proc/loadavg)"
			bench_target "$n"
			for col in R_MAX R_FIX_CPU R_FIX_SYS R_MAX_CPU R_MEM R_FIX_P50 R_FIX_P99 R_MAX_P50 R_MAX_P99 R_FIX_OK; do
				local -n arr=$col
				seen[$col,$n,$rep]=${arr[$n]}
			done
			echo "ROUND $rep target=$n max=${R_MAX[$n]} cpu10k_fix=${R_FIX_CPU[$n]} sys10k_fix=${R_FIX_SYS[$n]} cpu10k_max=${R_MAX_CPU[$n]} mem_mb=${R_MEM[$n]} p50_p99_fix=${R_FIX_P50[$n]}/${R_FIX_P99[$n]} p50_p99_max=${R_MAX_P50[$n]}/${R_MAX_P99[$n]} fixed_pass=${R_FIX_OK[$n]}"
		done
	done
	for n in "$@"; do
		for col in R_MAX R_FIX_CPU R_FIX_SYS R_MAX_CPU R_MEM R_FIX_P50 R_FIX_P99 R_MAX_P50 R_MAX_P99 R_FIX_OK; do
			vals=()
			for rep in $(seq "${REPS:-1}"); do vals+=("${seen[$col,$n,$rep]}"); done
			local -n arr=$col
			if [ "$col" = R_FIX_OK ]; then
				v=1
				for rep in "${vals[@]}"; do [ "$rep" = 1 ] || v=0; done
			else
				v=$(median_of "${vals[@]}")
			fi
			arr[$n]=$v
		done
	done
}

# print_table UNIT NAME... : one row per target, then the ratio of the first to each of the others.
print_table() {
	local unit=$1 n a b
	shift
	echo
	echo "== $TITLE =="
	echo "# $(date -u +%F), $(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average now $(cut -d" " -f1-3 /proc/loadavg) (at start $LOAD_AT_START); QUICK=${QUICK:-0}; median of REPS=${REPS:-1} rounds; fixed $FIXED_RATE $unit x $FIXED_CALLS; sweep ${START:-NA}..${MAX:-NA} step ${STEP:-NA} (>= max($MIN_CALLS, ${SUSTAIN_S}s) per step)"
	printf '%-28s %12s %11s %11s %11s %20s %12s %12s\n' target "max $unit" "cpu/10k@fix" "sys/10k@fix" "cpu/10k@max" "memory MB" "p50/p99@fix" "p50/p99@max"
	for n in "$@"; do
		printf '%-28s %12s %11s %11s %11s %20s %12s %12s\n' "$n" "${R_MAX[$n]}" "${R_FIX_CPU[$n]}$([ "${R_FIX_OK[$n]}" = 1 ] || echo '!')" \
			"${R_FIX_SYS[$n]}" "${R_MAX_CPU[$n]}" "${R_MEM[$n]} ${R_MEMWHAT[$n]}" "${R_FIX_P50[$n]}/${R_FIX_P99[$n]}" "${R_MAX_P50[$n]}/${R_MAX_P99[$n]}"
	done
	a=$1
	shift
	for b in "$@"; do
		printf '%-28s %12s %11s %11s %11s %20s %12s %12s\n' "ratio $a/$b" "$(fdiv "${R_MAX[$a]}" "${R_MAX[$b]}")" \
			"$(fdiv "${R_FIX_CPU[$a]}" "${R_FIX_CPU[$b]}")" "$(fdiv "${R_FIX_SYS[$a]}" "${R_FIX_SYS[$b]}")" "$(fdiv "${R_MAX_CPU[$a]}" "${R_MAX_CPU[$b]}")" \
			"$(fdiv "${R_MEM[$a]}" "${R_MEM[$b]}")" "$(fdiv "${R_FIX_P50[$a]}" "${R_FIX_P50[$b]}")/$(fdiv "${R_FIX_P99[$a]}" "${R_FIX_P99[$b]}")" \
			"$(fdiv "${R_MAX_P50[$a]}" "${R_MAX_P50[$b]}")/$(fdiv "${R_MAX_P99[$a]}" "${R_MAX_P99[$b]}")"
	done
	echo "# max: highest step with 0 failed and >= 95% of the offered rate. cpu/10k: server CPU seconds (utime+stime," \
		"all its processes) per 10,000 calls; sys: the kernel's part of it (stime); '!' = the fixed run had failures. p50/p99: setup time in ms at the" \
		"caller (sipp -trace_rtt, 1 ms resolution). Ratios > 1 mean the first target uses more (or reaches more, for max)."
}
