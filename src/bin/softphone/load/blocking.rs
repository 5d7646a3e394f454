//! The plain blocking loop a load worker runs on (I/O): one batched UDP socket
//! ([`SyncUdp`]), no runtime.
//!
//! It plays the driver's part ([`switchboard::driver::run`]) for an [`Application`] without media,
//! in rounds: wait for datagrams (at most until the next timer is due), feed every queued one to
//! the endpoint, run the due timers, drain the endpoint (events to the application, datagrams
//! gathered), and send what the round produced. On Linux a round is one `recvmmsg` (which waits
//! for the first datagram and takes the others queued behind it) and at most one `sendmmsg`, the
//! same batching as the service's driver (BENCHMARKS.md "softphone load, batched").
//!
//! Paced (`softphone load --tick-ms P`): a round starts every P ms instead of at each arrival.
//! The thread sleeps to the next tick, takes every datagram queued meanwhile without waiting
//! (`recvmmsg` on the socket in non-blocking mode), runs what is due, and sends all of it in one
//! `sendmmsg`: one wake-up per tick however many calls it serves. Every answer and timer then waits
//! up to P ms (a call's setup time grows by about P/2 on average and up to P); T1 is 500 ms, so
//! the transaction timers keep their meaning (BENCHMARKS.md "softphone load against the floor
//! (floor16)").

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard::application::{Application, Io, Media};
use switchboard::endpoint::Endpoint;
use switchboard::transport::udp::BATCH;
use switchboard::transport::udp_sync::SyncUdp;
use switchboard::transport::Transmit;

/// Longest wait for a datagram before the stop flag is checked again.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// After `stop`, how long live calls get to end (the driver's grace period too).
const GRACE: Duration = Duration::from_secs(5);

fn wall_clock() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// How long to wait for a datagram: until `due`, rounded up to a whole millisecond (so the
/// socket's timeout, set again only when it changes, takes few values), within 1 ms..[`MAX_WAIT`].
fn wait_until(due: Option<Instant>, now: Instant) -> Duration {
    let left = due.map_or(MAX_WAIT, |at| at.saturating_duration_since(now));
    let ms = u64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    Duration::from_millis(ms).clamp(Duration::from_millis(1), MAX_WAIT)
}

/// Hands the endpoint's events to the application and gathers what it queued to send into
/// `outbox`, until both are empty; then sends `outbox` (one `sendmmsg` per [`BATCH`]).
fn flush<A: Application>(
    socket: &SyncUdp,
    endpoint: &mut Endpoint,
    media: &mut Media,
    app: &mut A,
    outbox: &mut Vec<Transmit>,
    now: Instant,
) {
    loop {
        let mut progressed = false;
        while let Some(ev) = endpoint.poll_event() {
            app.handle_event(&mut Io { endpoint: &mut *endpoint, media: &mut *media, wall_clock: wall_clock() }, ev, now);
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
    // A full socket buffer or an ICMP error loses a datagram; the transaction layer retransmits,
    // exactly as after a loss in the network.
    socket.send_batch(outbox, |t, e| tracing::debug!(dest = %t.dest, error = %e, "send failed"));
    outbox.clear();
}

/// Longest tick of the paced loop: a longer one would hold every answer and timer for too long.
pub(crate) const MAX_TICK: Duration = Duration::from_millis(100);

/// Waits for the next round. Unpaced (`tick` `None`): until a datagram arrives or the next timer is
/// due. Paced: sleeps to the next tick after `*next_tick` (a tick already past is not slept for,
/// and a loop more than a tick behind starts again from now), then takes what is queued.
fn receive(
    socket: &mut SyncUdp,
    inbox: &mut Vec<(Bytes, SocketAddr)>,
    due: Option<Instant>,
    tick: Option<Duration>,
    next_tick: &mut Instant,
) {
    let result = match tick {
        None => socket.recv_batch(inbox, wait_until(due, Instant::now())),
        Some(tick) => {
            let now = Instant::now();
            if *next_tick + tick < now {
                *next_tick = now;
            }
            std::thread::sleep(next_tick.saturating_duration_since(now));
            *next_tick += tick;
            // A full batch means more may be queued.
            loop {
                match socket.recv_ready(inbox) {
                    Ok(BATCH) => {}
                    other => break other,
                }
            }
        }
    };
    // ICMP port unreachable from an earlier send shows up here on Linux; keep going.
    if let Err(e) = result {
        tracing::debug!(error = %e, "recv failed");
    }
}

/// Runs `app` on `socket` until it is done; `stop` asks it to shut down (then at most [`GRACE`]).
/// `tick`: the paced loop's period (see the module docs), `None` for a round per arrival.
/// Returns the application.
pub(crate) fn run<A: Application>(mut socket: SyncUdp, mut endpoint: Endpoint, mut app: A, stop: &AtomicBool, tick: Option<Duration>) -> A {
    let mut inbox: Vec<(Bytes, SocketAddr)> = Vec::with_capacity(BATCH);
    let mut outbox: Vec<Transmit> = Vec::with_capacity(BATCH);
    let mut stopping: Option<Instant> = None;
    // Load calls carry no media: every bind fails, so nothing is ever sent.
    let mut media = Media::disabled();
    let now = Instant::now();
    let tick = tick.map(|t| t.clamp(Duration::from_millis(1), MAX_TICK));
    let mut next_tick = now;
    app.start(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, now);
    flush(&socket, &mut endpoint, &mut media, &mut app, &mut outbox, now);
    while !app.is_done() {
        if stopping.is_none() && stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            stopping = Some(now + GRACE);
            app.shutdown(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, now);
            flush(&socket, &mut endpoint, &mut media, &mut app, &mut outbox, now);
        }
        if stopping.is_some_and(|until| Instant::now() >= until) {
            tracing::debug!("grace period over; leaving calls");
            break;
        }
        let due = [endpoint.poll_timeout(), app.poll_timeout()].into_iter().flatten().min();
        receive(&mut socket, &mut inbox, due, tick, &mut next_tick);
        let now = Instant::now();
        for (bytes, src) in inbox.drain(..) {
            endpoint.handle_datagram(src, bytes, now);
        }
        let due = [endpoint.poll_timeout(), app.poll_timeout()].into_iter().flatten().min().is_some_and(|at| at <= now);
        if due {
            endpoint.handle_timeout(now);
            app.handle_timeout(&mut Io { endpoint: &mut endpoint, media: &mut media, wall_clock: wall_clock() }, now);
        }
        flush(&socket, &mut endpoint, &mut media, &mut app, &mut outbox, now);
    }
    // The endpoint's lingering transactions are left to the process's exit (see
    // `LoadWorker::into_result`).
    std::mem::forget(endpoint);
    app
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_next_timer_in_whole_milliseconds_within_bounds() {
        let now = Instant::now();
        assert_eq!(wait_until(None, now), MAX_WAIT);
        assert_eq!(wait_until(Some(now), now), Duration::from_millis(1));
        assert_eq!(wait_until(Some(now + Duration::from_micros(1_200)), now), Duration::from_millis(2));
        assert_eq!(wait_until(Some(now + Duration::from_secs(5)), now), MAX_WAIT);
    }
}
