#!/usr/bin/env bash
# bench/cluster.sh — what the dispatcher and Redis cost per call (issue 17): sipp calls to the echo
# user of one `switchboard serve` alone (SQLite in its data directory, no dispatcher), then of 1, 2
# and 3 instances sharing one redis-server behind one `switchboard dispatch`.
#
#   single:  sipp dispatch_uac.xml -s echo -d 0 -> switchboard serve --no-auth --data DIR
#   N = 1 2 3: sipp dispatch_uac.xml -s echo -d 0 -> switchboard dispatch --store redis://...
#              --backend sip:I1 ... -> N x switchboard serve --no-auth --store redis://...
#              --dispatcher D --data DIR_i; redis-server --save "" --appendonly no
#
# For each configuration and each rate in RATES, CALLS_S seconds of calls (bounded by sipp -m and
# timeout). Printed per run: the calls/s sipp completed, failed calls, and the CPU seconds of the
# instances, the dispatcher and redis-server over the run (utime+stime from /proc/PID/stat), as
# CPU ms per call, in total and per process group. On 2 cores more instances cannot add
# throughput; the point is the per-call overhead of the dispatcher and Redis beside one instance.
# Every process is started here on free loopback ports in a mktemp -d directory and stopped by PID.
#
# Usage: bash bench/cluster.sh            (RATES="300 600", CALLS_S=10)
#        QUICK=1 bash bench/cluster.sh    (RATES=100, CALLS_S=3)
# Env: RATES CALLS_S CONFIGS ("single 1 2 3") PROBE_MS (200) SB_LOG SWITCHBOARD_BIN KEEP_WORK
#      NO_INSTALL (bench/common.sh)
. "$(dirname "$0")/common.sh"

# common.sh's guard against PID reuse, also knowing the redis-server this script starts.
ours() {
	local c
	c=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
	case "$c" in sipp | switchboard | timeout | redis-server) return 0 ;; *) return 1 ;; esac
}

if [ "${QUICK:-0}" = 1 ]; then : "${RATES:=100}" "${CALLS_S:=3}"; fi
: "${RATES:=300 600}" "${CALLS_S:=10}" "${CONFIGS:=single 1 2 3}" "${PROBE_MS:=200}"

ensure_tools sipp
command -v redis-server >/dev/null 2>&1 || die "redis-server missing: apt-get install redis-server"
build_switchboard
"$SB" dispatch --help >/dev/null 2>&1 || die "this switchboard has no dispatch subcommand"

# A TCP and UDP port on 127.0.0.1 that nothing listens on.
pick_tcp_port() {
	local tport
	for _ in $(seq 1 50); do
		pick_port tport
		ss -Htln "sport = :$tport" 2>/dev/null | grep -q . && continue
		printf -v "$1" '%s' "$tport"
		return 0
	done
	die "no free TCP port"
}

start_redis() {
	pick_tcp_port REDIS_PORT
	mkdir -p "$WORK/redis"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$WORK/redis" \
		>"$WORK/redis.log" 2>&1 &
	REDIS_PID=$!
	STARTED_PIDS+=("$REDIS_PID")
	for _ in $(seq 1 100); do
		grep -q "Ready to accept connections" "$WORK/redis.log" && return 0
		sleep 0.1
	done
	die "redis-server did not start: $(tail -5 "$WORK/redis.log")"
}

# start_instance TAG PORT [serve args...]: one switchboard serve on 127.0.0.1:PORT.
start_instance() {
	local tag=$1 port=$2 rtp
	shift 2
	rtp=$((50000 + ${#INST_PIDS[@]} * 3000))
	mkdir -p "$WORK/$tag"
	RUST_LOG=${SB_LOG:-warn} "$SB" serve --no-auth --listen "127.0.0.1:$port" --data "$WORK/$tag" \
		--rtp-ports "$rtp-$((rtp + 2999))" "${SB_CAPS_OFF[@]}" "$@" >"$WORK/$tag.log" 2>&1 &
	INST_PIDS+=($!)
	STARTED_PIDS+=($!)
	wait_udp_port "$port" || die "instance $tag did not listen"
}

start_dispatcher() {
	local backends=() b
	for b in "$@"; do backends+=(--backend "sip:127.0.0.1:$b"); done
	pick_port DISP_PORT
	RUST_LOG=${SB_LOG:-warn} "$SB" dispatch --listen "127.0.0.1:$DISP_PORT" --store "redis://127.0.0.1:$REDIS_PORT/0" \
		--rate-limit 0 --probe-interval-ms "$PROBE_MS" "${backends[@]}" >"$WORK/dispatch.log" 2>&1 &
	DISP_PID=$!
	STARTED_PIDS+=("$DISP_PID")
	wait_udp_port "$DISP_PORT" || die "dispatcher did not listen"
}

# run CONFIG: starts it, runs every rate, stops it.
run_config() {
	local cfg=$1 n ports=() port target rate calls lport i0 d0 r0 i1 d1 r1
	INST_PIDS=() DISP_PID="" REDIS_PID=""
	if [ "$cfg" = single ]; then
		pick_port port
		start_instance single "$port"
		target=127.0.0.1:$port
	else
		start_redis
		for n in $(seq 1 "$cfg"); do
			pick_port port
			ports+=("$port")
		done
		start_dispatcher "${ports[@]}"
		for n in $(seq 1 "$cfg"); do
			start_instance "c$cfg-$n" "${ports[$((n - 1))]}" --store "redis://127.0.0.1:$REDIS_PORT/0" --dispatcher "127.0.0.1:$DISP_PORT"
		done
		target=127.0.0.1:$DISP_PORT
		sleep 1 # the instances follow the first membership (and the dispatcher's probes find them)
	fi
	for rate in $RATES; do
		calls=$((rate * CALLS_S))
		pick_port lport
		i0=$(cpu_ticks "${INST_PIDS[@]}") d0=$(cpu_ticks ${DISP_PID:+"$DISP_PID"}) r0=$(cpu_ticks ${REDIS_PID:+"$REDIS_PID"})
		run_uac "$cfg-$rate" "$rate" "$calls" "$lport" "$target" -sf "$SCENARIOS/dispatch_uac.xml" -s echo -d 0
		i1=$(cpu_ticks "${INST_PIDS[@]}") d1=$(cpu_ticks ${DISP_PID:+"$DISP_PID"}) r1=$(cpu_ticks ${REDIS_PID:+"$REDIS_PID"})
		local ok=${UAC_OK:-0}
		per() { awk -v t="$1" -v h="$CLK_TCK" -v c="$ok" 'BEGIN{ if (c==0) print "NA"; else printf "%.3f", 1000*t/h/c }'; }
		local inst disp red total
		inst=$(per $((i1 - i0))) disp=$(per $((d1 - d0))) red=$(per $((r1 - r0))) total=$(per $((i1 - i0 + d1 - d0 + r1 - r0)))
		echo "RESULT config=$cfg rate=$rate calls=$calls ok=$ok failed=${UAC_FAIL:-NA} cps=$UAC_CPS cpu_ms_per_call=$total instances=$inst dispatcher=$disp redis=$red p50_ms=$UAC_P50 p99_ms=$UAC_P99"
		ROWS+=("$(printf '%-7s %6s %8s %7s %10s %10s %10s %8s' "$cfg" "$rate" "$UAC_CPS" "${UAC_FAIL:-NA}" "$total" "$inst" "$disp" "$red")")
	done
	local pid
	for pid in "${INST_PIDS[@]}" ${DISP_PID:+"$DISP_PID"} ${REDIS_PID:+"$REDIS_PID"}; do
		ours "$pid" && kill "$pid" 2>/dev/null
		stop_pid "$pid" 10
	done
}

echo "# cluster: $SB_VERSION, $(sipp_version), $(redis-server --version | awk '{print $3}'), $(nproc) CPUs, load at start $LOAD_AT_START, $(date -u +%FT%TZ)"
echo "# sipp -sf fixtures/sipp/dispatch_uac.xml -s echo -d 0 -r RATE -m RATE*$CALLS_S; probes every $PROBE_MS ms"
ROWS=()
for cfg in $CONFIGS; do run_config "$cfg"; done
echo
printf '%-7s %6s %8s %7s %10s %10s %10s %8s\n' config rate cps failed "cpu ms/call" instances dispatcher redis
printf '%s\n' "${ROWS[@]}"
