//! The plain blocking loop a load worker runs on (I/O): one std UDP socket, no runtime.
//!
//! It plays the driver's part ([`switchboard::driver::run`]) for an [`Application`] without media:
//! feed a datagram or the due timers, drain the endpoint (events to the application, datagrams to
//! the socket), repeat. The socket waits at most [`POLL`] for a datagram, so timers fire at most
//! that late; a busy worker never waits at all. Measured against the tokio driver on the same
//! calls, this spends about a quarter less CPU per call (no epoll round and no failing `try_recv`
//! per wake-up), which on a loaded machine is call rate.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard::application::{Application, Io, Media};
use switchboard::endpoint::Endpoint;

/// Longest wait for a datagram before timers are checked again.
const POLL: Duration = Duration::from_millis(1);
/// After `stop`, how long live calls get to end (the driver's grace period too).
const GRACE: Duration = Duration::from_secs(5);

fn wall_clock() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// Sends what the endpoint queued and hands its events to the application, until both are empty.
fn flush<A: Application>(socket: &UdpSocket, endpoint: &mut Endpoint, media: &mut Media, app: &mut A, now: Instant) {
    loop {
        let mut progressed = false;
        while let Some(ev) = endpoint.poll_event() {
            app.handle_event(&mut Io { endpoint: &mut *endpoint, media: &mut *media, wall_clock: wall_clock() }, ev, now);
            progressed = true;
        }
        while let Some(t) = endpoint.poll_transmit() {
            // A full socket buffer or an ICMP error loses this datagram; the transaction layer
            // retransmits, exactly as after a loss in the network.
            if let Err(e) = socket.send_to(&t.payload, t.dest) {
                tracing::debug!(dest = %t.dest, error = %e, "send failed");
            }
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
}

/// Runs `app` on `socket` until it is done; `stop` asks it to shut down (then at most [`GRACE`]).
/// Returns the application. Fails only when the socket cannot be set up.
pub(crate) fn run<A: Application>(socket: UdpSocket, mut endpoint: Endpoint, mut app: A, stop: &AtomicBool) -> std::io::Result<A> {
    socket.set_read_timeout(Some(POLL))?;
    let mut buf = vec![0u8; switchboard::transport::udp::MAX_DATAGRAM];
    let mut stopping: Option<Instant> = None;
    // Load calls carry no media: every bind fails, so nothing is ever sent.
    let mut media = Media::disabled();
    let now = Instant::now();
    app.start(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, now);
    flush(&socket, &mut endpoint, &mut media, &mut app, now);
    while !app.is_done() {
        if stopping.is_none() && stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            stopping = Some(now + GRACE);
            app.shutdown(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, now);
            flush(&socket, &mut endpoint, &mut media, &mut app, now);
        }
        if stopping.is_some_and(|until| Instant::now() >= until) {
            tracing::debug!("grace period over; leaving calls");
            break;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, src)) => {
                let now = Instant::now();
                endpoint.handle_datagram(src, bytes::Bytes::copy_from_slice(&buf[..n]), now);
                flush(&socket, &mut endpoint, &mut media, &mut app, now);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            // ICMP port unreachable from an earlier send shows up here on Linux; keep going.
            Err(e) => tracing::debug!(error = %e, "recv failed"),
        }
        let now = Instant::now();
        let due = [endpoint.poll_timeout(), app.poll_timeout()].into_iter().flatten().min().is_some_and(|at| at <= now);
        if due {
            endpoint.handle_timeout(now);
            app.handle_timeout(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, now);
            flush(&socket, &mut endpoint, &mut media, &mut app, now);
        }
    }
    Ok(app)
}
