#!/usr/bin/env bash
# bench/callgrind.sh — instructions per call of the service under a bounded bench load, counted by
# valgrind's callgrind: repeatable on a loaded machine, where the CPU seconds of bench/b2bua.sh and
# bench/proxy.sh move by ±10% from one round to the next. Meant for comparing two binaries
# (SWITCHBOARD_BIN) while looking for a CPU regression; the CPU-s figures stay the acceptance.
#
#   sipp uac_rr.xml -s 1234 -d 0 -r RATE -m CALLS -> valgrind --tool=callgrind switchboard serve
#        --no-auth --mode MODE, [[route]] user="*" -> sipp uas_rr.xml   (the bench/b2bua.sh harness)
#
# Callgrind runs the service ~50x slower, so the rate is low (25 calls/s keeps up on a busy 2-core
# VM; above ~50/s sipp starts retransmitting and the counts include the retransmissions). The
# counters are zeroed once the service is up; after the last call the script waits TAIL seconds
# (64*T1 and a little: the lingering transactions and dialogs end) and stops the service. It
# prints the instructions per call of the whole process and of the signalling path (the driver's
# flush, handle_datagram and the timers: the part that does not move with the store thread's
# commit grouping or the runtime's wake-ups, ±0.5% between runs), then the top functions by
# self cost. Keep the output file (OUT) for callgrind_annotate.
#
# Usage: SWITCHBOARD_BIN=PATH bash bench/callgrind.sh
# Env: MODE (b2bua | b2bua_sig | proxy, default b2bua; b2bua_sig is the B2BUA with --no-relay, as
#      bench/b2bua.sh's target of that name) CALLS (1000) RATE (25) TAIL (40) TOP (25)
#      OUT (callgrind output file, default in the scratch directory, removed unless KEEP_WORK)
#      RTP_PORTS (b2bua, 50000-59999) SB_LOG SWITCHBOARD_BIN KEEP_WORK (bench/common.sh)
. "$(dirname "$0")/common.sh"
. "$BENCH_DIR/targets.sh"

: "${MODE:=b2bua}" "${CALLS:=1000}" "${RATE:=25}" "${TAIL:=40}" "${TOP:=25}" "${RTP_PORTS:=50000-59999}"
: "${OUT:=$WORK/callgrind.out}"
ensure_tools sipp
command -v valgrind >/dev/null 2>&1 || die "valgrind not found: apt-get install -y valgrind"
command -v python3 >/dev/null 2>&1 || die "python3 not found"
build_switchboard
sb_has_mode || die "this switchboard has no --mode flag"

# start_sb_routed runs "$SB" serve ...: a wrapper that execs valgrind keeps its PID.
REAL_SB=$SB
printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s %s "$@"\n' "$OUT" "$REAL_SB" >"$WORK/sb-callgrind"
chmod +x "$WORK/sb-callgrind"

extra=() sb_mode=$MODE
[ "$MODE" = b2bua ] && extra=(--rtp-ports "$RTP_PORTS")
[ "$MODE" = b2bua_sig ] && extra=(--no-relay) sb_mode=b2bua
start_uas cg || die "sipp uas did not start"
SB=$WORK/sb-callgrind
start_sb_routed cg "$sb_mode" "*=$UAS_PORT" "${extra[@]}" || die "switchboard did not start under valgrind"
SB=$REAL_SB
sleep 1
callgrind_control -z "$SB_PID" >/dev/null 2>&1 || echo "# callgrind_control -z failed: the counts include the start-up" >&2
echo "# callgrind: $SB_VERSION, mode $MODE, $CALLS calls at $RATE/s, $(nproc) CPUs, $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
pick_port LPORT
run_uac cg "$RATE" "$CALLS" "$LPORT" "127.0.0.1:$SB_PORT" -sf "$SCENARIOS/uac_rr.xml" -s 1234 -d 0
echo "# uac: ok $UAC_OK failed $UAC_FAIL retransmissions $UAC_RETRANS"
sleep "$TAIL"
kill "$SB_PID" 2>/dev/null # SIGTERM: the service ends and callgrind writes OUT
for _ in $(seq 1 300); do kill -0 "$SB_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SB_PID" 2>/dev/null && kill -9 "$SB_PID" 2>/dev/null
wait "$SB_PID" 2>/dev/null
stop_uas cg
[ -s "$OUT" ] || die "no callgrind output"

python3 - "$OUT" "$CALLS" "$TOP" <<'EOF'
import collections, re, sys

path, calls, top = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
names, self_cost, edge = {}, collections.Counter(), collections.Counter()
fn = cfn = None
pending = False
for line in open(path, errors="replace"):
    line = line.rstrip("\n")
    if line.startswith(("fn=", "cfn=")):
        key, rest = line.split("=", 1)
        m = re.match(r"\((\d+)\)(?: (.*))?", rest)
        name = rest
        if m:
            if m.group(2) is not None:
                names[m.group(1)] = m.group(2)
            name = names.get(m.group(1), rest)
        if key == "fn":
            fn = name
        else:
            cfn = name
    elif line.startswith("calls="):
        pending = True
    elif line[:1].isdigit() or line[:1] in "+-*":
        parts = line.split()
        if len(parts) < 2:
            continue
        if pending:
            if fn != cfn:
                edge[(fn, cfn)] += int(parts[1])
            pending = False
        else:
            self_cost[fn] += int(parts[1])
inclusive = collections.Counter(self_cost)
for (f, _), v in edge.items():
    inclusive[f] += v
total = sum(self_cost.values())
signalling = (
    r"^switchboard::driver::flush::\{\{closure\}\}$",
    r"^switchboard::endpoint::Endpoint::handle_datagram$",
    r"^switchboard::endpoint::Endpoint::handle_timeout$",
    r"^<switchboard::service::app::Service as switchboard::(driver|application)::Application>::handle_timeout$",
)
sig = sum(v for f, v in inclusive.items() if any(re.match(p, f) for p in signalling))
print(f"INSTRUCTIONS per_call_total={total / calls:.0f} per_call_signalling={sig / calls:.0f} calls={calls:.0f}")
print(f"== top {top} functions by self cost (instructions per call) ==")
for f, v in self_cost.most_common(top):
    print(f"{v / calls:10.0f} {100 * v / total:5.1f}%  {f[:140]}")
EOF
echo "# signalling = inclusive cost of driver::flush, Endpoint::handle_datagram, Endpoint::handle_timeout, Service::handle_timeout"
[ -n "${KEEP_WORK:-}" ] && echo "# callgrind output: $OUT (callgrind_annotate --inclusive=no does not attribute this binary's functions: read it with the script's parser)"
