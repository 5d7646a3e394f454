//! `switchboard serve`: the service on a UDP socket, with its store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use switchboard::auth::DigestServer;
use switchboard::b2bua::{B2bua, B2buaConfig};
use switchboard::call::{MediaConfig, MediaPrefs};
use switchboard::dialog::IdGen;
use switchboard::endpoint::{Endpoint, EndpointConfig};
use switchboard::proxy::token::RouteKey;
use switchboard::proxy::{Proxy, ProxyConfig};
use switchboard::registrar::{Registrar, RegistrarConfig, SharedRegistrar};
use switchboard::relay::RelayConfig;
use switchboard::service::admit::{Admission, Cidr};
use switchboard::service::app::{Service, ServiceParts};
use switchboard::service::config::{self, AuthMode, FileConfig};
use switchboard::service::routes::StaticRoutes;
use switchboard::service::shared::{Shared, SharedUsers};
use switchboard::store::{RedisStore, SqliteStore, Store, StoreWriter, WriterConfig};
use switchboard::transaction::Config;
use switchboard::transport::udp::UdpTransport;
use switchboard::ua::echo::{EchoConfig, EchoUas};
use switchboard::ua::media::CallMediaConfig;

/// Options of `switchboard serve`. Each overrides the same key of `--config`; unset ones fall back
/// to the file, then to the built-in default shown.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (keys: listen, domain, auth, mode, data_dir, store, member, rtp_ports,
    /// rtp_timeout_secs, answer_delay_secs, drain_secs, t1_ms, min_expires, max_expires, nonce_lifetime_secs,
    /// branch_timeout_secs, auth_algorithms, relay, realm, max_contacts, max_bindings, max_transactions,
    /// max_echo_calls_per_source, unauth_port_share, rtp_learning_ms, trusted, rate_limit, auth_backoff_secs; [[route]] tables with user, target,
    /// rewrite_host, override).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// UDP address to listen on, IPv4 or [IPv6]:port; port 0 picks a free one [default: 127.0.0.1:5060].
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,
    /// Our domain: REGISTER and calls for other domains are refused [default: any].
    #[arg(long, value_name = "DOMAIN")]
    pub(crate) domain: Option<String>,
    /// Where registrations, users and call records are kept (SQLite, readable with sqlite3);
    /// `none` keeps them in memory only [default: the user's data dir, printed at start].
    #[arg(long = "data", value_name = "DIR", env = "SWITCHBOARD_DATA")]
    pub(crate) data: Option<PathBuf>,
    /// A shared store instead of the SQLite file: `redis://HOST:PORT/DB`. Users, registrations,
    /// established calls, call records and the nonce secret then live in Redis, shared by every
    /// instance started with the same URL; the data directory keeps only the control socket.
    #[arg(long = "store", value_name = "URL", env = "SWITCHBOARD_STORE")]
    pub(crate) store: Option<String>,
    /// This instance's name in the cluster: the SIP URI the dispatcher's backend list and the
    /// published membership (`sb:members`) give it. With `--store redis://...` its saved calls
    /// carry it as their owner, and it adopts the calls of instances the membership drops
    /// [default: sip: + the listen address].
    #[arg(long, value_name = "URI")]
    pub(crate) member: Option<String>,
    /// How calls between registered users are connected: `b2bua` (two dialogs per call, RTP relayed
    /// through the service's ports, call records with media figures) or `proxy` (stateful RFC 3261
    /// proxy with Record-Route; media flows phone to phone) [default: b2bua].
    #[arg(long, value_name = "MODE")]
    pub(crate) mode: Option<config::Mode>,
    /// B2BUA without the RTP relay: SDPs pass through unchanged and media flows phone to phone; no
    /// relay ports, no media figures in call records (a signalling-only B2BUA, for calls by the
    /// hundred thousand: the relay needs 4 ports per call).
    #[arg(long)]
    pub(crate) no_relay: bool,
    /// Threads that read and forward the relay's media, each owning the calls whose ports fall
    /// in its lane [default: the number of cores]. 0: the reader threads hand every datagram to
    /// the service's thread, which relays it (the design before lanes, for comparison).
    #[arg(long, value_name = "N")]
    pub(crate) relay_threads: Option<usize>,
    /// Turn digest authentication off (lab use only: anyone can register as anyone).
    #[arg(long)]
    pub(crate) no_auth: bool,
    /// Seconds the echo user rings (180 Ringing) before it answers [default: 0, answer at once].
    #[arg(long, value_name = "SECS")]
    pub(crate) answer_delay: Option<f64>,
    /// In a cluster, on SIGTERM: after the dispatcher stopped sending new calls (probes answered
    /// 503), wait up to SECS for every call to end before exiting; calls still up then are
    /// adopted by the other instances. Unset: exit once the dispatcher saw the 503 and the echo
    /// calls ended (at most 4 s), leaving the B2BUA calls to be adopted at once.
    #[arg(long, value_name = "SECS")]
    pub(crate) drain_secs: Option<f64>,
    /// RFC 3261 timer T1 in milliseconds; retransmissions start at T1 [default: 500].
    #[arg(long, value_name = "MS")]
    pub(crate) t1_ms: Option<u64>,
    /// RTP port range of calls the service answers: even ports RTP, the next odd one RTCP
    /// [default: 30000-39999].
    #[arg(long, value_name = "FROM-TO")]
    pub(crate) rtp_ports: Option<String>,
    /// End a call with BYE when no RTP or RTCP arrives for this many seconds; 0 never [default: 30].
    #[arg(long, value_name = "SECS")]
    pub(crate) rtp_timeout: Option<f64>,
    /// Shortest registration accepted; shorter ones get 423 [default: 60].
    #[arg(long, value_name = "SECS")]
    pub(crate) min_expires: Option<u32>,
    /// Digest algorithms to challenge with, in order: md5, sha-256, or e.g. sha-256,md5. MD5 alone
    /// is the default because sipp 3.6 and baresip 1.0 give up on a SHA-256 challenge; credentials
    /// in either algorithm are accepted [default: md5].
    #[arg(long, value_name = "LIST")]
    pub(crate) auth_algorithms: Option<String>,
    /// Control socket (mode 0600) for `switchboard calls` and for `switchboard users`, whose
    /// changes take effect at once [default: switchboard.sock in the data directory; none with
    /// `--data none`].
    #[arg(long, value_name = "PATH")]
    pub(crate) control: Option<PathBuf>,
    /// A forwarded request with no response at all for this long ends as 408 [default: 10].
    #[arg(long, value_name = "SECS")]
    pub(crate) branch_timeout: Option<f64>,
    // ----- caps on state the network can create (issue 14 point 5; helper "caps") -----
    /// Contacts one address-of-record may register; a REGISTER adding one more gets 503 "Too many
    /// registered contacts" with Retry-After [default: 10].
    #[arg(long, value_name = "N")]
    pub(crate) max_contacts: Option<usize>,
    /// Registered contacts in all; a REGISTER adding one more gets 503 [default: 100000].
    #[arg(long, value_name = "N")]
    pub(crate) max_bindings: Option<usize>,
    /// Live SIP transactions; a new request beyond gets a stateless 503 with Retry-After
    /// [default: 100000].
    #[arg(long, value_name = "N")]
    pub(crate) max_transactions: Option<usize>,
    /// Concurrent calls to echo from one source IP; one more gets 486 with Retry-After; 0 means no
    /// limit (load tests from one address) [default: 10].
    #[arg(long, value_name = "N")]
    pub(crate) max_echo_calls_per_source: Option<usize>,
    /// Percent of the RTP port range that unauthenticated calls (echo) may hold, so they cannot
    /// starve real calls of relay ports; beyond it they get 503 [default: 25].
    #[arg(long, value_name = "PERCENT")]
    pub(crate) unauth_port_share: Option<u8>,
    // ----- end of caps -----
    // --- users (issue 14 point 11) ---
    /// The digest realm to challenge with [default: the domain, else `switchboard`]. Users carry
    /// the realm their hashes were made for: when the stored users' realm is not this one, `serve`
    /// refuses to start, naming both; give the users' realm here to keep them, or re-add them with
    /// `users add --domain`.
    #[arg(long, value_name = "REALM")]
    pub(crate) realm: Option<String>,
    // --- end users ---
    // ----- media latching (issue 14) -----
    /// Relay learning window: RTP sources are ranked against the SDP for this long before one
    /// that does not match it (a phone behind NAT) latches, and a latched source that sent within
    /// it cannot be replaced (rtpengine's heuristic endpoint learning) [default: 3000].
    #[arg(long, value_name = "MS")]
    pub(crate) rtp_learning_ms: Option<u64>,
    // ----- end media latching -----
    // ----- trust (issue 14) -----
    /// Trusted peers, IP or IP/BITS, comma-separated or repeated: their requests are not
    /// challenged (gateways, static-route targets) [default: none].
    #[arg(long, value_name = "IP/BITS", value_delimiter = ',')]
    pub(crate) trusted: Vec<String>,
    /// The cluster's dispatchers (`switchboard dispatch --listen ADDR`), IP:PORT, comma-separated
    /// or repeated: a request from one is rate-limited per the client address in the Via the
    /// dispatcher received, not per the dispatcher's (issue 17 point 3) [default: none].
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub(crate) dispatcher: Vec<SocketAddr>,
    // ----- end trust -----
    // ----- limits (issue 14 point 4) -----
    /// Requests per second accepted from one source IP, with bursts of twice that; the excess is
    /// dropped and counted, with one log line per source per minute. 0 turns the limit off (load
    /// tests from one address) [default: 200].
    #[arg(long, value_name = "N")]
    pub(crate) rate_limit: Option<u32>,
    /// After 10 failed authentications in 60 s from one source IP (or one IP for one user), answer
    /// 403 without checking for this many seconds; 0: failures are only logged [default: 60].
    #[arg(long, value_name = "SECS")]
    pub(crate) auth_backoff: Option<u64>,
    // ----- end limits -----
    /// Worker threads (issue 16 point 1): each owns the calls, transactions and timers whose
    /// Call-ID maps to it, and binds the SIP address with SO_REUSEPORT; a datagram that arrives
    /// on another worker's socket is handed over by Call-ID (a REGISTER is handled where it
    /// lands). Registrations are sharded by AOR; max_bindings, max_transactions and the RTP port
    /// range are split between workers, the rate limit is shared. 1 is the single loop of before
    /// [default: the number of cores].
    #[arg(long, value_name = "N", env = "SWITCHBOARD_WORKERS")]
    pub(crate) workers: Option<usize>,
}

/// Everything resolved, checked and ready.
pub(crate) struct Resolved {
    pub(crate) listen: SocketAddr,
    pub(crate) domain: Option<String>,
    /// The realm `--realm` (or the file) chose, `None` when it follows the domain.
    pub(crate) realm: Option<String>,
    pub(crate) auth: AuthMode,
    pub(crate) data: Option<PathBuf>,
    /// `--store` (or `store` in the file): the Redis URL.
    pub(crate) store: Option<String>,
    /// `--member` (or `member` in the file); `None`: `sip:` + the listen address.
    member: Option<String>,
    pub(crate) mode: config::Mode,
    relay_media: bool,
    /// Relay lanes (reader threads); 0: relayed on the service's thread.
    relay_threads: usize,
    control: Option<PathBuf>,
    answer_delay: Duration,
    /// `--drain-secs`.
    drain: Option<Duration>,
    t1: Duration,
    rtp_ports: std::ops::RangeInclusive<u16>,
    rtp_timeout: Duration,
    rtp_learning: Duration,
    min_expires: u32,
    max_expires: u32,
    nonce_lifetime: Duration,
    branch_timeout: Duration,
    algorithms: Vec<switchboard::auth::Algorithm>,
    routes: StaticRoutes,
    caps: Caps,
    trusted: Vec<Cidr>,
    hops: Vec<SocketAddr>,
    rate_limit: Option<switchboard::transport::rate_limit::RateLimit>,
    guard: switchboard::service::guard::GuardConfig,
    workers: usize,
}

/// The caps of issue 14 point 5, resolved.
struct Caps {
    max_contacts: usize,
    max_bindings: usize,
    max_transactions: usize,
    max_echo_calls_per_source: usize,
    unauth_port_share: u8,
}

/// Resolves the caps: flag, then file, then default; each count must be at least 1.
fn caps(args: &ServeArgs, file: &FileConfig) -> Result<Caps, String> {
    let at_least_one = |name: &str, v: usize| if v == 0 { Err(format!("{name} must be at least 1, got 0")) } else { Ok(v) };
    let share = args.unauth_port_share.or(file.unauth_port_share).unwrap_or(25);
    if share > 100 {
        return Err(format!("unauth_port_share is a percentage (0-100), got {share}"));
    }
    Ok(Caps {
        max_contacts: at_least_one("max_contacts", args.max_contacts.or(file.max_contacts).unwrap_or(10))?,
        max_bindings: at_least_one("max_bindings", args.max_bindings.or(file.max_bindings).unwrap_or(100_000))?,
        max_transactions: at_least_one("max_transactions", args.max_transactions.or(file.max_transactions).unwrap_or(100_000))?,
        max_echo_calls_per_source: args.max_echo_calls_per_source.or(file.max_echo_calls_per_source).unwrap_or(10),
        unauth_port_share: share,
    })
}

fn secs(name: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{name} must be between 0 and 86400 seconds, got {v}"))
    }
}

/// The relay's learning window: 1 ms to 60 s (0 would let the first source of any rank latch at
/// once, which is what the window is there to prevent).
fn rtp_learning(ms: Option<u64>) -> Result<Duration, String> {
    match ms {
        None => Ok(switchboard::relay::DEFAULT_LEARNING),
        Some(ms @ 1..=60_000) => Ok(Duration::from_millis(ms)),
        Some(ms) => Err(format!("rtp_learning_ms must be between 1 and 60000, got {ms}")),
    }
}

/// The realm of digest authentication: the domain, or `switchboard`.
pub(crate) fn realm(domain: Option<&str>) -> String {
    domain.unwrap_or("switchboard").to_owned()
}

/// The users the service can authenticate with realm `challenge`. Stored users of another realm
/// could never log in (their HA1 covers their realm): without `--realm` that refuses the start,
/// naming both realms; with `--realm` they are left out with a warning.
fn users_for_realm(
    users: Vec<switchboard::store::UserRecord>,
    challenge: &str,
    chosen: bool,
) -> Result<Vec<switchboard::store::UserRecord>, String> {
    let mut others: Vec<&str> = users.iter().map(|u| u.realm.as_str()).filter(|r| *r != challenge).collect();
    others.sort_unstable();
    others.dedup();
    if others.is_empty() {
        return Ok(users);
    }
    let others = others.join(", ");
    if !chosen {
        return Err(format!(
            "the stored users have realm {others} but this service would challenge with realm {challenge}: \
             start with --realm {others} to keep them, or re-add them with `switchboard users add --domain {challenge}`"
        ));
    }
    let (keep, left): (Vec<_>, Vec<_>) = users.into_iter().partition(|u| u.realm == challenge);
    tracing::warn!("{} stored users of realm {others} cannot log in with realm {challenge} (--realm); left out", left.len());
    Ok(keep)
}

pub(crate) fn resolve(args: &ServeArgs) -> Result<Resolved, String> {
    let file = match &args.config {
        Some(p) => switchboard::cli::load_config(p)?,
        None => FileConfig::default(),
    };
    let t1_ms = args.t1_ms.or(file.t1_ms).unwrap_or(500);
    if !(1..=10_000).contains(&t1_ms) {
        return Err(format!("t1_ms must be between 1 and 10000, got {t1_ms}"));
    }
    let caps = caps(args, &file)?;
    let data = args.data.clone().or(file.data_dir).unwrap_or_else(switchboard::store::default_data_dir);
    let algs = args.auth_algorithms.clone().or(file.auth_algorithms).unwrap_or_else(|| "md5".into());
    let algorithms = algs
        .split(',')
        .map(|a| a.trim().parse::<switchboard::auth::Algorithm>().map_err(|_| format!("unknown digest algorithm {a:?} (md5, sha-256)")))
        .collect::<Result<Vec<_>, _>>()?;
    let trusted = if args.trusted.is_empty() { file.trusted.unwrap_or_default() } else { args.trusted.clone() };
    let trusted = trusted.iter().map(|t| t.parse::<Cidr>()).collect::<Result<Vec<_>, _>>()?;
    let workers = match args.workers {
        Some(n @ 1..=256) => n,
        Some(n) => return Err(format!("workers must be between 1 and 256, got {n}")),
        None => std::thread::available_parallelism().map_or(1, |n| n.get().min(256)),
    };
    Ok(Resolved {
        listen: args.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060))),
        domain: args.domain.clone().or(file.domain),
        realm: args.realm.clone().or(file.realm),
        auth: if args.no_auth { AuthMode::None } else { file.auth.unwrap_or(AuthMode::Digest) },
        data: (data.as_os_str() != "none").then(|| data.clone()),
        store: args.store.clone().or(file.store),
        member: match args.member.clone().or(file.member) {
            Some(m) if !m.starts_with("sip:") => return Err(format!("member must be a sip: URI, got {m:?}")),
            m => m,
        },
        mode: args.mode.or(file.mode).unwrap_or(config::Mode::B2bua),
        relay_media: !args.no_relay && file.relay.unwrap_or(true),
        relay_threads: args.relay_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        control: args.control.clone().or_else(|| (data.as_os_str() != "none").then(|| crate::control::default_path(&data))),
        answer_delay: secs("answer delay", args.answer_delay.or(file.answer_delay_secs).unwrap_or(0.0))?,
        drain: args.drain_secs.or(file.drain_secs).map(|d| secs("drain-secs", d)).transpose()?,
        t1: Duration::from_millis(t1_ms),
        rtp_ports: config::port_range(args.rtp_ports.as_deref().or(file.rtp_ports.as_deref()).unwrap_or("30000-39999"))?,
        rtp_timeout: secs("rtp timeout", args.rtp_timeout.or(file.rtp_timeout_secs).unwrap_or(30.0))?,
        rtp_learning: rtp_learning(args.rtp_learning_ms.or(file.rtp_learning_ms))?,
        min_expires: args.min_expires.or(file.min_expires).unwrap_or(60),
        max_expires: file.max_expires.unwrap_or(3600),
        nonce_lifetime: Duration::from_secs(file.nonce_lifetime_secs.unwrap_or(300).max(10)),
        branch_timeout: secs("branch timeout", args.branch_timeout.or(file.branch_timeout_secs).unwrap_or(10.0))?,
        algorithms,
        routes: StaticRoutes::from_config(&file.route).map_err(|e| e.to_string())?,
        caps,
        trusted,
        hops: args.dispatcher.clone(),
        rate_limit: switchboard::transport::rate_limit::RateLimit::per_second(
            args.rate_limit.or(file.rate_limit).unwrap_or(switchboard::transport::rate_limit::DEFAULT_RATE),
        ),
        guard: switchboard::service::guard::GuardConfig {
            backoff: match args.auth_backoff.or(file.auth_backoff_secs).unwrap_or(switchboard::service::guard::DEFAULT_BACKOFF_SECS) {
                s @ 0..=86_400 => Duration::from_secs(s),
                s => return Err(format!("auth_backoff_secs must be between 0 and 86400 seconds, got {s}")),
            },
            ..Default::default()
        },
        workers,
    })
}

/// The 32-byte secret of the nonces, kept in the data directory (0600, see
/// [`switchboard::store::files`]) so challenges outlive a restart.
fn secret(data: Option<&std::path::Path>) -> Result<[u8; 32], String> {
    let mut s = [0u8; 32];
    let path = data.map(|d| d.join("nonce-secret"));
    if let Some(p) = &path {
        switchboard::store::files::narrow(p).map_err(|e| format!("cannot make {} private: {e}", p.display()))?;
    }
    if let Some(bytes) = path.as_ref().and_then(|p| std::fs::read(p).ok()).filter(|b| b.len() == 32) {
        s.copy_from_slice(&bytes);
        return Ok(s);
    }
    IdGen::os_fill(&mut s).map_err(|e| format!("cannot read the OS random number generator: {e}"))?;
    if let Some(p) = path {
        let write = |p: &std::path::Path| -> std::io::Result<()> {
            let mut f = switchboard::store::files::create_private(p)?;
            f.set_len(0)?;
            std::io::Write::write_all(&mut f, &s)
        };
        write(&p).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(s)
}

/// Opens the store: Redis at `url` when given, else SQLite in `data`, else memory.
pub(crate) fn open_store(url: Option<&str>, data: Option<&std::path::Path>) -> Result<Box<dyn Store>, String> {
    match (url, data) {
        (Some(u), _) => RedisStore::open(u).map(|s| Box::new(s) as Box<dyn Store>).map_err(|e| e.to_string()),
        (None, Some(d)) => SqliteStore::open(d).map(|s| Box::new(s) as Box<dyn Store>).map_err(|e| e.to_string()),
        (None, None) => Ok(Box::new(switchboard::store::MemoryStore::new())),
    }
}

/// Where the store is, for messages: the Redis URL (without password) or the data directory.
pub(crate) fn store_name(url: Option<&str>, data: &std::path::Path) -> String {
    url.map_or_else(|| data.display().to_string(), switchboard::store::redact_url)
}

/// Runs the service until Ctrl-C.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let r = match resolve(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    if r.auth == AuthMode::None {
        tracing::warn!("authentication is off (--no-auth): anyone can register as anyone; lab use only");
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(r)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(r: Resolved) -> Result<(), String> {
    // Bound first: the member URI defaults to the address actually bound (port 0 picks one).
    // One socket per worker on the same address (SO_REUSEPORT when there are several): the
    // first takes the port asked for, the others the port it got.
    let n = r.workers;
    let mut transports = Vec::with_capacity(n);
    if n == 1 {
        transports.push(UdpTransport::bind(r.listen).await.map_err(|e| format!("cannot listen on {}: {e}", r.listen))?);
    } else {
        let first = UdpTransport::bind_shared(r.listen).await.map_err(|e| format!("cannot listen on {}: {e}", r.listen))?;
        let local = first.local_addr();
        transports.push(first);
        for _ in 1..n {
            transports.push(UdpTransport::bind_shared(local).await.map_err(|e| format!("cannot listen on {local} again: {e}"))?);
        }
    }
    let local = transports[0].local_addr();
    let member = r.member.clone().unwrap_or_else(|| format!("sip:{local}"));
    if r.store.is_some() && r.member.is_none() && local.ip().is_unspecified() {
        tracing::warn!(%member, "listening on a wildcard address: give --member sip:IP:PORT as the dispatcher names this instance");
    }
    // The published membership at start (issue 17 point 2): which saved calls are ours to take
    // back. Without Redis there is no cluster.
    let mut membership = None;
    // With Redis the deployment secret is shared there, so every instance verifies every other's
    // nonces and Record-Route tokens; otherwise it is a file in the data directory.
    let mut origin = None;
    let (store, deployment_secret) = match &r.store {
        Some(url) => {
            let redis = RedisStore::open(url).map_err(|e| e.to_string())?.with_member(member.clone());
            membership = redis.membership().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "published membership unreadable; following the next one");
                None
            });
            origin = Some(redis.origin().to_owned());
            let mut fresh = [0u8; 32];
            IdGen::os_fill(&mut fresh).map_err(|e| format!("cannot read the OS random number generator: {e}"))?;
            let s = redis.shared_secret(fresh).map_err(|e| e.to_string())?;
            // The data directory still holds the control socket.
            if let Some(d) = &r.data {
                switchboard::store::files::private_dir(d).map_err(|e| format!("cannot create data directory {}: {e}", d.display()))?;
            }
            (Box::new(redis) as Box<dyn Store>, s)
        }
        None => (open_store(None, r.data.as_deref())?, secret(r.data.as_deref())?),
    };
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let challenge_realm = r.realm.clone().unwrap_or_else(|| realm(r.domain.as_deref()));
    let users = store.users().map_err(|e| e.to_string())?;
    let users = if r.auth == AuthMode::Digest { users_for_realm(users, &challenge_realm, r.realm.is_some())? } else { users };
    let bindings = store.bindings().map_err(|e| e.to_string())?;
    let registrar = SharedRegistrar::new(
        RegistrarConfig {
            domain: r.domain.clone(),
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            max_contacts: r.caps.max_contacts,
            max_bindings: r.caps.max_bindings,
            ..RegistrarConfig::default()
        },
        n,
    );
    let saved_calls = if r.mode == config::Mode::B2bua { store.call_states().map_err(|e| e.to_string())? } else { Vec::new() };
    let saved_calls =
        if r.store.is_some() { crate::members::ours_at_start(saved_calls, membership.as_ref(), &member) } else { saved_calls };
    let dropped = registrar.restore(bindings, wall);
    let restored = registrar.len();
    let writer = StoreWriter::spawn(store, WriterConfig::default()).map_err(|e| e.to_string())?;
    for change in dropped {
        if let switchboard::registrar::Change::Remove { aor, contact } = change {
            if let Err(e) = writer.remove_binding(&aor, &contact) {
                tracing::warn!(%aor, %contact, error = %e, "expired binding not removed from the store");
            }
        }
    }
    match r.rate_limit {
        Some(l) => tracing::info!("rate limit: {} requests/s per source IP, burst {}", l.rate, l.burst),
        None => tracing::info!("rate limit: off (rate_limit = 0)"),
    }
    // One secret per deployment: the nonces' key, and (derived from it) the Record-Route tokens'.
    let route_key = RouteKey::derive(&deployment_secret);
    let auth = match r.auth {
        AuthMode::Digest => {
            let mut d = DigestServer::new(challenge_realm, deployment_secret, r.nonce_lifetime);
            d.set_algorithms(&r.algorithms);
            Some(d)
        }
        AuthMode::None => None,
    };
    let n_saved = saved_calls.len();
    let mut saved_per_worker = crate::workers::split_calls(saved_calls, n);
    let writer = std::sync::Arc::new(writer);
    // The command channels, one per worker: the control socket's commands and, with a shared
    // store, its confirmations and other instances' changes (see `shared_store`) and the
    // membership (see `members`).
    let (commands, commands_rx): (Vec<_>, Vec<_>) = (0..n).map(|_| tokio::sync::mpsc::channel(256)).unzip();
    // With a shared store each worker's REGISTERs wait for their write: the writer is shared,
    // each worker's confirmations come back on that worker's channel (its tickets are its own).
    let loop_txs: Vec<_> = match &r.store {
        Some(_) => commands.iter().map(|c| crate::shared_store::forwarder(c.clone())).collect(),
        None => Vec::new(),
    };
    // One failed-authentication table for all the workers (a REGISTER stays where it lands, its
    // sender's other requests spread by Call-ID).
    let guard = Some(switchboard::service::guard::SharedGuard::new(r.guard));
    let shared = Shared { registrar, users: SharedUsers::new(users.clone()), purges: true, guard };
    let (shards, stats) = switchboard::workers::shards(n);
    // One set of per-source buckets for every worker: a source gets the configured rate whichever
    // workers its requests land on (a REGISTER stays where it lands, see `switchboard::workers`).
    let shared_limit = r.rate_limit.filter(|_| n > 1).map(switchboard::transport::rate_limit::SharedRateLimiter::new);
    let mut services = Vec::with_capacity(n);
    for (i, shard) in shards.into_iter().enumerate() {
        let w = crate::workers::Worker { index: i, count: n };
        let timers = Config { t1: r.t1, ..Config::default() };
        let mut endpoint = Endpoint::new(EndpointConfig {
            timers,
            allow: format!("{}, REGISTER", switchboard::endpoint::ALLOW),
            max_transactions: w.budget(r.caps.max_transactions),
            rate_limit: r.rate_limit,
            trusted_hops: r.hops.clone(),
            ..EndpointConfig::default()
        });
        if let Some(l) = &shared_limit {
            endpoint.share_rate_limit(l.clone());
        }
        let rtp_ports = w.ports(&r.rtp_ports);
        let session = MediaConfig {
            inactivity_timeout: (!r.rtp_timeout.is_zero()).then_some(r.rtp_timeout),
            cname: format!("echo@{}", local.ip()),
            seed: IdGen::os_seed(),
            ..MediaConfig::default()
        };
        let media = CallMediaConfig { ip: local.ip(), ports: rtp_ports.clone(), prefs: MediaPrefs::default(), session };
        // Each part keys its own generator from the OS (see `IdGen`): ids seen on the wire tell
        // nothing about the next ones.
        let echo = EchoUas::new(
            EchoConfig {
                local,
                answer_delay: r.answer_delay,
                t1: r.t1,
                t2: timers.t2,
                media,
                // 0 is no limit; otherwise this worker's budget.
                max_calls_per_source: if r.caps.max_echo_calls_per_source == 0 { 0 } else { w.budget(r.caps.max_echo_calls_per_source) },
                port_share: r.caps.unauth_port_share,
            },
            IdGen::os_seed(),
        );
        let proxy = Proxy::new(ProxyConfig {
            local,
            branch_timeout: r.branch_timeout,
            ringing_timeout: Duration::from_secs(181),
            seed: IdGen::os_seed(),
            realm: auth.as_ref().map(|d| d.realm().to_owned()),
            route_key: route_key.clone(),
        });
        let b2bua = (r.mode == config::Mode::B2bua).then(|| {
            let mut b = B2bua::new(B2buaConfig {
                local,
                t1: r.t1,
                t2: timers.t2,
                media_ip: local.ip(),
                rtp_ports: rtp_ports.clone(),
                relay: RelayConfig { inactivity: (!r.rtp_timeout.is_zero()).then_some(r.rtp_timeout), learning: r.rtp_learning },
                no_answer: r.branch_timeout,
                relay_media: r.relay_media,
                seed: IdGen::os_seed(),
            })
            // The relay threads are shared out among the workers (each at least one, unless 0:
            // relayed on the worker's own thread).
            .with_relay_lanes(if r.relay_threads == 0 { 0 } else { (r.relay_threads / n).max(1) });
            if r.store.is_some() {
                b.set_member(member.clone(), membership.as_ref().map_or(0, |m| m.epoch));
            }
            b
        });
        let store: Box<dyn switchboard::records::StoreSink> = match loop_txs.get(i) {
            Some(loop_tx) => Box::new(crate::shared_store::ConfirmingWriter { writer: writer.clone(), loop_tx: loop_tx.clone() }),
            None => Box::new(crate::workers::SharedWriter(writer.clone())),
        };
        let parts = ServiceParts {
            local,
            echo,
            // The registrar and the users are the shared ones (`Service::worker`).
            registrar: Registrar::new(RegistrarConfig::default()),
            auth: auth.as_ref().map(|a| a.sibling(i as u32)),
            users: Vec::new(),
            proxy,
            store: Some(store),
            b2bua,
            recovered: std::mem::take(&mut saved_per_worker[i]),
            routes: r.routes.clone(),
            admission: Admission::new(local, route_key.clone(), r.trusted.clone()),
            guard: r.guard,
        };
        let mut service = Service::worker(parts, Shared { purges: i == 0, ..shared.clone() });
        service.set_trusted_hops(r.hops.clone());
        if let Some(limit) = r.drain {
            service.set_drain_secs(limit);
        }
        services.push((endpoint, service, (n > 1).then_some(shard)));
    }
    drop(writer);
    if let (Some(url), Some(origin)) = (&r.store, origin) {
        crate::shared_store::follow(url, origin, loop_txs)?;
        crate::members::follow(url, member.clone(), commands.clone())?;
    }
    // The control socket is up before the listening line, so whoever waits for that line (a
    // script, a test) can change users at once.
    if let Some(path) = &r.control {
        crate::control::listen(path, commands, stats)?;
    }
    // The listening line goes to stdout so scripts (and tests) can read the chosen port.
    println!("switchboard listening on udp {local}; call sip:echo@{local}");
    let place = match (&r.store, &r.data) {
        (Some(url), _) => Some(switchboard::store::redact_url(url)),
        (None, d) => d.as_ref().map(|d| d.display().to_string()),
    };
    match place {
        Some(d) => eprintln!(
            "switchboard: data in {d} ({} users, {restored} registrations restored, {n_saved} calls to take back); {n} workers; mode {}",
            users.len(),
            r.mode
        ),
        None => eprintln!("switchboard: data in memory only (--data none); {n} workers"),
    }
    tracing::info!(%local, auth = ?r.auth, workers = n, "listening");
    crate::workers::run(transports, services, commands_rx).await;
    Ok(())
}
