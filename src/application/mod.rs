//! The application contract (sans-IO): what runs above the [`Endpoint`] (a UAS, a softphone, the
//! service) and what it may use while it handles an input.
//!
//! An [`Application`] reacts to endpoint events, media datagrams and its own timers. It gets an
//! [`Io`]: the endpoint (SIP commands), the [`Media`] flows and the wall clock of the input. It
//! never touches a socket, tokio or the OS clock; a driver (the tokio one in `driver`, the load
//! workers' blocking loop, a test's in-memory network) feeds it and carries out what it asked.
//!
//! # Media flows
//!
//! [`Media`] owns the [`PortAllocator`]: [`Media::bind_pair`] picks the port pair at once (at
//! random in the range) and returns the flows and the address, so the caller can put the port in
//! its SDP in the same handler; no round trip to learn a port. Binding, sending and closing are
//! queued as [`MediaOutput`]s, which the driver drains with [`Media::poll_output`] after every
//! input, before it sends the endpoint's datagrams (so a port is bound before the SDP that names
//! it leaves) and before its next wait.
//!
//! # When a bind fails
//!
//! Another process may hold the port the allocator picked (on a host whose ephemeral port range
//! overlaps the media range, any outgoing connection may). The driver then calls
//! [`Media::handle_bind_failed`]; the allocator skips that port from then on.
//!
//! - With spares ([`Media::with_spares`], as the tokio driver runs it), [`Media::bind_pair`] hands
//!   out pairs the driver has already bound, so the failure hits a spare: [`Media`] drops it and
//!   picks another, and no call notices.
//! - Otherwise (the first bind from a range, a burst that used every spare, [`Media::bind_exact`]
//!   after a restart) the failed flow is the application's, and the driver also calls
//!   [`Application::handle_bind_failed`]. The port is already in an SDP on its way (it was chosen
//!   without a round trip), so the application ends the call that owned the flow rather than
//!   retry on another port (which would take a re-INVITE): the B2BUA ends both legs (reason
//!   `relay-port-taken`), the echo UAS and the softphone hang up.

mod media;
mod ports;

pub use media::{Media, MediaOutput};
pub use ports::{NoFreePort, PortAllocator};

use crate::endpoint::{Endpoint, EndpointEvent};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Identifies one media flow (an RTP or RTCP port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);

/// What the application may use while it handles an input: the endpoint and the media flows.
#[allow(missing_debug_implementations)]
pub struct Io<'a> {
    /// The SIP endpoint.
    pub endpoint: &'a mut Endpoint,
    /// Media flows: ports, binds, sends.
    pub media: &'a mut Media,
    /// Wall-clock time (since the Unix epoch) at the `now` of the current input, for RTCP
    /// timestamps and call records; the sans-IO layers read no clock themselves.
    pub wall_clock: Duration,
}

/// The logic above the endpoint (a UAS, a softphone, the service), sans-IO: it reacts to
/// endpoint events, media datagrams and its own timers by calling endpoint and media commands.
///
/// Run loop of a driver: give one input (`start`, `handle_*`, `shutdown`), then drain
/// [`Media::poll_output`] (carrying out binds, sends and closes; a failed bind is one more input,
/// [`Application::handle_bind_failed`]), then the endpoint's `poll_event` (each one an input) and
/// `poll_transmit`, until all are empty; then sleep until the earliest of the endpoint's and
/// [`Application::poll_timeout`].
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
    /// The relay's shards, if the application relays media in lanes: the driver's reader of
    /// lane `i` forwards the datagrams of shard `i`'s calls itself (`crate::relay::ShardedRelay`),
    /// and hands the others to [`Application::handle_media`]. Asked once, at start.
    fn relay_shards(&self) -> Option<crate::relay::RelayShards> {
        None
    }
    /// The driver could not bind `flow` (another process holds the port; [`Media`] has already
    /// forgotten the flow). The application ends the call that owned it (see the module doc).
    fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) {
        let _ = (io, flow, now);
    }
    /// The application's own timers (answer delays, call durations, media pacing).
    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant);
    /// The application's next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Asked to stop (Ctrl-C): end live calls (BYE) and report when done via [`Application::is_done`].
    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant);
    /// True when the driver may return.
    fn is_done(&self) -> bool;
    /// How long after [`Application::shutdown`] the driver waits for [`Application::is_done`]
    /// before it leaves anyway (an application that drains for longer says so here).
    fn shutdown_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(5)
    }
    /// A local address the application wants its SIP socket moved to (a phone that changed
    /// network, issue 14 point 7; port 0 picks a free one). The driver asks after every input,
    /// binds it, drops the old socket and answers with [`Application::moved`].
    fn poll_move(&mut self) -> Option<SocketAddr> {
        None
    }
    /// The SIP socket now listens and sends at `local` (or binding failed, and the old socket
    /// stays).
    fn moved(&mut self, io: &mut Io<'_>, local: std::io::Result<SocketAddr>, now: Instant) {
        let _ = (io, local, now);
    }
}
