#!/usr/bin/env bash
# RTP relay throughput and added latency on loopback: switchboard's B2BUA relay beside rtpengine's
# userspace relay, same machine, same load, same load tool (benches/relay_load.rs).
#
# For each load (calls; each call is 2 RTP streams of PPS packets/s, 172-byte PCMU packets) and
# each relay, REPS times: start the relay fresh in a scratch directory, set the calls up (SIP to
# `switchboard serve --no-auth`, or rtpengine's NG offer/answer), send RTP both ways for WARMUP +
# DURATION seconds, measure the last DURATION: delivered packets, loss, one-way latency through
# the relay, and the relay process's CPU time; then end the calls and stop the relay (by PID).
# "loopback" runs the same traffic with no relay (the tool's socket sends to itself): the latency
# floor of the tool and the kernel. The table gives the median of the REPS runs of each figure.
#
# Loads: the fixed LOADS, then the RAMP steps in order until the median loss of a step exceeds
# LOSS_LIMIT % or the load tool cannot offer 95% of the step's rate (each relay on its own).
#
# Usage: bench/relay.sh            (about 15 minutes)
#        QUICK=1 bench/relay.sh    (under a minute once built: 50 and 200 calls, 1 run of 2 s, no ramp)
# Environment: LOADS, RAMP, REPS, DURATION, RAMP_DURATION, WARMUP, PPS, LOSS_LIMIT, RELAYS
# ("loopback switchboard rtpengine"; also "sbdriver": switchboard with --relay-threads 0, and
# "sbalt": switchboard with SB_ALT's `serve` arguments, e.g. SB_ALT="--workers 1 --relay-threads 1",
# SB_ALT_ENV's environment (NAME=VALUE ...) and SB_ALT_BIN's binary (default the same), to compare
# two builds or configurations interleaved in one run; "sbalt2", "sbalt3" likewise with SB_ALT2*,
# SB_ALT3*; "rtpalt": rtpengine with RTPE_ALT's arguments),
# SB_EXTRA (more `serve` arguments for switchboard, e.g. "--relay-threads 2"), SB_LOG (the service's RUST_LOG, default warn, as rtpengine's
# --log-level=4), SWITCHBOARD_BIN, RELAY_LOAD_BIN (skip the builds), NO_INSTALL=1
# (do not apt-get rtpengine-daemon), KEEP_WORK=1 (keep logs and RESULT lines).
set -u
# shellcheck source=bench/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Processes this script may stop (common.sh's list plus rtpengine).
ours() {
	local c
	c=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
	case "$c" in switchboard | rtpengine | timeout | relay_load*) return 0 ;; *) return 1 ;; esac
}

if [ "${QUICK:-0}" = 1 ]; then
	: "${LOADS:=50 200}" "${RAMP=}" "${REPS:=1}" "${DURATION:=2}" "${WARMUP:=0.5}"
fi
: "${LOADS:=50 200}" "${RAMP=400 800 1200 1600 2000}" "${REPS:=3}" "${DURATION:=10}" "${RAMP_DURATION:=5}"
: "${WARMUP:=1}" "${PPS:=50}" "${LOSS_LIMIT:=0.5}" "${RELAYS:=loopback switchboard rtpengine}"
RTPENGINE=${RTPENGINE:-rtpengine}
RESULTS=$WORK/results

# ---- tools -------------------------------------------------------------------------------------

# rtpengine: the Debian package rtpengine-daemon (userspace part; the kernel module is a separate
# package we do not use). Sets RTPE_SKIP to a reason when it cannot be had.
RTPE_SKIP=""
ensure_rtpengine() {
	command -v "$RTPENGINE" >/dev/null 2>&1 && return 0
	if [ -n "${NO_INSTALL:-}" ] || [ "$(id -u)" != 0 ]; then
		RTPE_SKIP="rtpengine not installed (apt-get install rtpengine-daemon)"
		return 0
	fi
	echo "# installing rtpengine-daemon (apt-get)" >&2
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rtpengine-daemon; } >"$WORK/apt-rtpengine.log" 2>&1 ||
		RTPE_SKIP="apt-get install rtpengine-daemon failed (see $WORK/apt-rtpengine.log)"
	command -v "$RTPENGINE" >/dev/null 2>&1 || RTPE_SKIP=${RTPE_SKIP:-"no rtpengine binary after installing rtpengine-daemon"}
}

# The load tool, built by cargo as a bench target (release profile); copied into the scratch dir.
build_tool() {
	if [ -n "${RELAY_LOAD_BIN:-}" ]; then
		cp "$RELAY_LOAD_BIN" "$WORK/relay_load" || die "cannot copy $RELAY_LOAD_BIN"
	else
		echo "# building the load tool (cargo bench --bench relay_load --no-run)" >&2
		(cd "$ROOT" && cargo bench --bench relay_load --no-run) >"$WORK/build-tool.log" 2>&1 ||
			{ tail -30 "$WORK/build-tool.log" >&2; die "cargo bench --no-run failed"; }
		local exe
		exe=$(sed -n 's/.*Executable.*(\(.*relay_load-[0-9a-f]*\)).*/\1/p' "$WORK/build-tool.log" | tail -1)
		case "$exe" in /*) ;; *) exe=$ROOT/$exe ;; esac
		cp "$exe" "$WORK/relay_load" || die "no load tool binary found in cargo's output"
	fi
	TOOL=$WORK/relay_load
}

# pick_range VAR SIZE: the first port range of SIZE ports (from 20000 up, in steps of 2000) in which
# nothing is bound on UDP, and that no earlier pick holds.
PICKED_RANGES=()
pick_range() {
	local size=$2 base used r
	used=$(ss -Hlun 2>/dev/null | awk '{n=split($4,a,":"); print a[n]}')
	for base in $(seq 20000 2000 $((60000 - size))); do
		[[ " ${PICKED_RANGES[*]:-} " == *" $base "* ]] && continue
		r=$(echo "$used" | awk -v lo="$base" -v hi=$((base + size)) '$1>=lo && $1<hi' | head -1)
		[ -z "$r" ] || continue
		PICKED_RANGES+=("$base")
		printf -v "$1" '%s' "$base"
		return 0
	done
	die "no free port range of $size ports"
}

# ---- the relays ----------------------------------------------------------------------------------
# start_NAME CALLS DIR: start the relay; set RELAY_PID (empty: none) and RELAY_ADDR (empty: none).
# stop_NAME: stop it.

start_loopback() { RELAY_PID="" RELAY_ADDR=""; }
stop_loopback() { :; }

start_switchboard() {
	local calls=$1 dir=$2 port lo
	pick_port port
	# Two port pairs per call, plus slack: ports just freed are skipped by the service's cursor.
	pick_range lo $((calls * 4 + 200))
	# shellcheck disable=SC2086
	env RUST_LOG="${SB_LOG:-warn}" ${SB_ENV:-} "$SB" serve --mode b2bua --listen "127.0.0.1:$port" --no-auth --data none --rtp-timeout 0 \
		--rtp-ports "$lo-$((lo + calls * 4 + 199))" "${SB_CAPS_OFF[@]}" ${SB_EXTRA:+$SB_EXTRA} >"$dir/relay.log" 2>&1 &
	RELAY_PID=$!
	STARTED_PIDS+=("$RELAY_PID")
	RELAY_ADDR=127.0.0.1:$port
	wait_udp_port "$port" || { tail -5 "$dir/relay.log" >&2; return 1; }
}
stop_switchboard() { kill "$RELAY_PID" 2>/dev/null; stop_pid "$RELAY_PID" 10; }
# The same binary relaying on the service's thread (`--relay-threads 0`: the reader threads hand
# every datagram to the driver, the design before relay lanes), for a before/after in one run.
start_sbdriver() { SB_EXTRA="--relay-threads 0" start_switchboard "$@"; }
stop_sbdriver() { stop_switchboard; }
# Switchboard with other `serve` arguments, environment or binary (SB_ALT, SB_ALT_ENV, SB_ALT_BIN;
# sbalt2 and sbalt3 read SB_ALT2* and SB_ALT3*), beside the default in one run.
start_alt() {
	local v=$1
	shift
	local a=${v} e=${v}_ENV b=${v}_BIN
	SB_EXTRA="${!a:-}" SB_ENV="${!e:-}" SB="${!b:-$SB}" start_switchboard "$@"
}
start_sbalt() { start_alt SB_ALT "$@"; }
start_sbalt2() { start_alt SB_ALT2 "$@"; }
start_sbalt3() { start_alt SB_ALT3 "$@"; }
stop_sbalt() { stop_switchboard; }
stop_sbalt2() { stop_switchboard; }
stop_sbalt3() { stop_switchboard; }

# rtpengine in userspace only: --table=-1 (no kernel forwarding table), no config file, one
# interface on loopback, NG control on UDP, log level 4 (warnings) to stderr, default threads.
start_rtpengine() {
	local calls=$1 dir=$2 port lo
	pick_port port
	pick_range lo $((calls * 4 + 200))
	"$RTPENGINE" --foreground --log-stderr --config-file=none --table=-1 --interface=127.0.0.1 \
		--listen-ng="127.0.0.1:$port" --port-min="$lo" --port-max="$((lo + calls * 4 + 199))" \
		--log-level=4 --pidfile="$dir/rtpengine.pid" ${RTPE_EXTRA:+$RTPE_EXTRA} >"$dir/relay.log" 2>&1 &
	RELAY_PID=$!
	STARTED_PIDS+=("$RELAY_PID")
	RELAY_ADDR=127.0.0.1:$port
	wait_udp_port "$port" || { tail -5 "$dir/relay.log" >&2; return 1; }
}
stop_rtpengine() { kill "$RELAY_PID" 2>/dev/null; stop_pid "$RELAY_PID" 10; }
# rtpengine with more arguments (RTPE_ALT, e.g. "--num-threads=2 --poller-per-thread": one
# poller per thread, as switchboard's one reader per lane), beside the default in one run.
start_rtpalt() { RTPE_EXTRA="${RTPE_ALT:-}" start_rtpengine "$@"; }
stop_rtpalt() { stop_rtpengine; }

# ---- runs ----------------------------------------------------------------------------------------

# run_one RELAY CALLS DURATION REP: one fresh relay, one tool run; appends the RESULT line.
run_one() {
	local relay=$1 calls=$2 dur=$3 rep=$4 dir lim line
	dir=$WORK/$relay-c$calls-r$rep
	mkdir -p "$dir"
	PICKED_RANGES=()
	if ! "start_$relay" "$calls" "$dir"; then
		"stop_$relay" 2>/dev/null
		echo "RESULT label=$relay calls=$calls start_failed" | tee -a "$RESULTS"
		return
	fi
	lim=$(awk -v c="$calls" -v d="$dur" -v w="$WARMUP" 'BEGIN{printf "%d", c/20 + d + w + 60}')
	# shellcheck disable=SC2046
	timeout --kill-after=5 "$lim" "$TOOL" --backend "$(case $relay in sb*) echo switchboard ;; rtpalt) echo rtpengine ;; *) echo "$relay" ;; esac)" ${RELAY_ADDR:+--server "$RELAY_ADDR"} \
		${RELAY_PID:+--pid "$RELAY_PID"} --calls "$calls" --pps "$PPS" --duration "$dur" --warmup "$WARMUP" \
		--label "$relay" >"$dir/tool.out" 2>"$dir/tool.err"
	line=$(grep '^RESULT ' "$dir/tool.out" | tail -1)
	"stop_$relay"
	[ -n "$line" ] || line="RESULT label=$relay calls=$calls failed=$(tail -1 "$dir/tool.err" | tr ' ' '_')"
	echo "$line rep=$rep" | tee -a "$RESULTS"
}

# median RELAY CALLS KEY: the median of KEY over the RESULT lines of that relay and load.
median() {
	grep "^RESULT label=$1 calls=$2 " "$RESULTS" | tr ' ' '\n' | sed -n "s/^$3=//p" | grep -E '^[0-9.]+$' | sort -g |
		awk '{a[NR]=$1} END{ if (NR==0) print "NA"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'
}

# run_load CALLS DURATION RELAY...: REPS rounds; each round runs every relay once, in turn.
run_load() {
	local calls=$1 dur=$2 rep r
	shift 2
	for rep in $(seq 1 "$REPS"); do
		for r in "$@"; do run_one "$r" "$calls" "$dur" "$rep"; done
	done
}

# ---- main ----------------------------------------------------------------------------------------

ensure_tools
active=()
for r in $RELAYS; do
	case "$r" in
	rtpengine | rtpalt)
		ensure_rtpengine
		if [ -n "$RTPE_SKIP" ]; then echo "# skipping $r: $RTPE_SKIP" >&2; else active+=("$r"); fi
		;;
	switchboard | sbdriver | sbalt | sbalt2 | sbalt3 | loopback) active+=("$r") ;;
	*) die "unknown relay $r (loopback, switchboard, sbdriver, sbalt[23], rtpengine, rtpalt)" ;;
	esac
done
build_switchboard
build_tool
: >"$RESULTS"
ROWS=()
for calls in $LOADS; do
	run_load "$calls" "$DURATION" "${active[@]}"
	for r in "${active[@]}"; do ROWS+=("$r $calls"); done
done
for r in "${active[@]}"; do
	[ "$r" = loopback ] && continue
	for calls in $RAMP; do
		run_load "$calls" "$RAMP_DURATION" "$r" loopback
		ROWS+=("$r $calls")
		loss=$(median "$r" "$calls" loss_pct)
		offered=$(median "$r" "$calls" offered_pps)
		if awk -v l="$loss" -v m="$LOSS_LIMIT" 'BEGIN{exit !(l=="NA" || l>m)}'; then
			echo "# $r: ramp stops at $calls calls: median loss $loss% > $LOSS_LIMIT%" >&2
			break
		fi
		# The tool shares the CPUs: when it cannot offer 95% of the target, higher steps say nothing.
		if awk -v o="$offered" -v t=$((calls * 2 * PPS)) 'BEGIN{exit !(o=="NA" || o<0.95*t)}'; then
			echo "# $r: ramp stops at $calls calls: offered only $offered of $((calls * 2 * PPS)) pps (load tool or machine saturated)" >&2
			break
		fi
	done
done

echo
echo "== RTP relay on loopback: $(date -u +%F), $(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); $PPS pps per stream, 2 streams per call, 172-byte packets; median of $REPS; QUICK=${QUICK:-0} =="
echo "# switchboard: $SB_VERSION; rtpengine: $([ -z "$RTPE_SKIP" ] && "$RTPENGINE" --version 2>&1 | head -1 || echo "skipped: $RTPE_SKIP")"
printf '%-12s %6s %9s %9s %7s %9s %9s %6s %8s %8s %9s %9s\n' relay calls offered delivered loss% "cpu s/1M" pps/core cores "p50 us" "p99 us" "+p50 us" "+p99 us"
declare -A seen
for row in "${ROWS[@]}"; do
	[ -n "${seen[$row]:-}" ] && continue
	seen[$row]=1
	read -r r c <<<"$row"
	p50=$(median "$r" "$c" p50_us) p99=$(median "$r" "$c" p99_us)
	b50=$(median loopback "$c" p50_us) b99=$(median loopback "$c" p99_us)
	printf '%-12s %6s %9s %9s %7s %9s %9s %6s %8s %8s %9s %9s\n' "$r" "$c" "$(median "$r" "$c" offered_pps)" \
		"$(median "$r" "$c" delivered_pps)" "$(median "$r" "$c" loss_pct)" "$(median "$r" "$c" cpu_s_per_mpkt)" \
		"$(median "$r" "$c" pps_per_core)" "$(median "$r" "$c" relay_cores)" "$p50" "$p99" \
		"$(awk -v a="$p50" -v b="$b50" 'BEGIN{ if (a=="NA"||b=="NA") print "NA"; else printf "%.1f", a-b}')" \
		"$(awk -v a="$p99" -v b="$b99" 'BEGIN{ if (a=="NA"||b=="NA") print "NA"; else printf "%.1f", a-b}')"
done
echo "# Each figure is the median of its own runs. cpu s/1M: relay CPU seconds (run time of all threads, schedstat) per"
echo "# million delivered packets; pps/core: delivered pps / cores the relay used; p50/p99: one-way latency"
echo "# sender -> relay -> receiver; +p50/+p99: minus loopback's (no relay) at the same load: what the relay adds."
echo "# The load tool runs on the same CPUs. RESULT lines: $RESULTS (KEEP_WORK=1 keeps them)."
