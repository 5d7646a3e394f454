//! The floor of a SIP load generator's CPU on this machine: the least any generator can spend to
//! place the calls `softphone load` and `sipp -sn uac` place, against the same target.
//!
//! Each call is INVITE → (1xx) → 200 → ACK → BYE → 200, as `sipp -sn uac -d 0` and
//! `softphone load --hold 0` make it. Nothing is parsed or kept beyond what the next message
//! needs: the INVITE is a prebuilt byte template with only the call's number spliced in (Call-ID,
//! From tag, branch; fixed width), a response is scanned line by line for its status, Call-ID,
//! CSeq method, To tag and Contact (the ACK's and BYE's Request-URI), and a call's state is one byte
//! in a table indexed by the number in its Call-ID. No retransmissions and no timers: on loopback
//! nothing is lost, and anything missing at the end is counted.
//!
//! ```text
//!   --tick-ms P > 0:  every P ms: sleep → recvmmsg what queued (no wait) → answer it and start the
//!                     calls due → one sendmmsg for all of it            (one wake-up per tick)
//!   --tick-ms 0:      recvmmsg waits for the first datagram or the next call's start, then the
//!                     same                                              (one wake-up per arrival)
//! ```
//!
//! The CPU time is the process's own (one thread): `/proc/self/schedstat` (run time, ns) and
//! `/proc/self/stat` (user and system time, clock ticks of 10 ms), from the first INVITE to the
//! end; context switches from `/proc/self/status`. `bench/load_cpu.sh` (`TOOLS=floor`) runs it
//! under `perf stat` beside `softphone load` and `sipp -sn uac`.
//!
//! Run with `cargo bench --bench load_floor -- --target 127.0.0.1:PORT` (`--help` lists the rest).
//! Bounded: the run ends when every call has ended or `calls / rate + 5` seconds after the start.

use bytes::Bytes;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use switchboard::transport::udp::BATCH;
use switchboard::transport::udp_sync::SyncUdp;
use switchboard::transport::Transmit;

const USAGE: &str = "usage: cargo bench --bench load_floor -- --target IP:PORT [--rate N] [--calls N] [--tick-ms P]

  --target   the echo user's service (`switchboard serve --data none`); calls go to sip:echo@IP:PORT
  --rate     calls started per second [default: 1000]
  --calls    calls placed [default: 10000]
  --tick-ms  wake every P ms and batch that tick's work; 0: wake on every arrival [default: 5]
  --keep     bytes of heap each call leaves behind, written once (what a stack's per-call state costs
             in page faults alone; `softphone load` keeps about 2,400) [default: 0]";

/// The call number's width in every spliced field.
const DIGITS: usize = 8;
/// The placeholder the templates carry where the call number goes.
const HOLE: &[u8; DIGITS] = b"########";

/// A call's state, one byte each.
const INVITING: u8 = 1;
const BYEING: u8 = 2;
const DONE: u8 = 3;
const FAILED: u8 = 4;

#[derive(Debug)]
struct Args {
    target: SocketAddr,
    rate: u64,
    calls: u64,
    tick_ms: u64,
    keep: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { target: SocketAddr::from(([127, 0, 0, 1], 5060)), rate: 1000, calls: 10_000, tick_ms: 5, keep: 0 };
    let mut target = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to every harness = false target.
        if flag == "--bench" {
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--target" => target = Some(value.parse::<SocketAddr>().map_err(|e| format!("--target {value}: {e}"))?),
            "--rate" => args.rate = number()?.max(1),
            "--calls" => args.calls = number()?.clamp(1, 99_999_999),
            "--tick-ms" => args.tick_ms = number()?,
            "--keep" => args.keep = usize::try_from(number()?.min(1 << 20)).unwrap_or(0),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    args.target = target.ok_or_else(|| format!("--target is required\n{USAGE}"))?;
    Ok(args)
}

/// A message template: bytes with [`HOLE`]s where the call number goes.
#[derive(Debug)]
struct Template {
    bytes: Vec<u8>,
    holes: Vec<usize>,
}

impl Template {
    fn new(text: String) -> Template {
        let bytes = text.into_bytes();
        let holes = bytes.windows(DIGITS).enumerate().filter(|(_, w)| *w == HOLE).map(|(i, _)| i).collect();
        Template { bytes, holes }
    }

    /// Appends the template to `out` with `n` in every hole.
    fn write(&self, n: u64, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.bytes);
        let mut digits = [b'0'; DIGITS];
        let mut v = n;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        for &h in &self.holes {
            if let Some(slot) = out.get_mut(at + h..at + h + DIGITS) {
                slot.copy_from_slice(&digits);
            }
        }
    }
}

/// The INVITE, and the ACK's and BYE's parts around the Request-URI and the To tag.
#[derive(Debug)]
struct Templates {
    invite: Template,
    /// After "ACK <uri>": the rest up to the To tag's value.
    ack_head: Template,
    ack_tail: Template,
    bye_head: Template,
    bye_tail: Template,
    /// The Call-ID's prefix, before the number.
    call_id_prefix: Vec<u8>,
}

impl Templates {
    fn new(local: SocketAddr, target: SocketAddr, run: u32) -> Templates {
        let sdp = format!(
            "v=0\r\no=floor 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            ip = local.ip()
        );
        let call_id_prefix = format!("floor{run}-");
        let invite = format!(
            "INVITE sip:echo@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKi########\r\nMax-Forwards: 70\r\n\
             From: <sip:floor@{local}>;tag=f########\r\nTo: <sip:echo@{target}>\r\nCall-ID: {call_id_prefix}########\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:floor@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let head = |letter: char| {
            format!(
                " SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{letter}########\r\nMax-Forwards: 70\r\n\
                 From: <sip:floor@{local}>;tag=f########\r\nTo: <sip:echo@{target}>;tag="
            )
        };
        let tail = |cseq: &str| format!("\r\nCall-ID: {call_id_prefix}########\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n");
        Templates {
            invite: Template::new(invite),
            ack_head: Template::new(head('a')),
            ack_tail: Template::new(tail("1 ACK")),
            bye_head: Template::new(head('b')),
            bye_tail: Template::new(tail("2 BYE")),
            call_id_prefix: call_id_prefix.into_bytes(),
        }
    }

    fn invite(&self, n: u64) -> Bytes {
        let mut out = Vec::with_capacity(self.invite.bytes.len());
        self.invite.write(n, &mut out);
        Bytes::from(out)
    }

    /// The ACK (`bye` false) or the BYE of call `n`, to `uri` with the peer's `tag`.
    fn in_dialog(&self, bye: bool, n: u64, uri: &[u8], tag: &[u8]) -> Bytes {
        let (method, head, tail) = if bye { ("BYE ", &self.bye_head, &self.bye_tail) } else { ("ACK ", &self.ack_head, &self.ack_tail) };
        let mut out = Vec::with_capacity(4 + uri.len() + head.bytes.len() + tag.len() + tail.bytes.len());
        out.extend_from_slice(method.as_bytes());
        out.extend_from_slice(uri);
        head.write(n, &mut out);
        out.extend_from_slice(tag);
        tail.write(n, &mut out);
        Bytes::from(out)
    }
}

/// What one response says, as far as the next message needs.
#[derive(Debug, Default)]
struct Seen<'a> {
    status: u16,
    call: Option<u64>,
    /// The CSeq's method is BYE (else INVITE or other).
    bye: bool,
    invite: bool,
    to_tag: &'a [u8],
    contact: &'a [u8],
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    v.get(start..end.max(start)).unwrap_or_default()
}

/// Scans a response's start line and headers (never its body). `None` for anything that is not a
/// response to one of this run's calls.
fn scan<'a>(datagram: &'a [u8], call_id_prefix: &[u8]) -> Option<Seen<'a>> {
    let status = datagram.strip_prefix(b"SIP/2.0 ")?.get(..3)?;
    let status = std::str::from_utf8(status).ok()?.parse::<u16>().ok()?;
    let mut seen = Seen { status, ..Seen::default() };
    let mut rest = datagram;
    // Skip the start line, then one header per line until the empty line.
    let mut first = true;
    while let Some(eol) = memchr::memmem::find(rest, b"\r\n") {
        let line = rest.get(..eol)?;
        rest = rest.get(eol + 2..)?;
        if first {
            first = false;
            continue;
        }
        if line.is_empty() {
            break;
        }
        let Some(colon) = memchr::memchr(b':', line) else { continue };
        let (name, value) = (trim(line.get(..colon)?), trim(line.get(colon + 1..)?));
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            let digits = value.strip_prefix(call_id_prefix)?;
            seen.call = std::str::from_utf8(digits).ok()?.parse().ok();
        } else if name.eq_ignore_ascii_case(b"cseq") {
            seen.bye = value.ends_with(b"BYE");
            seen.invite = value.ends_with(b"INVITE");
        } else if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            if let Some(at) = memchr::memmem::find(value, b";tag=") {
                let tag = value.get(at + 5..)?;
                seen.to_tag = tag.get(..memchr::memchr(b';', tag).unwrap_or(tag.len()))?;
            }
        } else if name.eq_ignore_ascii_case(b"contact") || name.eq_ignore_ascii_case(b"m") {
            seen.contact = match (memchr::memchr(b'<', value), memchr::memchr(b'>', value)) {
                (Some(open), Some(close)) if open < close => value.get(open + 1..close)?,
                _ => value.get(..memchr::memchr(b';', value).unwrap_or(value.len()))?,
            };
        }
    }
    Some(seen)
}

/// The process's CPU so far: run time (ns, schedstat), user and system ticks (stat), voluntary and
/// involuntary context switches (status).
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    run_ns: u64,
    user_ticks: u64,
    sys_ticks: u64,
    voluntary: u64,
    involuntary: u64,
}

fn cpu() -> Cpu {
    let mut c = Cpu::default();
    if let Ok(s) = std::fs::read_to_string("/proc/self/schedstat") {
        c.run_ns = s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
    }
    if let Ok(s) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command's closing parenthesis: state is field 3; utime 14, stime 15.
        if let Some(after) = s.rfind(')').and_then(|i| s.get(i + 1..)) {
            let f: Vec<&str> = after.split_whitespace().collect();
            c.user_ticks = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
            c.sys_ticks = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        for line in s.lines() {
            let value = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            if line.starts_with("voluntary_ctxt_switches") {
                c.voluntary = value(line);
            } else if line.starts_with("nonvoluntary_ctxt_switches") {
                c.involuntary = value(line);
            }
        }
    }
    c
}

/// Counts of one run.
#[derive(Debug, Default)]
struct Score {
    ok: u64,
    failed: u64,
    sent: u64,
    received: u64,
    ignored: u64,
    repeated_2xx: u64,
    send_errors: u64,
    wakeups: u64,
    recv_calls: u64,
    send_calls: u64,
    setup_us: Vec<u32>,
}

/// The generator's state: the templates, one byte per call, the INVITE times.
struct Run {
    t: Templates,
    target: SocketAddr,
    state: Vec<u8>,
    invited_at: Vec<Instant>,
    score: Score,
}

impl Run {
    /// Answers one datagram: pushes the ACK and BYE for an INVITE's 200, ends the call on the
    /// BYE's 200, fails it on a 3xx-6xx.
    fn handle(&mut self, datagram: &[u8], now: Instant, outbox: &mut Vec<Transmit>) {
        self.score.received += 1;
        let Some(seen) = scan(datagram, &self.t.call_id_prefix) else {
            self.score.ignored += 1;
            return;
        };
        let Some(n) = seen.call.filter(|&n| n < self.state.len() as u64) else {
            self.score.ignored += 1;
            return;
        };
        let i = n as usize;
        let Some(state) = self.state.get(i).copied() else { return };
        match (seen.status, seen.invite, seen.bye, state) {
            (100..=199, _, _, _) => {}
            (200..=299, true, _, INVITING) => {
                let uri = if seen.contact.is_empty() { format!("sip:echo@{}", self.target).into_bytes() } else { seen.contact.to_vec() };
                let dest = self.target;
                outbox.push(Transmit { dest, payload: self.t.in_dialog(false, n, &uri, seen.to_tag) });
                outbox.push(Transmit { dest, payload: self.t.in_dialog(true, n, &uri, seen.to_tag) });
                let setup = self.invited_at.get(i).map_or(Duration::ZERO, |&t| now.saturating_duration_since(t));
                self.score.setup_us.push(u32::try_from(setup.as_micros()).unwrap_or(u32::MAX));
                self.state[i] = BYEING;
            }
            (200..=299, true, _, _) => {
                // A repeated 200 (our ACK was late): ACK it again.
                let uri = if seen.contact.is_empty() { format!("sip:echo@{}", self.target).into_bytes() } else { seen.contact.to_vec() };
                outbox.push(Transmit { dest: self.target, payload: self.t.in_dialog(false, n, &uri, seen.to_tag) });
                self.score.repeated_2xx += 1;
            }
            (200..=299, _, true, BYEING) => {
                self.state[i] = DONE;
                self.score.ok += 1;
            }
            (300.., _, _, INVITING | BYEING) => {
                self.state[i] = FAILED;
                self.score.failed += 1;
            }
            _ => self.score.ignored += 1,
        }
    }

    fn send(&mut self, socket: &SyncUdp, outbox: &mut Vec<Transmit>) {
        if outbox.is_empty() {
            return;
        }
        self.score.sent += outbox.len() as u64;
        self.score.send_calls += outbox.len().div_ceil(BATCH) as u64;
        let mut errors = 0;
        socket.send_batch(outbox, |_, _| errors += 1);
        self.score.send_errors += errors;
        outbox.clear();
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted.get(i).copied().unwrap_or(0)) / 1000.0
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut socket = match SyncUdp::bind(SocketAddr::from(([127, 0, 0, 1], 0))) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bind: {e}");
            return ExitCode::from(1);
        }
    };
    let calls = args.calls;
    let mut run = Run {
        t: Templates::new(socket.local_addr(), args.target, std::process::id()),
        target: args.target,
        state: vec![0; calls as usize],
        invited_at: Vec::with_capacity(calls as usize),
        score: Score { setup_us: Vec::with_capacity(calls as usize), ..Score::default() },
    };
    let mut inbox: Vec<(Bytes, SocketAddr)> = Vec::with_capacity(BATCH);
    let mut outbox: Vec<Transmit> = Vec::with_capacity(4 * BATCH);
    let interval_ns = 1_000_000_000 / args.rate;
    let tick = Duration::from_millis(args.tick_ms);
    let before = cpu();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(calls / args.rate + 5);
    let mut started = 0u64;
    let mut ticks = 0u32;
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(if args.keep > 0 { calls as usize } else { 0 });
    loop {
        let now = Instant::now();
        let next_call = start + Duration::from_nanos(started * interval_ns);
        if args.tick_ms == 0 {
            let wait = if started < calls { next_call.saturating_duration_since(now) } else { Duration::from_millis(20) };
            run.score.recv_calls += 1;
            if let Err(e) = socket.recv_batch(&mut inbox, wait) {
                eprintln!("recv: {e}");
            }
        } else {
            ticks += 1;
            let at = start + tick * ticks;
            std::thread::sleep(at.saturating_duration_since(now));
            loop {
                run.score.recv_calls += 1;
                match socket.recv_ready(&mut inbox) {
                    Ok(n) if n == BATCH => {}
                    Ok(_) => break,
                    Err(e) => {
                        eprintln!("recv: {e}");
                        break;
                    }
                }
            }
        }
        run.score.wakeups += 1;
        let now = Instant::now();
        for (bytes, _) in inbox.drain(..) {
            run.handle(&bytes, now, &mut outbox);
        }
        let elapsed = u64::try_from(now.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        let due = (elapsed / interval_ns + 1).min(calls);
        while started < due {
            outbox.push(Transmit { dest: args.target, payload: run.t.invite(started) });
            run.state[started as usize] = INVITING;
            run.invited_at.push(now);
            if args.keep > 0 {
                kept.push(vec![1; args.keep]);
            }
            started += 1;
        }
        run.send(&socket, &mut outbox);
        if run.score.ok + run.score.failed == calls || now >= deadline {
            break;
        }
    }
    let wall = start.elapsed();
    let after = cpu();
    let s = &mut run.score;
    s.setup_us.sort_unstable();
    let n = calls as f64;
    let run_s = (after.run_ns - before.run_ns) as f64 / 1e9;
    // Clock ticks are 1/100 s on Linux (USER_HZ).
    let (user_s, sys_s) = ((after.user_ticks - before.user_ticks) as f64 / 100.0, (after.sys_ticks - before.sys_ticks) as f64 / 100.0);
    let datagrams = (s.sent + s.received) as f64;
    println!(
        "floor tick_ms {} ok {} failed {} missing {} CPU-s/10k {:.3} user/10k {:.2} sys/10k {:.2} wakeups/call {:.2} \
         recvmmsg/call {:.2} sendmmsg/call {:.2} vol_cs/call {:.2} invol_cs/call {:.2} datagrams/call {:.2} (sent {:.2}) \
         cpu_us/datagram {:.2} setup_ms p50 {:.2} p99 {:.2} repeated_2xx {} ignored {} send_errors {} wall_s {:.2}",
        args.tick_ms,
        s.ok,
        s.failed,
        calls - s.ok - s.failed,
        run_s / n * 10_000.0,
        user_s / n * 10_000.0,
        sys_s / n * 10_000.0,
        s.wakeups as f64 / n,
        s.recv_calls as f64 / n,
        s.send_calls as f64 / n,
        (after.voluntary - before.voluntary) as f64 / n,
        (after.involuntary - before.involuntary) as f64 / n,
        datagrams / n,
        s.sent as f64 / n,
        run_s * 1e6 / datagrams.max(1.0),
        percentile(&s.setup_us, 0.5),
        percentile(&s.setup_us, 0.99),
        s.repeated_2xx,
        s.ignored,
        s.send_errors,
        wall.as_secs_f64(),
    );
    let complete = s.ok == calls;
    // Like `softphone load`: the tables are left to the process's exit.
    std::mem::forget((run, kept));
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
