//! The RTP traffic: a paced sender, a receiver on the same socket, a latency histogram, and the
//! relay's CPU time over the measured window.

use crate::CallPorts;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// RTP header (12) + PCMU payload of 20 ms at 8 kHz (160).
const PACKET: usize = 172;
/// Latency histogram resolution and range: 100 ns buckets up to 100 ms (later ones go in the last).
const BUCKET_NS: u64 = 100;
const BUCKETS: usize = 1_000_000;
/// Socket buffers: ~4 MB holds tens of milliseconds of traffic at the highest rates we offer, so
/// a scheduling hiccup of this tool is not counted as the relay's loss.
const SOCKET_BUFFER: usize = 4 << 20;
/// How long the receiver goes on after the sender stops.
const DRAIN: Duration = Duration::from_millis(300);

/// The media socket S (both phones of every call), on `ip`, with large buffers.
pub(crate) fn media_socket(ip: IpAddr) -> Result<UdpSocket, String> {
    let domain = if ip.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None).map_err(|e| format!("media socket: {e}"))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.bind(&SocketAddr::new(ip, 0).into()).map_err(|e| format!("media socket bind: {e}"))?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| format!("media socket: {e}"))?;
    Ok(s)
}

/// Latencies in [`BUCKET_NS`] buckets, plus the exact maximum.
struct Histogram {
    buckets: Vec<u32>,
    count: u64,
    max_ns: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram { buckets: vec![0; BUCKETS], count: 0, max_ns: 0 }
    }

    fn add(&mut self, ns: u64) {
        let i = usize::try_from(ns / BUCKET_NS).unwrap_or(usize::MAX).min(BUCKETS - 1);
        self.buckets[i] = self.buckets[i].saturating_add(1);
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// The `q` quantile in microseconds (upper edge of its bucket); `None` when empty.
    fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(((i as u64 + 1) * BUCKET_NS).min(self.max_ns.max(BUCKET_NS)) as f64 / 1000.0);
            }
        }
        Some(self.max_ns as f64 / 1000.0)
    }
}

/// CPU time of a process (all its threads) in nanoseconds: the sum of its threads' time on a CPU
/// (`/proc/PID/task/TID/schedstat`, first field), else utime + stime (`/proc/PID/stat`, in clock
/// ticks of 10 ms). The kernel scales utime + stime to that same run time, but reports it in
/// ticks: over a 2 s window in which a relay uses 0.05-0.4 s, a tick is 2.5-20% of the figure.
/// Threads that exit during the window drop out of the sum; a relay's threads live throughout.
fn cpu_ns(pid: &str) -> Option<u64> {
    sched_ns(pid).or_else(|| Some(cpu_ticks(pid)? * (1_000_000_000 / USER_HZ)))
}

/// Sum of the run times of a process's threads (`schedstat`, nanoseconds).
fn sched_ns(pid: &str) -> Option<u64> {
    let mut sum = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        // A thread that exits between the listing and the read is skipped.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        sum += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(sum)
}

/// utime + stime of a process (all its threads), in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

const USER_HZ: u64 = 100;

/// The machine-wide UDP receive-buffer drops (`RcvbufErrors` in /proc/net/snmp).
fn rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    values.get(names.iter().position(|n| *n == "RcvbufErrors")?)?.parse().ok()
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct Report {
    /// Packets sent with a send time in the measured window.
    sent: u64,
    /// Of those, packets that came back.
    received: u64,
    /// Length of the measured window.
    window: Duration,
    latency: HistogramSummary,
    /// Relay CPU seconds over the window, if `--pid` was given and readable.
    relay_cpu: Option<f64>,
    /// This tool's CPU seconds over the window.
    tool_cpu: Option<f64>,
    /// Machine-wide UDP receive-buffer drops over the whole run.
    rcvbuf_errors: Option<u64>,
    /// Datagrams on S that were not ours or arrived for a packet sent outside the window.
    other: u64,
}

#[derive(Debug, Default)]
struct HistogramSummary {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite()).map_or_else(|| "NA".to_string(), |v| format!("{v:.digits$}"))
}

impl Report {
    /// Prints the human summary on stderr and one `RESULT key=value ...` line on stdout.
    pub(crate) fn print(&self, label: &str, calls: usize, pps: u32) {
        let w = self.window.as_secs_f64();
        let offered = self.sent as f64 / w;
        let delivered = self.received as f64 / w;
        let loss = if self.sent == 0 { 0.0 } else { 100.0 * (self.sent.saturating_sub(self.received)) as f64 / self.sent as f64 };
        let cores = self.relay_cpu.map(|c| c / w);
        let per_m = self.relay_cpu.filter(|_| self.received > 0).map(|c| c / (self.received as f64 / 1e6));
        let per_core = cores.filter(|c| *c > 0.0).map(|c| delivered / c);
        let l = &self.latency;
        eprintln!(
            "# {label}: {calls} calls x 2 streams x {pps} pps over {w:.2} s: offered {offered:.0} pps, delivered {delivered:.0} pps, \
             loss {loss:.3}%, latency p50 {} / p99 {} / max {} us; relay CPU {} s ({} cores), {} s per 1M packets, {} pps per core",
            opt(l.p50, 1),
            opt(l.p99, 1),
            opt(l.max, 1),
            opt(self.relay_cpu, 2),
            opt(cores, 3),
            opt(per_m, 2),
            opt(per_core, 0),
        );
        println!(
            "RESULT label={label} calls={calls} pps_per_stream={pps} window_s={w:.3} sent={} received={} offered_pps={offered:.0} \
             delivered_pps={delivered:.0} loss_pct={loss:.3} p50_us={} p99_us={} max_us={} relay_cpu_s={} relay_cores={} \
             cpu_s_per_mpkt={} pps_per_core={} tool_cpu_s={} rcvbuf_errors={} other={}",
            self.sent,
            self.received,
            opt(l.p50, 1),
            opt(l.p99, 1),
            opt(l.max, 1),
            opt(self.relay_cpu, 4),
            opt(cores, 3),
            opt(per_m, 3),
            opt(per_core, 0),
            opt(self.tool_cpu, 3),
            self.rcvbuf_errors.map_or_else(|| "NA".into(), |v| v.to_string()),
            self.other,
        );
    }
}

/// One stream's packet `seq` (its `seq`-th), stamped with `sent_ns`.
fn stamp(pkt: &mut [u8; PACKET], stream: u32, seq: u64, sent_ns: u64) {
    // RTP: V=2, no padding/extension/CSRC, PT 0 (PCMU); sequence, timestamp (160 per 20 ms), SSRC.
    pkt[0] = 0x80;
    pkt[1] = 0;
    pkt[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
    pkt[4..8].copy_from_slice(&((seq as u32).wrapping_mul(160)).to_be_bytes());
    pkt[8..12].copy_from_slice(&(0x5b00_0000u32 ^ stream).to_be_bytes());
    pkt[12..16].copy_from_slice(&stream.to_be_bytes());
    pkt[16..24].copy_from_slice(&seq.to_be_bytes());
    pkt[24..32].copy_from_slice(&sent_ns.to_be_bytes());
}

/// Stream number and send time of a datagram of ours; `None` for anything else.
fn unstamp(d: &[u8], streams: u32) -> Option<(u32, u64)> {
    if d.len() != PACKET || d[0] != 0x80 {
        return None;
    }
    let stream = u32::from_be_bytes(d[12..16].try_into().ok()?);
    let sent = u64::from_be_bytes(d[24..32].try_into().ok()?);
    (stream < streams).then_some((stream, sent))
}

/// Counts and latencies of what came back.
struct Received {
    hist: Histogram,
    other: u64,
}

/// Reads S until `stop`, counting packets sent inside `[from_ns, to_ns)`.
fn receive(sock: &UdpSocket, t0: Instant, streams: u32, from_ns: u64, to_ns: u64, stop: &AtomicBool) -> Received {
    let mut r = Received { hist: Histogram::new(), other: 0 };
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else { continue };
        let now = t0.elapsed().as_nanos() as u64;
        match unstamp(&buf[..n], streams) {
            Some((_, sent)) if (from_ns..to_ns).contains(&sent) => r.hist.add(now.saturating_sub(sent)),
            _ => r.other += 1,
        }
    }
    r
}

/// What the sender did: packets in the window, and the window's length and CPU figures.
struct Sent {
    in_window: u64,
    window: Duration,
    relay_ns: Option<u64>,
    tool_ns: Option<u64>,
}

/// Sends packet after packet, round-robin over the streams at `rate` packets/s in total, until
/// `to`; streams `2i` (caller of call i, to its A port) and `2i + 1` (callee, to its B port). A
/// sender that falls behind sends what is due back to back, and stops at `to` all the same: the
/// offered rate it reached is then below the target, which the report shows.
fn send(sock: &UdpSocket, t0: Instant, dests: &[SocketAddr], rate: f64, from: Duration, to: Duration, pid: Option<&str>) -> Sent {
    let n = dests.len() as u64;
    let mut pkt = [0xffu8; PACKET];
    let mut k: u64 = 0;
    let mut start: Option<(Instant, Option<u64>, Option<u64>)> = None;
    let (from_ns, to_ns) = (from.as_nanos() as u64, to.as_nanos() as u64);
    let mut in_window = 0u64;
    'run: loop {
        let due = (t0.elapsed().as_secs_f64() * rate) as u64 + 1;
        while k < due {
            let sent_ns = t0.elapsed().as_nanos() as u64;
            if sent_ns >= to_ns {
                break 'run;
            }
            if sent_ns >= from_ns {
                if start.is_none() {
                    start = Some((Instant::now(), pid.and_then(cpu_ns), cpu_ns("self")));
                }
                in_window += 1;
            }
            let stream = k % n;
            stamp(&mut pkt, stream as u32, k / n, sent_ns);
            // A failed send is loss like any other (the datagram never reaches the relay).
            let _ = sock.send_to(&pkt, dests[stream as usize]);
            k += 1;
        }
        let next = Duration::from_secs_f64(k as f64 / rate);
        let now = t0.elapsed();
        if now >= to {
            break;
        }
        if next > now {
            std::thread::sleep((next - now).min(to - now));
        }
    }
    let (relay1, tool1) = (pid.and_then(cpu_ns), cpu_ns("self"));
    let Some((s, relay0, tool0)) = start else {
        return Sent { in_window, window: Duration::ZERO, relay_ns: None, tool_ns: None };
    };
    let diff = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    Sent { in_window, window: s.elapsed(), relay_ns: diff(relay0, relay1), tool_ns: diff(tool0, tool1) }
}

/// Runs the traffic over `calls` for `warmup` + `duration` and measures the last `duration`.
pub(crate) fn run(sock: &UdpSocket, calls: &[CallPorts], pps: u32, warmup: Duration, duration: Duration, pid: Option<u32>) -> Report {
    let dests: Vec<SocketAddr> = calls.iter().flat_map(|c| [c.caller_to, c.callee_to]).collect();
    let streams = dests.len() as u32;
    let rate = f64::from(pps) * dests.len() as f64;
    let pid = pid.map(|p| p.to_string());
    let stop = AtomicBool::new(false);
    let errors0 = rcvbuf_errors();
    let t0 = Instant::now();
    let to = warmup + duration;
    let (sent, got) = std::thread::scope(|scope| {
        let rx = scope.spawn(|| receive(sock, t0, streams, warmup.as_nanos() as u64, to.as_nanos() as u64, &stop));
        let sent = send(sock, t0, &dests, rate, warmup, to, pid.as_deref());
        // Stragglers: on loopback a forwarded packet is back within milliseconds unless lost.
        std::thread::sleep(DRAIN);
        stop.store(true, Ordering::Relaxed);
        let got = rx.join().unwrap_or_else(|_| Received { hist: Histogram::new(), other: 0 });
        (sent, got)
    });
    let errors1 = rcvbuf_errors();
    let h = &got.hist;
    Report {
        sent: sent.in_window,
        received: h.count,
        window: sent.window.max(Duration::from_millis(1)),
        latency: HistogramSummary {
            p50: h.quantile_us(0.50),
            p99: h.quantile_us(0.99),
            max: (h.count > 0).then(|| h.max_ns as f64 / 1000.0),
        },
        relay_cpu: sent.relay_ns.map(|t| t as f64 / 1e9),
        tool_cpu: sent.tool_ns.map(|t| t as f64 / 1e9),
        rcvbuf_errors: errors0.zip(errors1).map(|(a, b)| b.saturating_sub(a)),
        other: got.other,
    }
}
