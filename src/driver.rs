//! The tokio driver (I/O): one task owns the SIP socket, the media sockets, the clock and the sans-IO
//! [`Endpoint`], and runs an [`Application`] on top. Timers of every transaction, dialog and media
//! flow live in the endpoint's and the application's own structures; the driver sleeps until the
//! earliest of them. Media sockets each have a small reader task that forwards datagrams to the
//! driver; sending is a non-blocking `try_send_to` from the driver task.

use crate::collections::HashMap;
use crate::endpoint::{Endpoint, EndpointEvent};
use crate::transport::udp::UdpTransport;
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Identifies one bound media socket (an RTP or RTCP port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);

/// Media sockets as the application sees them: bind, send, close. The driver implements it over
/// tokio sockets; tests can implement it in memory.
pub trait MediaIo {
    /// Binds a UDP socket on `ip` at a free even port of `ports` (RTP convention, RFC 3550 §11;
    /// the driver picks it at random, so a stranger cannot guess the next call's relay port), and,
    /// when `with_rtcp`, the odd port above it too. Returns the RTP flow (and the RTCP flow) with
    /// the RTP address.
    fn bind_pair(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) -> io::Result<(FlowId, Option<FlowId>, SocketAddr)>;
    /// Sends one datagram from `flow` (dropped and counted if the socket is busy).
    fn send(&mut self, flow: FlowId, dest: SocketAddr, payload: &[u8]);
    /// Closes a flow; its port is free again.
    fn close(&mut self, flow: FlowId);
}

/// What the application may use while it handles an input: the endpoint and the media sockets.
#[allow(missing_debug_implementations)]
pub struct Io<'a> {
    /// The SIP endpoint.
    pub endpoint: &'a mut Endpoint,
    /// Media sockets.
    pub media: &'a mut dyn MediaIo,
    /// Wall-clock time (since the Unix epoch) at the `now` of the current input, for RTCP
    /// timestamps and call records; the sans-IO layers read no clock themselves.
    pub wall_clock: std::time::Duration,
}

fn wall_clock() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// The logic above the endpoint (a UAS, a softphone, the service), also sans-IO: it reacts to
/// endpoint events, media datagrams and its own timers by calling endpoint and media commands.
pub trait Application {
    /// Called once when the driver starts, with I/O available (e.g. to bind media and dial).
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        let _ = (io, now);
    }
    /// An event from the endpoint.
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant);
    /// A datagram arrived on media flow `flow`.
    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: Bytes, now: Instant) {
        let _ = (io, flow, source, payload, now);
    }
    /// The application's own timers (answer delays, call durations, media pacing).
    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant);
    /// The application's next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Asked to stop (Ctrl-C): end live calls (BYE) and report when done via [`Application::is_done`].
    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant);
    /// True when the driver may return.
    fn is_done(&self) -> bool;
    /// A local address the application wants its SIP socket moved to (a phone that changed
    /// network, issue 14 point 7; port 0 picks a free one). The driver asks after every input,
    /// binds it, drops the old socket and answers with [`Application::moved`].
    fn poll_move(&mut self) -> Option<SocketAddr> {
        None
    }
    /// The SIP socket now listens and sends at `local` (or binding failed, and the old socket
    /// stays).
    fn moved(&mut self, io: &mut Io<'_>, local: io::Result<SocketAddr>, now: Instant) {
        let _ = (io, local, now);
    }
}

/// The driver's media sockets.
#[derive(Debug)]
struct MediaSockets {
    /// Per flow: a std handle of the socket for sending (a plain non-blocking `send_to`, which
    /// works from the first packet; tokio's `try_send_to` refuses until the reactor has seen the
    /// new socket writable) and the reader task.
    sockets: HashMap<FlowId, (std::net::UdpSocket, tokio::task::JoinHandle<()>)>,
    next: u32,
    tx: mpsc::Sender<(FlowId, SocketAddr, Bytes)>,
    /// Datagrams dropped because a socket was busy.
    send_drops: u64,
    /// The addresses of our own sockets, so a port search skips them without a system call.
    /// Starting every search at the bottom of the range made each new call try (socket, bind,
    /// close) every port still held by a recent call first: quadratic, and at 2,000 calls/s to
    /// the echo user it pegged the core on socket churn.
    bound: crate::collections::HashSet<SocketAddr>,
}

/// Random tries at a port pair before the search walks the range from a random start.
const RANDOM_TRIES: u32 = 16;

/// The even ports of a search: `first + 2 * slot` for `slot < slots`.
#[derive(Debug, Clone, Copy)]
struct EvenPorts {
    first: u16,
    slots: u32,
}

impl EvenPorts {
    /// The even ports of `ports` that leave room for an RTCP neighbour when `with_rtcp`.
    fn of(ports: &RangeInclusive<u16>, with_rtcp: bool) -> Option<EvenPorts> {
        let (start, end) = (*ports.start(), *ports.end());
        let first = start.checked_add(start % 2)?;
        let last = if with_rtcp { end.checked_sub(1)? } else { end };
        (first <= last).then(|| EvenPorts { first, slots: u32::from((last - first) / 2) + 1 })
    }

    fn port(self, slot: u32) -> u16 {
        // slot < slots, so this stays within `first..=last`.
        self.first + ((slot % self.slots) * 2) as u16
    }

    /// The order a search tries ports in: [`RANDOM_TRIES`] random slots (cheap even when the range
    /// is mostly taken: each try succeeds with the free share's odds), then every slot once from
    /// a random start, so a free pair is always found. Each port costs a hash lookup, and a bind
    /// only if no socket of ours holds it.
    fn search(self) -> impl Iterator<Item = u16> {
        use rand::RngExt;
        let mut rng = rand::rng();
        let start = rng.random_range(0..self.slots);
        let random = (0..RANDOM_TRIES.min(self.slots)).map(move |_| rng.random_range(0..self.slots));
        random.chain((0..self.slots).map(move |i| start.wrapping_add(i) % self.slots)).map(move |slot| self.port(slot))
    }
}

impl MediaSockets {
    fn open(&mut self, addr: SocketAddr) -> io::Result<(FlowId, SocketAddr)> {
        let std_socket = std::net::UdpSocket::bind(addr)?;
        std_socket.set_nonblocking(true)?;
        let sender = std_socket.try_clone()?;
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        let local = socket.local_addr()?;
        self.next += 1;
        let flow = FlowId(self.next);
        let reader = socket.clone();
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, src)) = reader.recv_from(&mut buf).await {
                if tx.send((flow, src, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    break;
                }
            }
        });
        self.sockets.insert(flow, (sender, task));
        self.bound.insert(local);
        Ok((flow, local))
    }
}

impl MediaIo for MediaSockets {
    fn bind_pair(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) -> io::Result<(FlowId, Option<FlowId>, SocketAddr)> {
        if let Some(even) = EvenPorts::of(&ports, with_rtcp) {
            for port in even.search() {
                let ours = |p: u16| self.bound.contains(&SocketAddr::new(ip, p));
                if ours(port) || (with_rtcp && ours(port + 1)) {
                    continue;
                }
                let Ok((rtp, local)) = self.open(SocketAddr::new(ip, port)) else { continue };
                let rtcp = if with_rtcp {
                    match self.open(SocketAddr::new(ip, port + 1)) {
                        Ok((rtcp, _)) => Some(rtcp),
                        Err(_) => {
                            self.close(rtp);
                            continue;
                        }
                    }
                } else {
                    None
                };
                return Ok((rtp, rtcp, local));
            }
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, format!("no free media port pair in {}-{}", ports.start(), ports.end())))
    }

    fn send(&mut self, flow: FlowId, dest: SocketAddr, payload: &[u8]) {
        if let Some((socket, _)) = self.sockets.get(&flow) {
            if socket.send_to(payload, dest).is_err() {
                self.send_drops += 1;
            }
        }
    }

    fn close(&mut self, flow: FlowId) {
        if let Some((socket, task)) = self.sockets.remove(&flow) {
            if let Ok(local) = socket.local_addr() {
                self.bound.remove(&local);
            }
            task.abort();
        }
    }
}

/// Drains the endpoint: events to the application, datagrams to the SIP socket.
async fn flush<A: Application>(transport: &UdpTransport, endpoint: &mut Endpoint, media: &mut MediaSockets, app: &mut A, now: Instant) {
    loop {
        let mut progressed = false;
        while let Some(ev) = endpoint.poll_event() {
            app.handle_event(&mut Io { endpoint: &mut *endpoint, media: &mut *media, wall_clock: wall_clock() }, ev, now);
            progressed = true;
        }
        while let Some(t) = endpoint.poll_transmit() {
            if let Err(e) = transport.send(&t).await {
                tracing::debug!(dest = %t.dest, error = %e, "send failed");
            }
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
}

/// Moves the SIP socket where the application asks ([`Application::poll_move`]), then sends what
/// it queued in answer.
async fn rebind<A: Application>(transport: &mut UdpTransport, endpoint: &mut Endpoint, media: &mut MediaSockets, app: &mut A) {
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
        flush(transport, endpoint, media, app, now).await;
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
    mut transport: UdpTransport,
    mut endpoint: Endpoint,
    mut app: A,
    shutdown: impl Future<Output = ()>,
    mut commands: mpsc::Receiver<Command<A>>,
) -> A {
    tokio::pin!(shutdown);
    let (tx, mut media_rx) = mpsc::channel(1024);
    let mut media = MediaSockets { sockets: HashMap::default(), next: 0, tx, send_drops: 0, bound: Default::default() };
    let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
    let mut stopping: Option<tokio::time::Instant> = None;
    app.start(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, Instant::now());
    // Whatever the application queued before the loop (e.g. an INVITE) goes out now.
    flush(&transport, &mut endpoint, &mut media, &mut app, Instant::now()).await;
    loop {
        if app.is_done() {
            break;
        }
        let deadline = [endpoint.poll_timeout(), app.poll_timeout()].into_iter().flatten().min();
        let sleep_until = deadline.map(tokio::time::Instant::from_std).unwrap_or_else(far);
        let grace = stopping.unwrap_or_else(far);
        tokio::select! {
            r = transport.recv() => {
                let now = Instant::now();
                match r {
                    Ok((bytes, src)) => endpoint.handle_datagram(src, bytes, now),
                    Err(e) => tracing::debug!(error = %e, "recv failed"),
                }
                // Take whatever else is queued before flushing, so bursts are handled together.
                for _ in 0..64 {
                    match transport.try_recv() {
                        Ok(Some((bytes, src))) => endpoint.handle_datagram(src, bytes, now),
                        _ => break,
                    }
                }
            }
            Some((flow, src, bytes)) = media_rx.recv() => {
                let now = Instant::now();
                app.handle_media(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, flow, src, bytes, now);
                while let Ok((flow, src, bytes)) = media_rx.try_recv() {
                    app.handle_media(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, flow, src, bytes, now);
                }
            }
            Some(command) = commands.recv() => {
                command(&mut app, &mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, Instant::now());
            }
            _ = tokio::time::sleep_until(sleep_until) => {
                let now = Instant::now();
                endpoint.handle_timeout(now);
                app.handle_timeout(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, now);
            }
            _ = &mut shutdown, if stopping.is_none() => {
                tracing::info!("shutting down");
                stopping = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(5));
                app.shutdown(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, Instant::now());
            }
            _ = tokio::time::sleep_until(grace), if stopping.is_some() => {
                tracing::warn!("shutdown grace period over; leaving calls");
                break;
            }
        }
        flush(&transport, &mut endpoint, &mut media, &mut app, Instant::now()).await;
        rebind(&mut transport, &mut endpoint, &mut media, &mut app).await;
    }
    if media.send_drops > 0 {
        tracing::info!(drops = media.send_drops, "media datagrams dropped on busy sockets");
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
    for flow in media.sockets.keys().copied().collect::<Vec<_>>() {
        media.close(flow);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_search_covers_every_even_port_in_range_and_starts_at_random() {
        let even = EvenPorts::of(&(30001..=30011), true).unwrap();
        // 30002..=30010: the last even port leaves room for its RTCP neighbour.
        let order: Vec<u16> = even.search().collect();
        assert!(order.iter().all(|p| p % 2 == 0 && (30002..=30010).contains(p)));
        let walk = &order[RANDOM_TRIES.min(5) as usize..];
        assert_eq!(walk.iter().copied().collect::<std::collections::BTreeSet<_>>().len(), 5, "{order:?}");
        assert_eq!(EvenPorts::of(&(30000..=30000), true).map(|e| e.slots), None);
        assert_eq!(EvenPorts::of(&(30000..=30000), false).map(|e| e.slots), Some(1));
        assert_eq!(EvenPorts::of(&(65534..=65535), true).map(|e| e.search().collect::<Vec<_>>()), Some(vec![65534, 65534]));
        // A large range: the first pick is not always the same (chance of a false failure: 5000^-19).
        let wide = EvenPorts::of(&(30000..=39999), true).unwrap();
        let firsts: std::collections::HashSet<u16> = (0..20).filter_map(|_| wide.search().next()).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }
}
