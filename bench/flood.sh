#!/usr/bin/env bash
# bench/flood.sh — issue 14 acceptance: FLOOD unauthenticated requests (REGISTER and INVITE
# without credentials, half each) at full speed from 127.0.0.2, while sipp makes CALLS
# authenticated calls at RATE/s from 127.0.0.1 through the service (B2BUA; bob registered with
# digest and answering as a sipp UAS; alice's INVITEs get 407 and retry with credentials).
#
# Prints, per rate limit in LIMITS: the service's RSS before and after (and its growth), how many
# flood requests were sent, answered (401/407 from the service) and dropped (by the per-source
# limit, from the service's "sip counters at exit" line, and by the kernel's socket buffer), and
# sipp's successful and failed calls. The calls must all succeed (exit status 1 otherwise).
#
#   rate_limit = 0     the limit is off (the whole load otherwise comes from one address each:
#                      sipp's 5 requests per call at RATE/s exceed the default of 200/s): every
#                      flood request is answered statelessly, so the RSS growth shows what
#                      stateless challenges save (issue 14 point 3: at most 32 MB)
#   rate_limit = 1000  the flood is dropped at the door; sipp's ~500 requests/s pass
#
# Usage: bash bench/flood.sh            (FLOOD=200000 CALLS=1000 RATE=100 LIMITS="0 1000")
#        QUICK=1 bash bench/flood.sh    (FLOOD=20000 CALLS=100)
# Env: FLOOD CALLS RATE LIMITS; SWITCHBOARD_BIN KEEP_WORK NO_INSTALL SIP_PORTS (bench/common.sh)
# Needs: sipp (sip-tester), python3 (the flooder), 127.0.0.2 on loopback (Linux has all 127/8).
. "$(dirname "$0")/common.sh"

if [ "${QUICK:-0}" = 1 ]; then : "${FLOOD:=20000}" "${CALLS:=100}"; fi
: "${FLOOD:=200000}" "${CALLS:=1000}" "${RATE:=100}" "${LIMITS:=0 1000}"
command -v python3 >/dev/null 2>&1 || die "python3 not found (the flooder)"
ensure_tools sipp
build_switchboard

# The flooder: FLOOD requests from 127.0.0.2 as fast as the socket takes them, counting answers.
cat >"$WORK/flood.py" <<'EOF'
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.2", 0))
s.setblocking(False)
me = "%s:%d" % s.getsockname()
answered = 0
def drain():
    global answered
    while True:
        try:
            s.recv(65535)
            answered += 1
        except BlockingIOError:
            return
t0 = time.time()
for i in range(n):
    if i % 2:
        line, to, cseq = "INVITE sip:bob@%s:%d" % (host, port), "bob", "1 INVITE"
    else:
        line, to, cseq = "REGISTER sip:%s:%d" % (host, port), "u%d" % (i % 1000), "1 REGISTER"
    msg = ("%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;rport;branch=z9hG4bKflood%d\r\nMax-Forwards: 70\r\n"
           "From: <sip:u%d@%s>;tag=f%d\r\nTo: <sip:%s@%s>\r\nCall-ID: flood%d@127.0.0.2\r\nCSeq: %s\r\n"
           "Contact: <sip:u%d@%s>\r\nContent-Length: 0\r\n\r\n") % (line, me, i, i % 1000, host, i, to, host, i, cseq, i % 1000, me)
    data = msg.encode()
    while True:
        try:
            s.sendto(data, (host, port))
            break
        except BlockingIOError:
            drain()
    if i % 64 == 0:
        drain()
sent_s = time.time() - t0
deadline = time.time() + 3
while time.time() < deadline:
    drain()
    time.sleep(0.05)
print("sent=%d answered=%d send_s=%.2f" % (n, answered, sent_s))
EOF

"$SB" users --data "$WORK/users" add alice --password alice-secret >/dev/null || die "users add failed"
"$SB" users --data "$WORK/users" add bob --password bob-secret >/dev/null || die "users add failed"

declare -A ROW
run_limit() {
	local limit=$1 tag="flood-l$1" dir port bob_port uac_port rss0 rss1 hwm fl sent answered sipp_ok sipp_fail counters dropped kdrops
	dir=$WORK/$tag
	mkdir -p "$dir"
	cp -a "$WORK/users" "$dir/data"
	pick_port port
	echo "# $tag: switchboard serve --rate-limit $limit (rate_limit = $limit$([ "$limit" = 0 ] && echo ': off'))"
	RUST_LOG=info "$SB" serve --data "$dir/data" --listen "127.0.0.1:$port" --rate-limit "$limit" --rtp-ports 40000-44999 \
		>"$dir/sb.out" 2>"$dir/sb.err" &
	SB_PID=$!
	STARTED_PIDS+=("$SB_PID")
	wait_udp_port "$port" || { cat "$dir/sb.err" >&2; return 1; }
	# bob registers and answers (sipp UAS on the port it registered from).
	pick_port bob_port
	(cd "$dir" && timeout 30 "$SIPP" -sf "$SCENARIOS/register_auth.xml" -s bob -au bob -ap bob-secret -m 1 -l 1 \
		-i 127.0.0.1 -p "$bob_port" -nostdin -timeout 20s -timeout_error "127.0.0.1:$port" >/dev/null 2>"$dir/reg.err") ||
		{ cat "$dir/reg.err" >&2; return 1; }
	(cd "$dir" && timeout $((CALLS / RATE + 90)) "$SIPP" -sf "$SCENARIOS/uas_registered.xml" -s bob -m "$CALLS" \
		-i 127.0.0.1 -p "$bob_port" -nostdin -buff_size "$SIPP_BUF" "127.0.0.1:$port" >/dev/null 2>"$dir/uas.err") &
	local uas_pid=$!
	STARTED_PIDS+=("$uas_pid")
	sleep 0.5
	rss0=$(proc_kb "$SB_PID" VmRSS)
	# The flood and the calls at once.
	python3 "$WORK/flood.py" 127.0.0.1 "$port" "$FLOOD" >"$dir/flood.out" 2>"$dir/flood.err" &
	local flood_pid=$!
	pick_port uac_port
	(cd "$dir" && timeout $((CALLS / RATE + 90)) "$SIPP" -sf "$SCENARIOS/uac_auth.xml" -s bob -au alice -ap alice-secret \
		-auth_uri "bob@127.0.0.1:$port" -d 500 -m "$CALLS" -r "$RATE" -l 400 -recv_timeout 32s -timeout_error \
		-i 127.0.0.1 -p "$uac_port" -nostdin -buff_size "$SIPP_BUF" -trace_stat -stf "$dir/uac.csv" -fd 1 \
		"127.0.0.1:$port" >/dev/null 2>"$dir/uac.err")
	wait "$flood_pid"
	stop_pid "$uas_pid" 20
	rss1=$(proc_kb "$SB_PID" VmRSS)
	hwm=$(proc_kb "$SB_PID" VmHWM)
	kdrops=$(udp_port_drops "$port")
	kill "$SB_PID" 2>/dev/null
	stop_pid "$SB_PID" 10
	fl=$(cat "$dir/flood.out")
	sent=$(echo "$fl" | sed -n 's/.*sent=\([0-9]*\).*/\1/p')
	answered=$(echo "$fl" | sed -n 's/.*answered=\([0-9]*\).*/\1/p')
	counters=$(grep -o 'sip counters at exit:.*' "$dir/sb.err" | tail -1)
	dropped=$(echo "$counters" | sed -n 's/.*rate_limited=\([0-9]*\).*/\1/p')
	sipp_ok=$(csv_last "$dir/uac.csv" "SuccessfulCall(C)")
	sipp_fail=$(csv_last "$dir/uac.csv" "FailedCall(C)")
	echo "RESULT rate_limit=$limit flood_sent=${sent:-NA} flood_answered=${answered:-NA} dropped_by_limit=${dropped:-NA}" \
		"kernel_drops=$kdrops calls_ok=$sipp_ok calls_failed=$sipp_fail rss_before_kb=$rss0 rss_after_kb=$rss1" \
		"rss_growth_mb=$(fdiv $((rss1 - rss0)) 1024) peak_rss_mb=$(fdiv "$hwm" 1024) ($fl; $counters)"
	grep -m1 'rate limit: src=127.0.0.2' "$dir/sb.err" | sed 's/^/# log: /'
	ROW[$limit]="${sent:-NA} ${answered:-NA} ${dropped:-NA} $kdrops $sipp_ok $sipp_fail $(fdiv "$rss0" 1024) $(fdiv "$rss1" 1024) $(fdiv $((rss1 - rss0)) 1024)"
	[ "$sipp_fail" = 0 ] && [ "$sipp_ok" = "$CALLS" ]
}

echo "# flood: $FLOOD unauthenticated REGISTER/INVITE from 127.0.0.2 at full speed, during $CALLS authenticated calls at $RATE/s from 127.0.0.1; $SB_VERSION"
status=0
for l in $LIMITS; do
	run_limit "$l" || status=1
done
echo
echo "== flood: unauthenticated flood during authenticated calls =="
echo "# $(date -u +%F), $(nproc) CPUs, load average $(cut -d" " -f1-3 /proc/loadavg) (at start $LOAD_AT_START); QUICK=${QUICK:-0}"
printf '%-10s %10s %10s %10s %8s %8s %8s %9s %9s %9s\n' rate_limit flood answered dropped kernel calls_ok failed rss0_MB rss1_MB growth_MB
for l in $LIMITS; do
	# shellcheck disable=SC2086
	printf '%-10s %10s %10s %10s %8s %8s %8s %9s %9s %9s\n' "$l" ${ROW[$l]:-NA NA NA NA NA NA NA NA NA}
done
echo "# answered: 401/407 the flooder received; dropped: by the per-source limit (service counter); kernel: the service socket's receive-buffer drops."
exit $status
