//! The tokio driver (I/O): one task owns the SIP socket, the media sockets, the clock and the sans-IO
//! [`Endpoint`], and runs an [`Application`] on top. Timers of every transaction, dialog and media
//! flow live in the endpoint's and the application's own structures; the driver sleeps until the
//! earliest of them. After every input it carries out the application's [`MediaOutput`]s (the
//! sans-IO [`Media`] picked the ports), then drains the endpoint. SIP datagrams move in batches:
//! one wake-up takes every queued datagram (up to [`udp::BATCH`], one `recvmmsg` on Linux) before
//! the endpoint is drained, and what the drain queued leaves in one `sendmmsg`. Media sockets are read
//! by a fixed set of reader threads (one per core or relay lane, sockets assigned by port), each
//! reading its ready sockets in batches; a thread forwards its relay lane's datagrams itself
//! ([`Application::relay_shards`]) and hands the rest of one wake-up to the driver as one message;
//! the driver's own media sends are non-blocking `send_to`s; an Unbind closes the socket before the next output. Commands from outside (control socket, prompt) arrive on a channel ([`Command`]).

use crate::application::{Media, MediaOutput};
use crate::collections::HashMap;
use crate::dialog::IdGen;
use crate::endpoint::Endpoint;
use crate::transport::media_readers::{Batch, Readers};
use crate::transport::udp::{self, UdpTransport};
use crate::transport::Transmit;
use crate::workers::Shard;
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

// The application contract lives in the sans-IO `application` module; named here too for the
// programs written against the driver.
pub use crate::application::{Application, FlowId, Io};

/// Spare media port pairs kept bound per range: two B2BUA calls' worth (each takes two pairs),
/// refilled after every input.
const SPARE_PAIRS: usize = 4;

fn wall_clock() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// The driver's media sockets: it carries out the [`MediaOutput`]s of the application's
/// [`Media`] (which picked the ports). Reading is done by a fixed set of reader threads
/// ([`Readers`]: one per core, each reading its sockets in batches); sending is a plain
/// non-blocking `send_to` from the driver task (works from the first packet).
#[derive(Debug)]
struct MediaSockets {
    /// Per flow: the socket (shared with its reader thread) and its port.
    sockets: HashMap<FlowId, (Arc<std::net::UdpSocket>, u16)>,
    readers: Readers,
    /// Datagrams dropped because a socket was busy.
    send_drops: u64,
}

impl MediaSockets {
    fn bind(&mut self, flow: FlowId, local: SocketAddr) -> io::Result<()> {
        let socket = std::net::UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        let socket = Arc::new(socket);
        self.readers.add(flow, socket.clone())?;
        self.sockets.insert(flow, (socket, local.port()));
        Ok(())
    }

    fn send(&mut self, flow: FlowId, dest: SocketAddr, payload: &[u8]) {
        if let Some((socket, _)) = self.sockets.get(&flow) {
            if socket.send_to(payload, dest).is_err() {
                self.send_drops += 1;
            }
        }
    }

    /// Closes the socket now: its reader lets go of it before this returns, so the port is free
    /// before the allocator can hand it out again.
    fn close(&mut self, flow: FlowId) {
        if let Some((socket, port)) = self.sockets.remove(&flow) {
            self.readers.remove(flow, port);
            drop(socket);
        }
    }

    /// Carries out what the application queued; a bind that fails is reported back to the
    /// application (see [`Application::handle_bind_failed`]). True if there was anything.
    fn apply<A: Application>(&mut self, endpoint: &mut Endpoint, media: &mut Media, app: &mut A, now: Instant) -> bool {
        let mut any = false;
        while let Some(out) = media.poll_output() {
            any = true;
            match out {
                MediaOutput::Bind { flow, local } => {
                    if let Err(e) = self.bind(flow, local) {
                        tracing::debug!(%local, error = %e, "media port taken by another process");
                        if media.handle_bind_failed(flow) {
                            let io = &mut Io { endpoint: &mut *endpoint, media: &mut *media, wall_clock: wall_clock() };
                            app.handle_bind_failed(io, flow, now);
                        }
                    }
                }
                MediaOutput::Send { flow, dest, payload } => self.send(flow, dest, &payload),
                MediaOutput::Unbind { flow } => self.close(flow),
            }
        }
        any
    }
}

/// Drains the application's media outputs and the endpoint: binds before the datagrams that
/// name the ports, events to the application, datagrams to the SIP socket (gathered in `outbox`,
/// sent together at the end).
async fn flush<A: Application>(
    transport: &mut UdpTransport,
    endpoint: &mut Endpoint,
    media: &mut Media,
    sockets: &mut MediaSockets,
    app: &mut A,
    outbox: &mut Vec<Transmit>,
    now: Instant,
) {
    // A send can report an ICMP error (UdpTransport::report_unreachable): the endpoint hears of
    // it at once and what it does in answer goes out in another round. A few rounds at most; what
    // is left is taken at the next receive.
    for _ in 0..4 {
        outbox.clear();
        loop {
            let mut progressed = sockets.apply(endpoint, media, app, now);
            while let Some(ev) = endpoint.poll_event() {
                app.handle_event(&mut Io { endpoint: &mut *endpoint, media: &mut *media, wall_clock: wall_clock() }, ev, now);
                sockets.apply(endpoint, media, app, now);
                progressed = true;
            }
            while let Some(t) = endpoint.poll_transmit() {
                outbox.push(t);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        transport.send_batch(outbox, |t, e| tracing::debug!(dest = %t.dest, error = %e, "send failed")).await;
        outbox.clear();
        let gone = transport.take_unreachable();
        if gone.is_empty() {
            break;
        }
        for dest in gone {
            endpoint.handle_unreachable(dest, now);
        }
    }
}

/// Moves the SIP socket where the application asks ([`Application::poll_move`]), then sends what
/// it queued in answer.
async fn rebind<A: Application>(
    transport: &mut UdpTransport,
    endpoint: &mut Endpoint,
    media: &mut Media,
    sockets: &mut MediaSockets,
    app: &mut A,
    outbox: &mut Vec<Transmit>,
) {
    while let Some(addr) = app.poll_move() {
        let local = match UdpTransport::bind(addr).await {
            Ok(t) => {
                let local = t.local_addr();
                *transport = t;
                tracing::info!(%local, "SIP socket moved");
                Ok(local)
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot move the SIP socket");
                Err(e)
            }
        };
        let now = Instant::now();
        app.moved(&mut Io { endpoint: &mut *endpoint, media: &mut *media, wall_clock: wall_clock() }, local, now);
        flush(transport, endpoint, media, sockets, app, outbox, now).await;
    }
}

/// A command for the application from outside the loop (a control socket, a prompt): run on the
/// driver task with I/O, between two inputs, and followed by a flush like any other input. It
/// answers through whatever channel it captured.
pub type Command<A> = Box<dyn FnOnce(&mut A, &mut Io<'_>, Instant) + Send>;

/// Runs until the application is done. `shutdown` resolving asks the application to stop; after
/// that the loop goes on until the application says it is done (or the grace period ends). Returns the
/// application, so the caller can read what happened.
pub async fn run<A: Application>(transport: UdpTransport, endpoint: Endpoint, app: A, shutdown: impl Future<Output = ()>) -> A {
    // No sender: the command arm never fires.
    let (_, commands) = mpsc::channel(1);
    run_with_commands(transport, endpoint, app, shutdown, commands).await
}

/// [`run`], also taking [`Command`]s from `commands` as they arrive (no polling).
pub async fn run_with_commands<A: Application>(
    transport: UdpTransport,
    endpoint: Endpoint,
    app: A,
    shutdown: impl Future<Output = ()>,
    commands: mpsc::Receiver<Command<A>>,
) -> A {
    run_worker(transport, endpoint, app, shutdown, commands, None).await
}

/// The next datagram another worker handed over; never, without workers.
async fn handed(shard: &mut Option<Shard>) -> Option<crate::workers::Handed> {
    match shard {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// [`run_with_commands`] as one worker of `serve --workers N` (`shard`; `None` is the one-worker
/// loop): a datagram whose Call-ID another worker owns goes there ([`Shard::dispatch`]), and the
/// datagrams handed to this one are taken like received ones.
pub async fn run_worker<A: Application>(
    mut transport: UdpTransport,
    mut endpoint: Endpoint,
    mut app: A,
    shutdown: impl Future<Output = ()>,
    mut commands: mpsc::Receiver<Command<A>>,
    mut shard: Option<Shard>,
) -> A {
    tokio::pin!(shutdown);
    let (tx, mut media_rx) = mpsc::channel::<Batch>(1024);
    let mut sockets = MediaSockets { sockets: HashMap::default(), readers: Readers::per_core(tx, app.relay_shards()), send_drops: 0 };
    // Ports at random, from the OS CSPRNG: a stranger cannot guess the next call's relay port. A
    // few spare pairs stay bound, so a port another process holds costs a spare, not a call.
    let mut media = Media::new(IdGen::from_os()).with_spares(SPARE_PAIRS);
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    let mut stopping: Option<tokio::time::Instant> = None;
    // Reused across wake-ups: the datagrams of one receive batch, the transmits of one flush.
    let mut inbox: Vec<(Bytes, SocketAddr)> = Vec::with_capacity(udp::BATCH);
    let mut outbox: Vec<Transmit> = Vec::with_capacity(udp::BATCH);
    app.start(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, Instant::now());
    // Whatever the application queued before the loop (e.g. an INVITE) goes out now.
    flush(&mut transport, &mut endpoint, &mut media, &mut sockets, &mut app, &mut outbox, Instant::now()).await;
    // One timer for the whole loop, moved only when the deadline changes. A new `Sleep` per
    // wake-up is registered with the runtime's timer wheel and removed again each time, and a
    // registration earlier than the wheel's last computed wake-up makes tokio wake its own driver
    // (an `eventfd` write and one more `epoll_wait`), which the proxy paid about every other call.
    let timer = tokio::time::sleep_until(far());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        if app.is_done() {
            break;
        }
        let deadline = [endpoint.poll_timeout(), app.poll_timeout()].into_iter().flatten().min();
        if deadline != armed || (timer.is_elapsed() && deadline.is_none()) {
            armed = deadline;
            timer.as_mut().reset(deadline.map(tokio::time::Instant::from_std).unwrap_or_else(far));
        }
        let grace = stopping.unwrap_or_else(far);
        tokio::select! {
            // Every queued datagram (up to a batch) is taken before the flush, so a burst is
            // handled in one wake-up and answered in one send.
            r = transport.recv_batch(&mut inbox) => {
                let now = Instant::now();
                if let Err(e) = r {
                    tracing::debug!(error = %e, "recv failed");
                }
                for (bytes, src) in inbox.drain(..) {
                    let bytes = match &shard {
                        Some(s) => match s.dispatch(bytes, src) {
                            Some(mine) => mine,
                            None => continue,
                        },
                        None => bytes,
                    };
                    endpoint.handle_datagram(src, bytes, now);
                }
                // ICMP errors the socket reported (UdpTransport::report_unreachable).
                for dest in transport.take_unreachable() {
                    endpoint.handle_unreachable(dest, now);
                }
            }
            Some((bytes, src)) = handed(&mut shard) => {
                let now = Instant::now();
                endpoint.handle_datagram(src, bytes, now);
                // The rest of what is queued, up to a batch, in the same wake-up.
                for _ in 1..udp::BATCH {
                    let Some((bytes, src)) = shard.as_mut().and_then(Shard::try_recv) else { break };
                    endpoint.handle_datagram(src, bytes, now);
                }
            }
            // One message per reader wake-up; every batch already queued is taken too.
            Some(batch) = media_rx.recv() => {
                let now = Instant::now();
                let mut next = Some(batch);
                while let Some(batch) = next {
                    for (flow, src, bytes) in batch {
                        app.handle_media(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, flow, src, bytes, now);
                    }
                    next = media_rx.try_recv().ok();
                }
            }
            Some(command) = commands.recv() => {
                command(&mut app, &mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, Instant::now());
            }
            _ = &mut timer => {
                let now = Instant::now();
                endpoint.handle_timeout(now);
                app.handle_timeout(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, now);
            }
            _ = &mut shutdown, if stopping.is_none() => {
                tracing::info!("shutting down");
                stopping = Some(tokio::time::Instant::now() + app.shutdown_grace());
                app.shutdown(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, Instant::now());
            }
            _ = tokio::time::sleep_until(grace), if stopping.is_some() => {
                tracing::warn!("shutdown grace period over; leaving calls");
                break;
            }
        }
        flush(&mut transport, &mut endpoint, &mut media, &mut sockets, &mut app, &mut outbox, Instant::now()).await;
        rebind(&mut transport, &mut endpoint, &mut media, &mut sockets, &mut app, &mut outbox).await;
    }
    // The readers stop and let go of their sockets (a reader waiting on the channel sees it closed).
    drop(media_rx);
    for flow in sockets.sockets.keys().copied().collect::<Vec<_>>() {
        sockets.close(flow);
    }
    let (wakeups, datagrams) = sockets.readers.stats();
    if datagrams > 0 {
        // Per reader thread: datagrams it relayed itself, and those its sockets refused.
        let lanes = sockets.readers.forwarded();
        let forwarded: Vec<u64> = lanes.iter().map(|l| l.0).collect();
        let dropped: u64 = lanes.iter().map(|l| l.1).sum();
        tracing::info!(wakeups, datagrams, ?forwarded, dropped, "media readers at exit");
    }
    if sockets.send_drops > 0 {
        tracing::info!(drops = sockets.send_drops, "media datagrams dropped on busy sockets");
    }
    // What the per-source limit and the stateless answers did (bench/flood.sh reads this line);
    // silent for applications that use neither (the softphone).
    let s = endpoint.stats();
    if s.rate_limited + s.stateless_answers + s.absorbed_acks == 0 {
        return app;
    }
    tracing::info!(
        "sip counters at exit: datagrams={} rate_limited={} stateless_answers={} absorbed_acks={} bad_requests={} refused_requests={} stray_responses={}",
        s.datagrams,
        s.rate_limited,
        s.stateless_answers,
        s.absorbed_acks,
        s.bad_requests,
        s.refused_requests,
        s.stray_responses
    );
    app
}
/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives early is not lost.
pub fn interrupted() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut i), Ok(mut t)) => {
                    tokio::select! {
                        _ = i.recv() => {}
                        _ = t.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
