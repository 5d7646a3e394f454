#!/usr/bin/env bash
# bench/call_cpu.sh [SECONDS] — CPU cost of one active call (both directions, PCMU, 20 ms) in the
# softphone: one `softphone answer` and one `softphone dial` on loopback, each sending a tone and
# recording, for SECONDS (default 60). Prints each process's CPU seconds (utime+stime from
# /proc/PID/stat, sampled just before the call ends) and the CPU share of one core per call leg.
# Bounded: the call ends after SECONDS, and each process is waited for at most SECONDS+30 s.
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")/.."
cargo build --release --bin softphone >/dev/null 2>&1
bin=target/release/softphone
dir=$(mktemp -d)
trap 'kill "${ans:-}" "${dial:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT

"$bin" --tone 1000 --record "$dir/a.wav" --rtp-ports 51000-51999 answer --calls 1 >"$dir/ans.out" 2>"$dir/ans.err" &
ans=$!
for _ in $(seq 100); do grep -q "listening on udp" "$dir/ans.out" 2>/dev/null && break; sleep 0.05; done
port=$(sed -n 's/.*udp 127.0.0.1:\([0-9]*\);.*/\1/p' "$dir/ans.out" | head -1)
[ -n "$port" ] || { echo "call_cpu: answerer did not start" >&2; exit 1; }

"$bin" --tone 440 --record "$dir/b.wav" --rtp-ports 52000-52999 dial "sip:softphone@127.0.0.1:$port" --duration "$secs" >"$dir/dial.out" 2>"$dir/dial.err" &
dial=$!

ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
# Sample one second before the call ends: both processes are still in the call.
sleep "$((secs - 1))"
cpu_ans=$(cpu "$ans"); cpu_dial=$(cpu "$dial")
timeout "$((30))" tail --pid="$dial" -f /dev/null || true
timeout "$((30))" tail --pid="$ans" -f /dev/null || true

echo "one PCMU call, ${secs} s, both directions (50 packets/s each way, tone out, recording in)"
printf "%-10s %10s %14s\n" process "cpu s" "cpu % of core"
pct() { awk -v c="$1" -v s="$secs" 'BEGIN { printf "%.3f", c * 100 / (s - 1) }'; }
printf "%-10s %10s %14s\n" answer "$cpu_ans" "$(pct "$cpu_ans")"
printf "%-10s %10s %14s\n" dial "$cpu_dial" "$(pct "$cpu_dial")"
grep -h "^call " "$dir/dial.out" "$dir/ans.out" || true
