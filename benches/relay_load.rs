//! RTP relay load tool: sets up N relayed calls on a running relay, sends RTP both ways through
//! each at a fixed packet rate per stream, and reports what came out the other side, how late, and
//! what it cost the relay's process in CPU.
//!
//! ```text
//!   this process: one media socket S ──RTP──▶ relay port A (caller leg) ══▶ relay port B ──RTP──▶ S
//!                                    ──RTP──▶ relay port B (callee leg) ══▶ relay port A ──RTP──▶ S
//! ```
//!
//! Every SDP this tool sends names S, so both phones of every call are S: each relay latches (or
//! was told) S as both legs' address, and everything it forwards comes back to S, where one thread
//! reads it. Sender and receiver share one clock (`Instant`), so a packet's latency is its one-way
//! time send → relay → receive on loopback. Each packet is 172 bytes: a 12-byte RTP header (PCMU,
//! one SSRC and sequence per stream) and 160 bytes of payload that start with the stream number, a
//! running packet number and the send time in nanoseconds.
//!
//! Backends (how the relay ports are obtained):
//! - `switchboard`: SIP to `switchboard serve --no-auth` (see [`sip`]);
//! - `rtpengine`: rtpengine's NG control protocol (see [`ng`]);
//! - `loopback`: no relay; S sends to itself. The latency of this path is the floor that the
//!   tool and the kernel add, to subtract from a relay's figure.
//!
//! Run with `cargo bench --bench relay_load -- ARGS` (`--help` lists them); `bench/relay.sh` starts
//! the relays and runs this at several loads. Every loop is bounded: setup by per-call timeouts,
//! traffic by `--warmup` + `--duration`, the final drain by 0.3 s.

#[path = "relay_load/ng.rs"]
mod ng;
#[path = "relay_load/sip.rs"]
mod sip;
#[path = "relay_load/traffic.rs"]
mod traffic;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: cargo bench --bench relay_load -- --backend switchboard|rtpengine|loopback [--server IP:PORT]
       [--calls N] [--pps N] [--duration SECS] [--warmup SECS] [--pid PID] [--label TEXT]

  --backend   switchboard: SIP to a `switchboard serve --no-auth --data none --rtp-timeout 0` at --server;
              rtpengine: NG protocol (offer/answer/delete) to rtpengine's --listen-ng at --server;
              loopback: no relay, the tool's socket sends to itself (the latency floor)
  --server    the relay's SIP or NG address (not for loopback)
  --calls     relayed calls, two RTP streams each [default: 50]
  --pps       packets per second per stream [default: 50]
  --duration  seconds measured [default: 10]
  --warmup    seconds of traffic before measuring (latching, caches) [default: 1]
  --pid       the relay's process: its CPU time (its threads' run time from schedstat, else utime+stime)
              over the measured seconds is reported
  --label     a name for the RESULT line [default: the backend]";

/// Which relay, and how to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Switchboard,
    Rtpengine,
    Loopback,
}

/// The command line.
#[derive(Debug, Clone)]
struct Args {
    backend: Backend,
    server: Option<SocketAddr>,
    calls: usize,
    pps: u32,
    duration: Duration,
    warmup: Duration,
    pid: Option<u32>,
    label: String,
}

/// Where one call's two streams go: the caller's RTP to `caller_to` (the relay's caller-leg port),
/// the callee's RTP to `callee_to` (the callee-leg port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallPorts {
    pub(crate) caller_to: SocketAddr,
    pub(crate) callee_to: SocketAddr,
}

fn secs(v: &str) -> Result<Duration, String> {
    let s: f64 = v.parse().map_err(|_| format!("not a number of seconds: {v}"))?;
    if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
        return Err(format!("seconds out of range (0, 3600]: {v}"));
    }
    Ok(Duration::from_secs_f64(s))
}

fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    let mut backend = None;
    let mut a = Args {
        backend: Backend::Loopback,
        server: None,
        calls: 50,
        pps: 50,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        pid: None,
        label: String::new(),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        // `cargo bench` adds `--bench` to every bench binary's arguments.
        if flag == "--bench" {
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let int = |what: &str| value.parse::<u64>().map_err(|_| format!("{what}: not a whole number: {value}"));
        match flag.as_str() {
            "--backend" => {
                backend = Some(match value.as_str() {
                    "switchboard" => Backend::Switchboard,
                    "rtpengine" => Backend::Rtpengine,
                    "loopback" => Backend::Loopback,
                    _ => return Err(format!("unknown backend {value}")),
                })
            }
            "--server" => a.server = Some(value.parse().map_err(|_| format!("--server: not IP:PORT: {value}"))?),
            "--calls" => a.calls = usize::try_from(int("--calls")?).unwrap_or(usize::MAX),
            "--pps" => a.pps = u32::try_from(int("--pps")?).unwrap_or(u32::MAX),
            "--duration" => a.duration = secs(value)?,
            "--warmup" => a.warmup = secs(value)?,
            "--pid" => a.pid = Some(u32::try_from(int("--pid")?).map_err(|_| "--pid out of range".to_string())?),
            "--label" => a.label = value.clone(),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    let Some(backend) = backend else {
        // `cargo bench` with no filter runs every bench: without a relay there is nothing to do.
        return Ok(None);
    };
    a.backend = backend;
    if !(1..=20_000).contains(&a.calls) {
        return Err("--calls must be 1..=20000".into());
    }
    if !(1..=1000).contains(&a.pps) {
        return Err("--pps must be 1..=1000".into());
    }
    if backend != Backend::Loopback && a.server.is_none() {
        return Err("--server is needed for this backend".into());
    }
    if a.label.is_empty() {
        a.label = format!("{backend:?}").to_lowercase();
    }
    Ok(Some(a))
}

/// The calls' relay ports, and the backend that set them up (to tear them down), if any.
type Calls = (Vec<CallPorts>, Option<Box<dyn Teardown>>);

/// Sets up the calls with the backend, returning the ports and the backend (to tear down).
fn setup(args: &Args, media: SocketAddr) -> Result<Calls, String> {
    match (args.backend, args.server) {
        (Backend::Switchboard, Some(server)) => {
            let mut s = sip::SipDriver::new(server, media.ip())?;
            let ports = s.setup(media, args.calls)?;
            Ok((ports, Some(Box::new(s))))
        }
        (Backend::Rtpengine, Some(server)) => {
            let mut n = ng::NgDriver::new(server, media.ip())?;
            let ports = n.setup(media, args.calls)?;
            Ok((ports, Some(Box::new(n))))
        }
        _ => Ok((vec![CallPorts { caller_to: media, callee_to: media }; args.calls], None)),
    }
}

/// Ends the calls a backend set up.
pub(crate) trait Teardown {
    /// Ends every call; returns how many ended cleanly.
    fn teardown(&mut self) -> Result<usize, String>;
}

/// Sets up the calls, then hands over to [`traffic`]; `Err` is a one-line reason.
fn run(args: &Args) -> Result<(), String> {
    let ip: IpAddr = args.server.map_or(IpAddr::from([127, 0, 0, 1]), |s| s.ip());
    let media = traffic::media_socket(ip)?;
    let media_addr = media.local_addr().map_err(|e| format!("media socket: {e}"))?;
    let t = std::time::Instant::now();
    let (ports, mut backend) = setup(args, media_addr)?;
    eprintln!("# {} calls set up in {:.2} s via {:?}; media socket {media_addr}", ports.len(), t.elapsed().as_secs_f64(), args.backend);
    let report = traffic::run(&media, &ports, args.pps, args.warmup, args.duration, args.pid);
    drop::<UdpSocket>(media);
    let ended = match backend.as_mut() {
        Some(b) => Some(b.teardown()?),
        None => None,
    };
    report.print(&args.label, args.calls, args.pps);
    if let Some(n) = ended {
        eprintln!("# {n} of {} calls ended cleanly", args.calls);
    }
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&argv) {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(args)) => match run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("relay_load: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("relay_load: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
