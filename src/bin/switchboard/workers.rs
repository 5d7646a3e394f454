//! `serve --workers N` (issue 16 point 1): N threads, each running the driver loop with its own
//! [`Service`] (transactions, dialogs, B2BUA calls, proxy contexts, the echo user, their timers),
//! its own socket on the shared SIP address, and its share of the caps.
//!
//! The caps of issue 14 become **budgets per worker**: `max_transactions / N` live transactions,
//! `max_echo_calls_per_source / N` echo calls per source IP (the echo port share is a share of
//! the worker's slice of the range, so it adds up to the configured share),
//! and a slice of the RTP port range of its own (so two workers never pick the same relay port).
//! The per-source rate limit is not split: the workers check one shared set of buckets
//! (`SharedRateLimiter`), because a source's REGISTERs all stay on the worker they land on
//! (`switchboard::workers`) while its other requests spread by Call-ID. `max_bindings` is
//! the registrar's (a budget per AOR shard, see `SharedRegistrar`); `max_contacts` holds as
//! before (an AOR lives in one shard).

use std::ops::RangeInclusive;
use switchboard::driver::Command;
use switchboard::endpoint::Endpoint;
use switchboard::records::CallState;
use switchboard::service::app::Service;
use switchboard::transport::udp::UdpTransport;
use switchboard::workers::Shard;
use tokio::sync::mpsc;

/// Worker `index` of `count`: its share of what is split.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) count: usize,
}

impl Worker {
    /// A count cap's budget: `ceil(cap / count)`, at least 1 (the whole cap for one worker).
    pub(crate) fn budget(self, cap: usize) -> usize {
        cap.div_ceil(self.count).max(1)
    }

    /// This worker's slice of the RTP port range: equal slices of even length (RTP even, RTCP
    /// odd), the last one taking the rest. A range too small to split is shared whole (a port a
    /// sibling holds is then a failed bind, which costs a spare pair, not a call).
    pub(crate) fn ports(self, range: &RangeInclusive<u16>) -> RangeInclusive<u16> {
        let (from, to) = (u32::from(*range.start()), u32::from(*range.end()));
        let slice = ((to - from + 1) / self.count as u32) & !1;
        if self.count == 1 || slice < 8 {
            return range.clone();
        }
        let start = from + slice * self.index as u32;
        let end = if self.index + 1 == self.count { to } else { start + slice - 1 };
        // Both within the u16 range given: start < end <= to.
        u16::try_from(start).unwrap_or(*range.start())..=u16::try_from(end).unwrap_or(*range.end())
    }
}

/// The saved calls of each worker: a call goes to the worker its caller leg's Call-ID maps to
/// (its callee leg's sticky Call-ID maps there too). A state that cannot be read goes to worker 0,
/// whose B2BUA logs and drops it as before.
pub(crate) fn split_calls(saved: Vec<CallState>, n: usize) -> Vec<Vec<CallState>> {
    let mut per: Vec<Vec<CallState>> = (0..n).map(|_| Vec::new()).collect();
    for s in saved {
        let v: serde_json::Value = serde_json::from_str(&s.data).unwrap_or(serde_json::Value::Null);
        let call_id = v.pointer("/caller/dialog/call_id").and_then(serde_json::Value::as_str);
        let i = call_id.map_or(0, |c| switchboard::cluster::worker_of(c, n));
        per[i].push(s);
    }
    per
}

/// Runs the workers until Ctrl-C (or SIGTERM) and they are done: worker 0 on this runtime, the
/// others on a thread each with its own single-threaded runtime. One worker is the loop of before.
pub(crate) async fn run(
    transports: Vec<UdpTransport>,
    services: Vec<(Endpoint, Service, Option<Shard>)>,
    commands: Vec<mpsc::Receiver<Command<Service>>>,
) {
    // Installed now, so a signal that arrives while the workers start is not lost.
    let interrupted = switchboard::driver::interrupted();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone: stop too.
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut threads = Vec::new();
    let mut first = None;
    for (i, ((transport, (endpoint, service, shard)), commands)) in transports.into_iter().zip(services).zip(commands).enumerate() {
        if i == 0 {
            first = Some((transport, endpoint, service, shard, commands));
            continue;
        }
        // A tokio socket belongs to the runtime that made it: move the std socket over.
        let std_transport = transport.into_std();
        let rx = stop_rx.clone();
        let thread = std::thread::Builder::new().name(format!("sb-worker-{i}")).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(worker = i, error = %e, "cannot start the worker's runtime");
                    return;
                }
            };
            rt.block_on(async move {
                let transport = match std_transport.and_then(UdpTransport::from_std) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(worker = i, error = %e, "worker socket lost");
                        return;
                    }
                };
                switchboard::driver::run_worker(transport, endpoint, service, stopped(rx), commands, shard).await;
            });
        });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => tracing::error!(worker = i, error = %e, "cannot start a worker thread"),
        }
    }
    tokio::spawn(async move {
        interrupted.await;
        let _ = stop_tx.send(true);
        // Kept until the process ends, so `stopped` never sees the sender go early.
        std::future::pending::<()>().await;
    });
    if let Some((transport, endpoint, service, shard, commands)) = first {
        switchboard::driver::run_worker(transport, endpoint, service, stopped(stop_rx), commands, shard).await;
    }
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
}

/// The store writer shared by the workers: one writer thread, each worker queueing to it.
#[derive(Debug, Clone)]
pub(crate) struct SharedWriter(pub(crate) std::sync::Arc<switchboard::store::StoreWriter>);

impl switchboard::records::StoreSink for SharedWriter {
    fn enqueue(&self, op: switchboard::records::StoreOp) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        switchboard::records::StoreSink::enqueue(&*self.0, op)
    }

    fn flush(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        switchboard::records::StoreSink::flush(&*self.0)
    }
}
