//! `switchboard dispatch`: the Call-ID-sticky SIP load balancer in front of several instances
//! (issue 17 point 3), a thin synchronous driver around [`switchboard::dispatch::Dispatcher`],
//! with the membership publisher (point 2) on its own thread.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard::cluster::{membership, Membership};
use switchboard::dialog::IdGen;
use switchboard::dispatch::probe::ProbeConfig;
use switchboard::dispatch::{Backend, DispatchConfig, Dispatcher, Output, DEFAULT_CALL_TTL, DEFAULT_EPSILON};
use switchboard::proxy::token::RouteKey;
use switchboard::transport::rate_limit::{RateLimit, DEFAULT_RATE};

/// Options of `switchboard dispatch`. Each overrides the same key of `--config`.
#[derive(Debug, clap::Args)]
pub(crate) struct DispatchArgs {
    /// TOML configuration file (keys: listen, store, secret_file, probe_interval_ms,
    /// probe_failures, probe_recoveries, balance_epsilon, rate_limit; [[backend]] tables with uri).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP address the phones send to, IPv4 or [IPv6]:port; port 0 picks a free one
    /// [default: 127.0.0.1:5060].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A backend instance, `sip:IP:PORT` (the address its `serve --listen` has), comma-separated or
    /// repeated; at least one, here or as [[backend]] in the config. Calls are spread over the live
    /// ones by rendezvous hashing of the Call-ID.
    #[arg(long, value_name = "URI", value_delimiter = ',')]
    backend: Vec<String>,
    /// Publish the live set in this Redis (`redis://HOST:PORT/DB`, the instances' `--store`): key
    /// and channel `sb:members`, with an epoch that only rises; the Record-Route token key comes from
    /// the deployment secret kept there. Without it the membership stays local.
    #[arg(long, value_name = "URL", env = "SWITCHBOARD_STORE")]
    store: Option<String>,
    /// Without --store: a file of 32 bytes holding the deployment secret (an instance's
    /// `nonce-secret` in its data directory), so the instance accepts our tokens and we its;
    /// without either, a random secret for this run.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Milliseconds between two OPTIONS probes of each backend, also the wait for a reply
    /// (Kamailio's ds_ping_interval) [default: 1000].
    #[arg(long, value_name = "MS")]
    probe_interval_ms: Option<u64>,
    /// Failed probes in a row (no reply, or 5xx/6xx) that take a backend out (Kamailio's
    /// ds_probing_threshold) [default: 2].
    #[arg(long, value_name = "N")]
    probe_failures: Option<u32>,
    /// Answered probes in a row that bring a dead backend back (Kamailio's ds_inactive_threshold)
    /// [default: 2].
    #[arg(long, value_name = "N")]
    probe_recoveries: Option<u32>,
    /// Bounded-load slack ε: a new call skips a backend holding more than (1 + ε) × the mean of
    /// the live calls (counted from the INVITEs and BYEs forwarded) [default: 0.25].
    #[arg(long, value_name = "EPSILON")]
    balance_epsilon: Option<f64>,
    /// Requests per second accepted from one source IP outside the cluster, bursts of twice that;
    /// the excess is dropped. 0 turns the limit off [default: 200].
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
}

/// The `dispatch` keys of a config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchFile {
    listen: Option<SocketAddr>,
    store: Option<String>,
    secret_file: Option<PathBuf>,
    probe_interval_ms: Option<u64>,
    probe_failures: Option<u32>,
    probe_recoveries: Option<u32>,
    balance_epsilon: Option<f64>,
    rate_limit: Option<u32>,
    #[serde(default)]
    backend: Vec<BackendEntry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendEntry {
    uri: String,
}

struct Resolved {
    listen: SocketAddr,
    backends: Vec<Backend>,
    store: Option<String>,
    secret_file: Option<PathBuf>,
    probe: ProbeConfig,
    epsilon: f64,
    rate_limit: Option<RateLimit>,
}

fn resolve(a: &DispatchArgs) -> Result<Resolved, String> {
    let file: DispatchFile = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read config {}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {}", p.display(), e.message()))?
        }
        None => DispatchFile::default(),
    };
    let uris: Vec<String> = if a.backend.is_empty() { file.backend.into_iter().map(|b| b.uri).collect() } else { a.backend.clone() };
    if uris.is_empty() {
        return Err("at least one --backend sip:IP:PORT is needed".into());
    }
    let backends = uris.iter().map(|u| Backend::parse(u.trim())).collect::<Result<Vec<_>, _>>()?;
    let interval = a.probe_interval_ms.or(file.probe_interval_ms).unwrap_or(1000);
    if !(10..=600_000).contains(&interval) {
        return Err(format!("probe_interval_ms must be between 10 and 600000, got {interval}"));
    }
    let count =
        |name: &str, v: u32| if (1..=1000).contains(&v) { Ok(v) } else { Err(format!("{name} must be between 1 and 1000, got {v}")) };
    let epsilon = a.balance_epsilon.or(file.balance_epsilon).unwrap_or(DEFAULT_EPSILON);
    if !(epsilon.is_finite() && (0.0..=100.0).contains(&epsilon)) {
        return Err(format!("balance_epsilon must be between 0 and 100, got {epsilon}"));
    }
    Ok(Resolved {
        listen: a.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060))),
        backends,
        store: a.store.clone().or(file.store),
        secret_file: a.secret_file.clone().or(file.secret_file),
        probe: ProbeConfig {
            interval: Duration::from_millis(interval),
            failures: count("probe_failures", a.probe_failures.or(file.probe_failures).unwrap_or(2))?,
            recoveries: count("probe_recoveries", a.probe_recoveries.or(file.probe_recoveries).unwrap_or(2))?,
        },
        epsilon,
        rate_limit: RateLimit::per_second(a.rate_limit.or(file.rate_limit).unwrap_or(DEFAULT_RATE)),
    })
}

/// The deployment secret: Redis's `sb:secret`, else the file, else random.
fn secret(r: &Resolved) -> Result<[u8; 32], String> {
    let mut fresh = [0u8; 32];
    IdGen::os_fill(&mut fresh).map_err(|e| format!("cannot read the OS random number generator: {e}"))?;
    if let Some(url) = &r.store {
        let redis = switchboard::store::RedisStore::open(url).map_err(|e| e.to_string())?;
        return redis.shared_secret(fresh).map_err(|e| e.to_string());
    }
    if let Some(p) = &r.secret_file {
        let bytes = std::fs::read(p).map_err(|e| format!("cannot read secret file {}: {e}", p.display()))?;
        return bytes.try_into().map_err(|b: Vec<u8>| format!("secret file {} must hold 32 bytes, has {}", p.display(), b.len()));
    }
    tracing::warn!("no --store or --secret-file: a random route-token secret for this run (instances will not accept our tokens)");
    Ok(fresh)
}

pub(crate) fn run(args: DispatchArgs) -> ExitCode {
    match resolve(&args).and_then(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(r: Resolved) -> Result<(), String> {
    let secret = secret(&r)?;
    let socket = UdpSocket::bind(r.listen).map_err(|e| format!("cannot listen on {}: {e}", r.listen))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let publisher = r.store.as_ref().map(|url| Publisher::spawn(url.clone()));
    let now = Instant::now();
    let mut d = Dispatcher::new(
        DispatchConfig {
            local,
            backends: r.backends.clone(),
            probe: r.probe,
            epsilon: r.epsilon,
            rate_limit: r.rate_limit,
            route_key: RouteKey::derive(&secret),
            seed: IdGen::os_seed(),
            call_ttl: DEFAULT_CALL_TTL,
        },
        now,
    );
    let names: Vec<&str> = r.backends.iter().map(|b| b.uri.as_str()).collect();
    println!("switchboard dispatch listening on udp {local}; backends {}", names.join(" "));
    if let Some(p) = &publisher {
        p.publish(d.membership());
    }
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::new();
    let (mut reported, mut report_at) = (0u64, now + REPORT_EVERY);
    loop {
        if Instant::now() >= d.next_timer() {
            // Probe replies queued behind calls' datagrams are read before the round judges
            // their probes unanswered: a busy dispatcher must not take live backends out.
            drain_queued(&socket, &mut buf, &mut d, &mut out)?;
        }
        d.on_timer(Instant::now(), &mut out);
        if Instant::now() >= report_at {
            report_at = Instant::now() + REPORT_EVERY;
            report_loads(&d, &mut reported);
        }
        // Sent before blocking in the receive: a probe waits for nothing.
        flush(&socket, &mut out, publisher.as_ref());
        let wait = d.next_timer().saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).map_err(|e| e.to_string())?;
        match socket.recv_from(&mut buf) {
            Ok((n, source)) => d.on_datagram(bytes::Bytes::copy_from_slice(&buf[..n]), source, Instant::now(), &mut out),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => tracing::warn!(error = %e, "receive failed"),
        }
        if let Some(p) = &publisher {
            while let Ok(higher) = p.higher.try_recv() {
                // Another publisher (an earlier run) is ahead: go above it and publish again.
                p.publish(d.raise_epoch(higher + 1));
            }
        }
        flush(&socket, &mut out, publisher.as_ref());
    }
}

/// Most datagrams read in one drain before a probe round (a bound, so a flood cannot hold the
/// round off; the socket's receive buffer holds fewer than this at our datagram sizes).
const DRAIN_MAX: usize = 4096;

/// Reads and handles every datagram already queued on `socket`, without waiting.
fn drain_queued(socket: &UdpSocket, buf: &mut [u8], d: &mut Dispatcher, out: &mut Vec<Output>) -> Result<(), String> {
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    for _ in 0..DRAIN_MAX {
        match socket.recv_from(buf) {
            Ok((n, source)) => d.on_datagram(bytes::Bytes::copy_from_slice(&buf[..n]), source, Instant::now(), out),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(_) => break,
        }
    }
    socket.set_nonblocking(false).map_err(|e| e.to_string())
}

/// How often the live calls per backend are logged (when new calls came meanwhile).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// One line with the calls placed, live now and at their peak per backend (in the backends'
/// order), when calls were placed since the last one.
fn report_loads(d: &Dispatcher, reported: &mut u64) {
    let placed: u64 = d.placed().iter().sum();
    if placed == *reported {
        return;
    }
    *reported = placed;
    let (peaks, peak_total) = d.peaks();
    eprintln!(
        "switchboard dispatch: calls placed {:?} live {:?} peak {:?} peak_total {peak_total} rebalanced {}",
        d.placed(),
        d.loads(),
        peaks,
        d.stats().rebalanced
    );
}

/// Sends the datagrams and publishes the memberships in `out`.
fn flush(socket: &UdpSocket, out: &mut Vec<Output>, publisher: Option<&Publisher>) {
    for o in out.drain(..) {
        match o {
            Output::Send(t) => {
                if let Err(e) = socket.send_to(&t.payload, t.dest) {
                    tracing::debug!(dest = %t.dest, error = %e, "send failed");
                }
            }
            Output::Publish(m) => {
                eprintln!("switchboard dispatch: membership epoch {}: {}", m.epoch, m.live.join(" "));
                if let Some(p) = publisher {
                    p.publish(m);
                }
            }
        }
    }
}

/// Compare-and-set of the membership: written (and published) only when its epoch is above the
/// stored one; otherwise returns the stored epoch. One round trip, atomic in Redis.
const CAS: &str = r"
local cur = redis.call('GET', KEYS[1])
local e = -1
if cur then e = tonumber(string.match(cur, '^%d+')) or -1 end
if tonumber(ARGV[1]) > e then
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('PUBLISH', KEYS[2], ARGV[2])
  return -1
end
return e
";

/// The membership publisher: a thread with its own Redis connection, so a slow or absent Redis
/// never holds up forwarding. It keeps the latest set and retries it until Redis takes it.
struct Publisher {
    tx: mpsc::Sender<Membership>,
    higher: mpsc::Receiver<u64>,
}

impl Publisher {
    fn spawn(url: String) -> Publisher {
        let (tx, rx) = mpsc::channel::<Membership>();
        let (htx, higher) = mpsc::channel();
        std::thread::spawn(move || publish_loop(&url, &rx, &htx));
        Publisher { tx, higher }
    }

    fn publish(&self, m: Membership) {
        let _ = self.tx.send(m);
    }
}

fn publish_loop(url: &str, rx: &mpsc::Receiver<Membership>, higher: &mpsc::Sender<u64>) {
    let shown = switchboard::store::redact_url(url);
    let mut conn: Option<redis::Connection> = None;
    let mut pending: Option<Membership> = None;
    let mut warned = None::<Instant>;
    loop {
        let next = if pending.is_some() {
            rx.recv_timeout(Duration::from_millis(500))
        } else {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        };
        match next {
            Ok(m) => pending = Some(m),
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        while let Ok(m) = rx.try_recv() {
            pending = Some(m);
        }
        let Some(m) = pending.clone() else { continue };
        if conn.is_none() {
            // Bounded waits: a stopped Redis must not hold the latest membership back for ever.
            conn = redis::Client::open(url)
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
                .and_then(|c| {
                    c.set_read_timeout(Some(Duration::from_secs(2)))?;
                    c.set_write_timeout(Some(Duration::from_secs(2)))?;
                    Ok(c)
                })
                .ok();
        }
        let Some(c) = conn.as_mut() else {
            if warned.is_none_or(|w: Instant| w.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(redis = %shown, "cannot reach Redis to publish the membership; retrying");
                warned = Some(Instant::now());
            }
            continue;
        };
        let r: redis::RedisResult<i64> =
            redis::cmd("EVAL").arg(CAS).arg(2).arg(membership::KEY).arg(membership::CHANNEL).arg(m.epoch).arg(m.encode()).query(c);
        match r {
            Ok(-1) => {
                pending = None;
                tracing::info!(epoch = m.epoch, "membership published");
            }
            Ok(stored) => {
                pending = None;
                let _ = higher.send(u64::try_from(stored).unwrap_or(0));
            }
            Err(e) => {
                tracing::warn!(redis = %shown, error = %e, "membership not published; retrying");
                conn = None;
            }
        }
    }
}
