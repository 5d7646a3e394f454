//! The tokio driver (I/O): one task owns the UDP socket, the clock and the sans-IO [`Endpoint`], and
//! runs an [`Application`] on top. Timers of every transaction and call live in the endpoint's and
//! the application's own structures; the driver sleeps until the earliest of them.

use crate::endpoint::{Endpoint, EndpointEvent};
use crate::transport::udp::UdpTransport;
use std::future::Future;
use std::time::Instant;

/// The logic above the endpoint (a UAS, a softphone, the service), also sans-IO: it reacts to
/// endpoint events and its own timers by calling endpoint commands.
pub trait Application {
    /// An event from the endpoint.
    fn handle_event(&mut self, endpoint: &mut Endpoint, event: EndpointEvent, now: Instant);
    /// The application's own timers (answer delays, call durations, 2xx retransmission).
    fn handle_timeout(&mut self, endpoint: &mut Endpoint, now: Instant);
    /// The application's next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Asked to stop (Ctrl-C): end live calls (BYE) and report when done via [`Application::is_done`].
    fn shutdown(&mut self, endpoint: &mut Endpoint, now: Instant);
    /// True when the driver may return.
    fn is_done(&self) -> bool;
}

/// Drains the endpoint: events to the application, datagrams to the socket.
async fn flush<A: Application>(transport: &UdpTransport, endpoint: &mut Endpoint, app: &mut A, now: Instant) {
    loop {
        let mut progressed = false;
        while let Some(ev) = endpoint.poll_event() {
            app.handle_event(endpoint, ev, now);
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

/// Runs until the application is done. `shutdown` resolving asks the application to stop; after
/// that the loop goes on until the application says it is done (or the grace period ends). Returns the
/// application, so the caller can read what happened.
pub async fn run<A: Application>(mut transport: UdpTransport, mut endpoint: Endpoint, mut app: A, shutdown: impl Future<Output = ()>) -> A {
    tokio::pin!(shutdown);
    let mut stopping: Option<tokio::time::Instant> = None;
    // Whatever the application queued before the loop (e.g. an INVITE) goes out now.
    flush(&transport, &mut endpoint, &mut app, Instant::now()).await;
    loop {
        if app.is_done() {
            break;
        }
        let deadline = [endpoint.poll_timeout(), app.poll_timeout()].into_iter().flatten().min();
        let sleep_until = deadline
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
        let grace = stopping.unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
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
                flush(&transport, &mut endpoint, &mut app, now).await;
            }
            _ = tokio::time::sleep_until(sleep_until) => {
                let now = Instant::now();
                endpoint.handle_timeout(now);
                app.handle_timeout(&mut endpoint, now);
                flush(&transport, &mut endpoint, &mut app, now).await;
            }
            _ = &mut shutdown, if stopping.is_none() => {
                let now = Instant::now();
                tracing::info!("shutting down");
                stopping = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(5));
                app.shutdown(&mut endpoint, now);
                flush(&transport, &mut endpoint, &mut app, now).await;
            }
            _ = tokio::time::sleep_until(grace), if stopping.is_some() => {
                tracing::warn!("shutdown grace period over; leaving calls");
                break;
            }
        }
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
