//! `softphone load URI --rate R --calls N`: a SIP load generator on the crate's own stack.
//!
//! W worker threads (default: one per 5,000 calls/s, at most the number of cores) each own a UDP
//! socket, an [`Endpoint`] and a [`LoadWorker`], run by a plain blocking loop (`load/blocking.rs`);
//! they share nothing but the atomic counters of [`Shared`] and the stop flag. The offered rate,
//! the calls and the concurrency cap are split evenly across them and their calls interleave, so
//! together they offer one evenly paced stream. The main thread
//! prints the progress line, stops the workers on Ctrl-C or `--timeout`, and prints the table.

mod blocking;
mod report;
mod worker;

use report::{Progress, Totals};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use switchboard::call::{offer, MediaPrefs};
use switchboard::dialog::{CallParams, DialogConfig, Dialogs};
use switchboard::endpoint::{Endpoint, EndpointConfig};
use switchboard::sdp::Direction;
use switchboard::ua::core::UaCore;
use worker::{LoadWorker, Plan, Shared, WorkerResult};

/// Flags of `softphone load`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// Who to call: sip:user@host[:port], e.g. sip:echo@127.0.0.1:5060.
    uri: String,
    /// Calls started per second, all workers together (paced evenly, not in bursts).
    #[arg(long, value_name = "CPS")]
    rate: f64,
    /// Calls to place in total.
    #[arg(long, value_name = "N")]
    calls: u64,
    /// Calls in progress at most, all workers together (default: unlimited).
    #[arg(long, value_name = "C")]
    concurrency: Option<u64>,
    /// Seconds each call stays up after the 200 before the BYE.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    duration: f64,
    /// Worker threads, each with its own socket (default: one per 5000 calls/s of --rate, at most
    /// the number of cores).
    #[arg(long, value_name = "W")]
    workers: Option<usize>,
    /// Overall bound in seconds: then stop placing calls, hang up, and count what is unfinished as
    /// failed (default: twice the planned time plus 70 s, enough for Timers B and F).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// User part of From (default: --user).
    #[arg(long, value_name = "USER")]
    from: Option<String>,
    /// Paced workers: each wakes every MS milliseconds (1-100) and serves everything that arrived
    /// and is due in one batch, instead of waking for each arrival (0). Fewer wake-ups per call, for
    /// up to MS ms more setup time and timer lateness.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    tick_ms: u64,
}

/// Global softphone flags that `load` uses.
#[derive(Debug)]
pub(crate) struct Globals<'a> {
    /// --bind: the IP every worker binds; a non-zero port is the first worker's, the next ones count up.
    pub(crate) bind: SocketAddr,
    /// --user: From (unless --from) and digest user name.
    pub(crate) user: &'a str,
    /// --password-file: answer 401/407 challenges to INVITEs.
    pub(crate) password_file: Option<&'a PathBuf>,
    /// --summary json.
    pub(crate) json: bool,
}

/// Validated settings.
#[derive(Debug)]
struct Settings {
    uri: String,
    target: SocketAddr,
    rate: f64,
    calls: u64,
    concurrency: u64,
    hold: Duration,
    workers: usize,
    timeout: Duration,
    from: String,
    password: Option<String>,
    /// The paced loop's tick (`--tick-ms`), `None` for a round per arrival.
    tick: Option<Duration>,
}

/// T1 of the workers' transaction and dialog layers (RFC 3261 Table 4 default).
const T1: Duration = Duration::from_millis(500);

fn settings(a: &LoadArgs, g: &Globals<'_>, resolve: impl Fn(&str) -> Result<SocketAddr, String>) -> Result<Settings, String> {
    if !(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 1_000_000.0) {
        return Err(format!("--rate must be a number of calls per second above 0 and at most 1000000, got {}", a.rate));
    }
    if !(1..=100_000_000).contains(&a.calls) {
        return Err(format!("--calls must be between 1 and 100000000, got {}", a.calls));
    }
    if a.concurrency == Some(0) {
        return Err("--concurrency must be at least 1, got 0".into());
    }
    if !(a.duration.is_finite() && (0.0..=86_400.0).contains(&a.duration)) {
        return Err(format!("--duration must be between 0 and 86400 seconds, got {}", a.duration));
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // A worker left with little to do still wakes for every datagram of its calls: two workers at
    // 1,000 calls/s made 1.3 context switches per call where one made 0.9 (BENCHMARKS.md
    // "softphone load, leaner (load16)"). See [`RATE_PER_WORKER`].
    let workers = a.workers.unwrap_or_else(|| default_workers(a.rate, cores));
    if !(1..=256).contains(&workers) {
        return Err(format!("--workers must be between 1 and 256, got {workers}"));
    }
    // Never more workers than calls: an idle worker would only hold a socket.
    let workers = workers.min(usize::try_from(a.calls).unwrap_or(usize::MAX));
    let max_tick = blocking::MAX_TICK.as_millis();
    if u128::from(a.tick_ms) > max_tick {
        return Err(format!("--tick-ms must be between 0 and {max_tick}, got {}", a.tick_ms));
    }
    let tick = (a.tick_ms > 0).then(|| Duration::from_millis(a.tick_ms));
    let hold = Duration::from_secs_f64(a.duration);
    let planned = Duration::from_secs_f64(a.calls as f64 / a.rate) + hold;
    let timeout = match a.timeout {
        Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => Duration::from_secs_f64(t),
        Some(t) => return Err(format!("--timeout must be above 0 and at most 86400 seconds, got {t}")),
        None => planned * 2 + Duration::from_secs(70),
    };
    let from = a.from.as_deref().unwrap_or(g.user);
    if from.is_empty() || !from.chars().all(|c| c.is_ascii_alphanumeric() || "-_.!~*'+".contains(c)) {
        return Err(format!("--from must be a SIP user name (letters, digits, - _ . ! ~ * ' +), got {from:?}"));
    }
    let password = match g.password_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let first = text.lines().next().unwrap_or("").to_owned();
            if first.is_empty() {
                return Err(format!("{}: the first line is empty", p.display()));
            }
            Some(first)
        }
        None => None,
    };
    let target = resolve(&a.uri)?;
    let concurrency = a.concurrency.unwrap_or(u64::MAX);
    if concurrency < workers as u64 {
        return Err(format!("--concurrency must be at least the number of workers ({workers}), got {concurrency}"));
    }
    Ok(Settings {
        uri: a.uri.clone(),
        target,
        rate: a.rate,
        calls: a.calls,
        concurrency,
        hold,
        workers,
        timeout,
        from: from.to_owned(),
        password,
        tick,
    })
}

/// Calls per second one worker is given when `--workers` is not set. One worker used 6-9% of a
/// core at 1,000 calls/s on the 2-core bench machine (BENCHMARKS.md "softphone load, leaner
/// (load16)"), so 5,000 calls/s leaves it a wide margin on a shared machine.
const RATE_PER_WORKER: f64 = 5_000.0;

/// Workers for `rate` calls/s when `--workers` is not set: one per [`RATE_PER_WORKER`], at most `cores`.
fn default_workers(rate: f64, cores: usize) -> usize {
    let wanted = (rate / RATE_PER_WORKER).ceil();
    // `rate` is checked to be within (0, 1e6]: the cast cannot overflow.
    (wanted as usize).clamp(1, cores.max(1))
}

/// Share `i` of `total` split `n` ways (the first `total % n` shares get one more).
fn share(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    total / n + u64::from((i as u64) < total % n)
}

/// Runs `softphone load`; `resolve` turns the URI into the address to send to.
pub(crate) fn run(args: &LoadArgs, g: &Globals<'_>, resolve: impl Fn(&str) -> Result<SocketAddr, String>) -> ExitCode {
    let s = match settings(args, g, resolve) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("softphone: {e}");
            return ExitCode::from(2);
        }
    };
    let shared = Arc::new(Shared::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // A short head start so every worker has bound before the first call is due.
    let start = Instant::now() + Duration::from_millis(50);
    let mut handles = Vec::with_capacity(s.workers);
    for i in 0..s.workers {
        let bind = match g.bind.port() {
            0 => g.bind,
            p => match u16::try_from(i).ok().and_then(|i| p.checked_add(i)) {
                Some(port) => SocketAddr::new(g.bind.ip(), port),
                None => {
                    eprintln!("softphone: --bind port {p} leaves no room for {} workers", s.workers);
                    return ExitCode::from(2);
                }
            },
        };
        let setup = WorkerSetup {
            bind,
            target: s.target,
            user: s.from.clone(),
            plan: plan(&s, g.bind.ip(), start, i),
            auth: s.password.clone().map(|p| (g.user.to_owned(), p)),
            tick: s.tick,
        };
        let (shared, worker_stop, ready_tx) = (shared.clone(), stop.clone(), ready_tx.clone());
        let spawned =
            std::thread::Builder::new().name(format!("load-{i}")).spawn(move || worker_thread(setup, shared, &worker_stop, ready_tx));
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                eprintln!("softphone: cannot start worker {i}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    drop(ready_tx);
    let mut locals = Vec::new();
    for r in ready_rx.iter().take(s.workers) {
        match r {
            Ok(addr) => locals.push(addr),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                eprintln!("softphone: {e}");
                return ExitCode::from(2);
            }
        }
    }
    eprintln!("softphone: load {} from {} worker(s) ({}): {} calls at {} calls/s", s.uri, s.workers, list(&locals), s.calls, s.rate);
    let stopped_by = supervise(&s, &shared, &handles, &stop, start);
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        match h.join() {
            Ok(r) => results.push(r),
            Err(_) => {
                eprintln!("softphone: a load worker panicked");
                return ExitCode::FAILURE;
            }
        }
    }
    let wall = start.elapsed();
    let totals = Totals::merge(results, &shared, s.calls, s.rate, wall, s.workers, stopped_by);
    totals.print_table(&s.uri, g.json);
    if g.json {
        println!("{}", totals.json(&s.uri));
    }
    if totals.failed == 0 && totals.ok == s.calls {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(", ")
}

/// Worker `i`'s share: calls i, i+W, i+2W, ... of the whole evenly spaced schedule.
fn plan(s: &Settings, ip: IpAddr, start: Instant, i: usize) -> Plan {
    let per_call = Duration::from_secs_f64(1.0 / s.rate);
    let sdp = offer(SocketAddr::new(ip, 9), &MediaPrefs::default(), Direction::SendRecv, 1 + i as u64, 1).to_bytes();
    Plan {
        calls: share(s.calls, s.workers, i),
        first_at: start + per_call.mul_f64(i as f64),
        interval: per_call.mul_f64(s.workers as f64),
        concurrency: if s.concurrency == u64::MAX { u64::MAX } else { share(s.concurrency, s.workers, i) },
        hold: s.hold,
        bye_limit: T1 * 64 + Duration::from_secs(1),
        params: CallParams {
            from: format!("<sip:{}@{ip}>", s.from),
            to: format!("<{}>", s.uri),
            target: None,
            routes: Vec::new(),
            sdp: Some(sdp),
            max_forwards: None,
            asserted_identity: None,
            referred_by: None,
        },
    }
}

/// What one worker thread starts from.
#[derive(Debug)]
struct WorkerSetup {
    bind: SocketAddr,
    /// Where requests go when the URI names a host (UaCore's default peer).
    target: SocketAddr,
    /// User part of From and Contact.
    user: String,
    plan: Plan,
    /// Digest user name and password.
    auth: Option<(String, String)>,
    /// The paced loop's tick, if any.
    tick: Option<Duration>,
}

/// One worker: its socket, runtime, endpoint and dialogs; reports its address on `ready`, then
/// runs the driver until its calls are done or `stop` turns true.
fn worker_thread(
    setup: WorkerSetup,
    shared: Arc<Shared>,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
) -> WorkerResult {
    let WorkerSetup { bind, target, user, plan, auth, tick } = setup;
    let socket = match switchboard::transport::udp_sync::SyncUdp::bind(bind) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot bind {bind}: {e}")));
            return WorkerResult::default();
        }
    };
    let local = socket.local_addr();
    let _ = ready.send(Ok(local));
    // Distinct per worker, so Call-IDs, tags and branches never collide across workers.
    let seed = switchboard::dialog::IdGen::os_seed();
    let config = DialogConfig {
        t1: T1,
        contact: format!("sip:{user}@{local}"),
        sent_by: local.to_string(),
        session_expires: None,
        rng_seed: seed,
        ..DialogConfig::default()
    };
    let mut dialogs = Dialogs::new(config);
    // The load reads no SDP of an ended call; its dialogs linger 64*T1 after the BYE.
    dialogs.set_forget_ended_sdp(true);
    if let Some((user, password)) = auth {
        let mut client = switchboard::auth::DigestClient::new(user, password);
        let mut cnonces = switchboard::dialog::IdGen::from_os();
        dialogs.set_authorizer(Box::new(move |req, resp| {
            client.handle_challenge(req, resp).ok()?;
            let uri = req.request_uri_str()?.to_owned();
            client.authorization(req.method()?.as_str(), &uri, &format!("{:016x}", cnonces.next_u64()))
        }));
    }
    let ua = UaCore::new(dialogs, Some(target));
    let mut endpoint_config = EndpointConfig::default();
    endpoint_config.timers.t1 = T1;
    let app = LoadWorker::new(plan, ua, shared.clone());
    reserve_heap();
    blocking::run(socket, Endpoint::new(endpoint_config), app, stop, tick).into_result()
}

/// Grows this thread's allocator heap once, up front. A load run keeps a few KB per call for
/// Timers D and M and the dialog purge (32 s), so a worker's heap grows all run long; glibc grows
/// a thread's arena with one `mprotect` per step it needs (a page or so), which measured 1.1 system
/// calls per call of 4.3 (BENCHMARKS.md "softphone load, batched"). Allocating and freeing 32 MiB
/// in blocks below the mmap threshold leaves that range writable: later growth within it is only
/// page faults, which it needed anyway (the freed range is given back to the kernel, not kept).
fn reserve_heap() {
    let blocks: Vec<Vec<u8>> = (0..512).map(|_| std::hint::black_box(Vec::with_capacity(64 << 10))).collect();
    drop(std::hint::black_box(blocks));
}

/// Prints the progress line once a second until every worker is done; stops them on Ctrl-C or
/// at the timeout. Returns what stopped the run early, if anything.
fn supervise(
    s: &Settings,
    shared: &Arc<Shared>,
    handles: &[JoinHandle<WorkerResult>],
    stop: &AtomicBool,
    start: Instant,
) -> Option<&'static str> {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("softphone: cannot start the runtime: {e}; stopping the workers");
            stop.store(true, Ordering::Relaxed);
            return Some("error");
        }
    };
    rt.block_on(async {
        let interrupted = switchboard::driver::interrupted();
        tokio::pin!(interrupted);
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut progress = Progress::new(s.rate, start);
        let mut stopped_by = None;
        loop {
            tokio::select! {
                _ = &mut interrupted, if stopped_by.is_none() => {
                    stopped_by = Some("interrupted");
                    stop.store(true, Ordering::Relaxed);
                }
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            if stopped_by.is_none() && now >= start + s.timeout {
                stopped_by = Some("timeout");
                stop.store(true, Ordering::Relaxed);
            }
            if handles.iter().all(JoinHandle::is_finished) {
                progress.finish(shared, now);
                return stopped_by;
            }
            progress.maybe_print(shared, now);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::default_workers;

    #[test]
    fn default_workers_follow_the_rate_within_the_cores() {
        assert_eq!(default_workers(0.5, 2), 1);
        assert_eq!(default_workers(1000.0, 2), 1);
        assert_eq!(default_workers(5000.0, 2), 1);
        assert_eq!(default_workers(5001.0, 2), 2);
        assert_eq!(default_workers(1_000_000.0, 2), 2);
        assert_eq!(default_workers(12_000.0, 16), 3);
        assert_eq!(default_workers(1000.0, 0), 1);
    }
}
