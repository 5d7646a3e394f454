#!/usr/bin/env bash
# System calls and context switches of the relay per relayed packet: `switchboard serve` as a B2BUA
# relay under CALLS calls of steady RTP (relay_load, 50 pps per stream, 2 streams per call), counted by
# `perf stat -e raw_syscalls:sys_enter,context-switches -p PID -- sleep 3` over a 3 s window taken 3 s
# after the load tool starts (1 s warm-up; the calls are set up by then at up to 400 calls).
# Usage: SB=path/to/switchboard TOOL=path/to/relay_load bench/relay_syscalls.sh CALLS [RTP_BASE]
# (build the tool with `cargo bench --bench relay_load --no-run`; see bench/relay.sh). Prints the tool's
# RESULT line, perf's CSV and, per packet, syscalls and context switches. SB_EXTRA: more `serve`
# arguments (e.g. "--relay-threads 0": relayed on the service's thread, the design before lanes).
set -eu
calls=${1:?CALLS} lo=${2:-46000}
: "${SB:?SB=switchboard binary}" "${TOOL:?TOOL=relay_load binary}"
dir=$(mktemp -d /tmp/relay-syscalls.XXXXXX)
port=$((40000 + RANDOM % 2000))
RUST_LOG=info "$SB" serve --mode b2bua --listen "127.0.0.1:$port" --no-auth --data none --rtp-timeout 0 \
	--rtp-ports "$lo-$((lo + calls * 4 + 199))" --max-echo-calls-per-source 0 --unauth-port-share 100 \
	--max-transactions 2000000 --max-bindings 10000000 --rate-limit 0 ${SB_EXTRA:-} >"$dir/relay.log" 2>&1 &
pid=$!
sleep 1
"$TOOL" --backend switchboard --server "127.0.0.1:$port" --pid "$pid" --calls "$calls" --pps 50 --duration 6 \
	--warmup 1 --label relay >"$dir/tool.out" 2>"$dir/tool.err" &
tool=$!
sleep 3
perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$pid" -- sleep 3 2>"$dir/perf.csv"
wait "$tool" || true
kill "$pid" || true
wait "$pid" || true
grep '^RESULT' "$dir/tool.out"
cat "$dir/perf.csv"
pps=$(grep '^RESULT' "$dir/tool.out" | tr ' ' '\n' | sed -n 's/^delivered_pps=//p')
awk -F, -v p="$pps" '$3=="raw_syscalls:sys_enter"{s=$1} $3=="context-switches"{c=$1}
	END{ if (p>0) printf "per packet: syscalls %.2f context switches %.2f\n", s/(3*p), c/(3*p) }' "$dir/perf.csv"
grep 'media readers' "$dir/relay.log" || true
rm -rf "$dir"
