//! The B2BUA's RTP relay, sans-IO: for every call, two legs (caller phone ↔ service ↔ callee
//! phone), each with its own relay port pair; every datagram from one leg's phone goes out of the
//! other leg's port to the other phone, payload unchanged (the service relays only when both legs
//! share a codec, so nothing is transcoded).
//!
//! ```text
//!  caller phone ──RTP──▶ caller.rtp flow ─┐           ┌─▶ callee.rtp flow ──RTP──▶ callee phone
//!               ◀──────────────────────── │  Relay    │ ◀────────────────────────
//!               ──RTCP─▶ caller.rtcp flow ┘ classify, └─▶ callee.rtcp flow ─RTCP─▶
//!                                           latch, count, block on hold
//! ```
//!
//! - **Latching** (RFC 4961 symmetric RTP, the "comedia" behaviour for phones behind NAT, made
//!   safe against theft as rtpengine's `--endpoint-learning=heuristic` does; rtpengine(8) and its
//!   `daemon/media_socket.c`): each of a leg's ports has a latch, the source its phone really
//!   sends from.
//!   - Until a port has latched, what goes to the phone goes to its SDP address only, never to
//!     whoever sent first.
//!   - Sources are ranked against the SDP: same IP and port, then same IP, then the IP the phone's
//!     SIP comes from ([`Relay::set_peer_ip`]; rtpengine cannot know it), then (RTCP only) the
//!     IP RTP is latched to, then any. A source with the SDP's IP and port latches at once. Otherwise
//!     the first packet opens a learning window of [`RelayConfig::learning`] (`rtp_learning_ms`,
//!     3 s by default, as rtpengine): a better-ranked source replaces the candidate, and when the
//!     window is over the best one latches (the NAT case: a private SDP address, packets from the
//!     NAT). The window starts with the first packet and not with the SDP: a callee's SDP comes
//!     long before it talks, and a window opened by the SDP would be over before the phone's
//!     first packet. A spray before the phone's first packet therefore only wins if the phone's
//!     own packets, within the window, rank no better. Meanwhile the best candidate's packets are
//!     relayed to the other phone only if it has the SDP's IP or the SIP IP: a stranger racing
//!     the phone's first packet cannot talk into the call (a NAT phone whose media leaves from
//!     another IP than its SIP is unheard for its first window).
//!   - Nothing is learned before both phones' SDP is known: neither phone can know where to send
//!     before the answer (the caller learns the relay's address from it, the callee sends once it
//!     has answered), so whatever arrives while the callee rings is a stranger's and is dropped.
//!     An early answer (an 18x with SDP, RFC 3960 early media) counts as the callee's SDP: from it
//!     on, both phones may send, and the same rules apply as after the answer.
//!     This keeps a spray from winning a whole window while the caller still waits for the answer.
//!   - Once latched, a packet from another source is dropped (counted as `stray`) and moves
//!     nothing while the latched source has sent within the last window (10 s at least for RTCP,
//!     which is sent every ~5 s), and never while the leg is on hold (its SDP not sendrecv, or
//!     with no address; only the SDP's exact address may latch then). After that silence, another
//!     source opens a window as above, passing nothing until it wins; the latched source sending
//!     again ends that window. One exception, off hold: a source that ranks strictly better than
//!     the latched one takes over at once, as it would have won the window (a stranger that won
//!     a window the phone did not send in never locks out the phone's own SDP address; whoever
//!     forges that address cannot receive what is sent to it).
//!   - RTCP learns the same way on its own latch, except that a source sharing its IP with
//!     neither the SDP, the SIP nor the RTP latch is never learned: phones send RTCP only every ~5 s,
//!     so a spray would otherwise win the RTCP window before the phone's first report.
//!   - A new SDP address (re-INVITE) restarts learning against that address; the
//!     same address or none (c=0.0.0.0) keeps the latch and counts it as heard, so a resumed
//!     phone has a whole window to talk again. Who may send a re-INVITE is the signalling
//!     layer's decision.
//!   - Window ends need no timer: a latch settles at the next datagram of either leg.
//! - **Classification** (RFC 5761 §4): version 2 with a second octet of 192-223 is RTCP; otherwise a
//!   well-formed RTP header on the RTP port is RTP; anything else (STUN, garbage) is dropped and
//!   counted. RTCP on the RTP port is multiplexed RTCP and goes to the other leg's RTCP destination.
//! - **Hold** (RFC 3264 §8.4): RTP towards a phone that said it does not receive (recvonly from its
//!   side, inactive, or no address) is dropped and counted as `blocked`; RTCP still passes.
//! - **Statistics**: per leg, RFC 3550 A.1/A.3/A.8 through [`crate::media::stats::ReceiverStats`];
//!   a new SSRC starts a new stream instead of counting the jump as loss.
//! - **Inactivity**: a leg expected to send that sends no RTP for [`RelayConfig::inactivity`] is
//!   reported once by [`Relay::handle_timeout`]; one timer heap serves all relays.
//!
//! # Run loop
//!
//! Inputs are [`Relay::insert`], [`Relay::set_remote`] (after every SDP of a leg, offer or
//! answer: the latches are ranked against it), [`Relay::set_peer_ip`] (where the leg's SIP comes
//! from), [`Relay::handle_datagram`] (every datagram on a
//! flow the relay [`Relay::owns`], with the time it arrived: send what it returns with
//! `Media::send`) and [`Relay::handle_timeout`] once [`Relay::poll_timeout`] is due. The deadline
//! may be early (an early call does nothing visible), never late; learning windows need no
//! deadline (they settle on the next datagram). Times passed in must not go backwards. The relay
//! owns no socket: [`Relay::remove`] returns the figures and the caller closes the flows. Relay
//! ports should be hard to guess: `application::Media::bind_pair` draws them at random.
//!
//! # Lanes
//!
//! [`ShardedRelay`] (`shards.rs`) splits the relay by port into lanes, one [`Relay`] each, so that
//! several threads forward at once, each the calls of its lane, with the same rules; the B2BUA
//! drives it through the same interface.

mod classify;
mod latch;
mod leg;
mod shards;
mod timer;

#[cfg(test)]
mod latch_tests;

use crate::application::FlowId;
use crate::collections::HashMap;
use classify::{classify, Kind, Port};
use leg::LegState;
pub use shards::{lane_of, RelayShards, Shard, ShardedRelay};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use timer::{Entry, Timers};

/// Settings of a [`Relay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayConfig {
    /// How long a leg expected to send may go without RTP before it is reported; `None`: never.
    pub inactivity: Option<Duration>,
    /// The learning window (`rtp_learning_ms`): how long sources are ranked before one that does
    /// not match the SDP latches, and how long a latched source may be silent before another may
    /// be learned. See the module doc.
    pub learning: Duration,
}

/// rtpengine's learning window: 3 s.
pub const DEFAULT_LEARNING: Duration = Duration::from_secs(3);

impl Default for RelayConfig {
    /// Inactivity after 30 s; a 3 s learning window.
    fn default() -> Self {
        RelayConfig { inactivity: Some(Duration::from_secs(30)), learning: DEFAULT_LEARNING }
    }
}

/// Names one relayed call (chosen by the caller of [`Relay::insert`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u64);

/// One side of a relayed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The phone that sent the INVITE.
    Caller,
    /// The phone the service called.
    Callee,
}

impl Leg {
    /// The opposite leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::Caller => Leg::Callee,
            Leg::Callee => Leg::Caller,
        }
    }
}

/// The relay's ports for one leg, as bound with `application::Media::bind_pair`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegPorts {
    /// The RTP flow this leg's phone sends to.
    pub rtp: FlowId,
    /// The RTCP flow (RTP port + 1), or `None` when RTCP is multiplexed on the RTP port.
    pub rtcp: Option<FlowId>,
    /// The relay's RTP address shown to this leg's phone in SDP.
    pub local: SocketAddr,
}

/// What a leg's phone declared in its latest SDP (RFC 4566 c=/m=/a=rtcp, RFC 3264 §6.1 direction
/// as seen from that phone).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteMedia {
    /// Its RTP address; `None`: none yet, or c=0.0.0.0 (hold, RFC 3264 §8.4). An unspecified IP or
    /// port 0 counts as `None`.
    pub rtp: Option<SocketAddr>,
    /// Its RTCP address: a=rtcp (RFC 3605), else RTP port + 1. Equal to `rtp` for a=rtcp-mux.
    pub rtcp: Option<SocketAddr>,
    /// It sends RTP (sendrecv or sendonly).
    pub sends: bool,
    /// It receives RTP (sendrecv or recvonly).
    pub receives: bool,
    /// RTP clock rate of its audio payload type, for jitter (8000 for G.711; 0 means 8000).
    pub clock_rate: u32,
}

impl RemoteMedia {
    /// A sendrecv G.711 phone at `rtp`, with RTCP on the next port.
    pub fn sendrecv(rtp: SocketAddr) -> RemoteMedia {
        let rtcp = rtp.port().checked_add(1).map(|p| SocketAddr::new(rtp.ip(), p));
        RemoteMedia { rtp: Some(rtp), rtcp, sends: true, receives: true, clock_rate: crate::media::SAMPLE_RATE }
    }

    /// Unspecified addresses and a zero clock rate replaced by their meaning.
    fn normalized(self) -> RemoteMedia {
        let usable = |a: Option<SocketAddr>| a.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        let clock_rate = if self.clock_rate == 0 { crate::media::SAMPLE_RATE } else { self.clock_rate };
        RemoteMedia { rtp: usable(self.rtp), rtcp: usable(self.rtcp), clock_rate, ..self }
    }
}

/// Figures of one leg: what its phone sent to the relay and what became of it.
///
/// Every RTP packet accepted from the phone (`packets`) is either `forwarded` or `blocked`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegStats {
    /// RTP packets received from this leg's phone (its latched source).
    pub packets: u64,
    /// Their bytes, header and payload (the whole datagram).
    pub bytes: u64,
    /// Cumulative packets lost of this leg's stream (RFC 3550 A.3), summed over its SSRCs.
    pub lost: i64,
    /// Interarrival jitter of the current SSRC in milliseconds (RFC 3550 A.8); 0 before two
    /// packets of it arrived.
    pub jitter_ms: f64,
    /// RTP packets sent on to the other leg.
    pub forwarded: u64,
    /// RTP packets dropped because the other phone does not receive (hold) or has no address yet.
    pub blocked: u64,
    /// RTCP packets received from this leg's phone (latched source), multiplexed or not.
    pub rtcp_packets: u64,
    /// Of those, dropped because the other phone has no RTCP address yet.
    pub rtcp_dropped: u64,
    /// RTP or RTCP not taken as the phone's (another source while the latch holds, a candidate
    /// a better one replaced, anything before both SDPs are known): dropped.
    pub stray: u64,
    /// Datagrams that are neither RTP nor RTCP (STUN, garbage): dropped.
    pub non_rtp_dropped: u64,
    /// When the last RTP packet from the phone arrived.
    pub last_packet: Option<Instant>,
}

/// Where a flow belongs.
#[derive(Debug, Clone, Copy)]
struct FlowRef {
    slot: usize,
    leg: Leg,
    port: Port,
}

/// One relayed call.
#[derive(Debug)]
struct Call {
    id: RelayId,
    /// Unique over the relay's lifetime, so timer entries of a removed call never hit the call
    /// that reuses its slot.
    incarnation: u64,
    caller: LegState,
    callee: LegState,
}

impl Call {
    fn leg(&self, leg: Leg) -> &LegState {
        match leg {
            Leg::Caller => &self.caller,
            Leg::Callee => &self.callee,
        }
    }

    fn leg_mut(&mut self, leg: Leg) -> &mut LegState {
        match leg {
            Leg::Caller => &mut self.caller,
            Leg::Callee => &mut self.callee,
        }
    }

    /// The leg a datagram came from, and the leg it goes to.
    fn sender_receiver(&mut self, from: Leg) -> (&mut LegState, &mut LegState) {
        match from {
            Leg::Caller => (&mut self.caller, &mut self.callee),
            Leg::Callee => (&mut self.callee, &mut self.caller),
        }
    }

    fn stats(&self) -> (LegStats, LegStats) {
        (self.caller.stats(), self.callee.stats())
    }
}

/// The RTP relay of every call: routes each datagram by its flow, latches, counts, and watches for
/// silent legs. See the [module documentation](self) for the rules and the run loop.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    /// Calls by slot; `None` slots are listed in `free`.
    slots: Vec<Option<Call>>,
    free: Vec<usize>,
    by_id: HashMap<RelayId, usize>,
    flows: HashMap<FlowId, FlowRef>,
    timers: Timers,
    next_incarnation: u64,
}

// ===== impl Relay =====

impl Relay {
    /// An empty relay.
    pub fn new(config: RelayConfig) -> Relay {
        Relay {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::default(),
            flows: HashMap::default(),
            timers: Timers::default(),
            next_incarnation: 0,
        }
    }

    /// Starts relaying a call between the flows of `caller` and `callee` (replacing a call with
    /// the same id). Both legs are expected to send from `now` on; each phone's address comes with
    /// [`Relay::set_remote`], and its latch is learned as the module doc says.
    pub fn insert(&mut self, id: RelayId, caller: LegPorts, callee: LegPorts, now: Instant) {
        self.remove(id);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        for (leg, ports) in [(Leg::Caller, caller), (Leg::Callee, callee)] {
            self.flows.insert(ports.rtp, FlowRef { slot, leg, port: Port::Rtp });
            if let Some(rtcp) = ports.rtcp {
                self.flows.insert(rtcp, FlowRef { slot, leg, port: Port::Rtcp });
            }
        }
        self.next_incarnation += 1;
        let mut call = Call {
            id,
            incarnation: self.next_incarnation,
            caller: LegState::new(caller, now, self.config.learning),
            callee: LegState::new(callee, now, self.config.learning),
        };
        for leg in [Leg::Caller, Leg::Callee] {
            arm(&mut self.timers, self.config.inactivity, slot, call.incarnation, leg, call.leg_mut(leg));
        }
        self.by_id.insert(id, slot);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(call);
        }
    }

    /// Takes what `leg`'s phone declared in its latest SDP (offer or answer, initial or re-INVITE).
    /// A new address restarts that leg's learning against it; the same address keeps the latch
    /// (heard at `now`); the leg counts as active from `now`; a new clock rate starts a new stream
    /// for the statistics. Unknown ids are ignored.
    pub fn set_remote(&mut self, id: RelayId, leg: Leg, remote: RemoteMedia, now: Instant) {
        let Some(&slot) = self.by_id.get(&id) else { return };
        let Some(call) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
        let incarnation = call.incarnation;
        let state = call.leg_mut(leg);
        state.set_remote(remote.normalized(), now);
        arm(&mut self.timers, self.config.inactivity, slot, incarnation, leg, state);
    }

    /// Tells the relay the IP `leg`'s phone signals from (the source of its SIP requests and
    /// responses); a source from it ranks just below the SDP's IP (module doc). Call it with the
    /// SDP, and again when the dialog's peer moves. Unknown ids are ignored.
    pub fn set_peer_ip(&mut self, id: RelayId, leg: Leg, ip: Option<IpAddr>) {
        let Some(&slot) = self.by_id.get(&id) else { return };
        if let Some(call) = self.slots.get_mut(slot).and_then(Option::as_mut) {
            call.leg_mut(leg).peer_ip = ip;
        }
    }

    /// One datagram that arrived on `flow` from `source` at `now`. Returns the flow to send it out
    /// of and the address to send it to (unchanged: `media.send(flow, dest, payload)`), or `None`
    /// when it is dropped (counted in that leg's [`LegStats`]) or the flow is not the relay's.
    ///
    /// Cost: one hash lookup and a few field updates; no allocation.
    #[must_use]
    pub fn handle_datagram(&mut self, flow: FlowId, source: SocketAddr, payload: &[u8], now: Instant) -> Option<(FlowId, SocketAddr)> {
        let FlowRef { slot, leg, port } = *self.flows.get(&flow)?;
        let call = self.slots.get_mut(slot)?.as_mut()?;
        let incarnation = call.incarnation;
        let (from, to) = call.sender_receiver(leg);
        // Neither phone can know where to send before the answer: learning starts with both SDPs.
        let started = to.has_sdp();
        match classify(payload, port) {
            Kind::Other => {
                from.counts.non_rtp_dropped += 1;
                None
            }
            Kind::Rtcp => {
                let accepted = match port {
                    Port::Rtp => from.accept_on_rtp_port(source, now, started),
                    Port::Rtcp => from.accept_on_rtcp_port(source, now, started),
                };
                if !accepted {
                    from.counts.stray += 1;
                    return None;
                }
                to.settle(now);
                from.rtcp_muxed |= port == Port::Rtp;
                from.counts.rtcp_packets += 1;
                let route = to.rtcp_route();
                from.counts.rtcp_dropped += u64::from(route.is_none());
                route
            }
            Kind::Rtp(header) => {
                if !from.accept_on_rtp_port(source, now, started) {
                    from.counts.stray += 1;
                    return None;
                }
                to.settle(now);
                if from.record_rtp(&header, payload.len(), now) {
                    arm(&mut self.timers, self.config.inactivity, slot, incarnation, leg, from);
                }
                let route = to.rtp_route();
                match route {
                    Some(_) => from.counts.forwarded += 1,
                    None => from.counts.blocked += 1,
                }
                route
            }
        }
    }

    /// Whether `flow` is one of the relay's ports (so the application hands it to
    /// [`Relay::handle_datagram`]).
    pub fn owns(&self, flow: FlowId) -> bool {
        self.flows.contains_key(&flow)
    }

    /// When to call [`Relay::handle_timeout`]: O(1). May be earlier than any leg's real deadline
    /// (the phone sent meanwhile), never later.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Legs expected to send (they said so, or have not said yet) that have sent no RTP for
    /// [`RelayConfig::inactivity`] since the later of insert, their last packet and their last
    /// [`Relay::set_remote`], as (call, leg). Each silence is reported once; a packet or a new SDP
    /// rearms the leg. A leg that does not send (hold) is never reported.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(RelayId, Leg)> {
        let mut silent = Vec::new();
        let Some(inactivity) = self.config.inactivity else { return silent };
        while let Some(e) = self.timers.pop_due(now) {
            let Some(call) = self.slots.get_mut(e.slot).and_then(Option::as_mut).filter(|c| c.incarnation == e.incarnation) else {
                continue;
            };
            let id = call.id;
            let state = call.leg_mut(e.leg);
            state.silence.armed = false;
            if state.silence.reported || !state.sends() {
                continue;
            }
            match state.silence.since.checked_add(inactivity) {
                Some(deadline) if deadline <= now => {
                    state.silence.reported = true;
                    silent.push((id, e.leg));
                }
                // Active meanwhile: back in at the real deadline.
                Some(_) => arm(&mut self.timers, Some(inactivity), e.slot, e.incarnation, e.leg, state),
                None => {}
            }
        }
        silent
    }

    /// The figures of a call as (caller, callee).
    pub fn stats(&self, id: RelayId) -> Option<(LegStats, LegStats)> {
        self.call(id).map(Call::stats)
    }

    /// Where RTP to `leg`'s phone goes: its latched source, else its SDP address (whether it is on
    /// hold or not). A learning window that is over is settled by the next datagram, not here.
    pub fn latched(&self, id: RelayId, leg: Leg) -> Option<SocketAddr> {
        self.call(id)?.leg(leg).rtp_addr()
    }

    /// The ports of a call as (caller, callee).
    pub fn ports(&self, id: RelayId) -> Option<(LegPorts, LegPorts)> {
        self.call(id).map(|c| (c.caller.ports, c.callee.ports))
    }

    /// Stops relaying a call and returns its final figures as (caller, callee). The caller closes
    /// the flows.
    pub fn remove(&mut self, id: RelayId) -> Option<(LegStats, LegStats)> {
        let slot = self.by_id.remove(&id)?;
        let call = self.slots.get_mut(slot)?.take()?;
        for ports in [call.caller.ports, call.callee.ports] {
            for flow in std::iter::once(ports.rtp).chain(ports.rtcp) {
                // Only if still ours: a later insert may have taken the flow over.
                if self.flows.get(&flow).is_some_and(|f| f.slot == slot) {
                    self.flows.remove(&flow);
                }
            }
        }
        self.free.push(slot);
        self.compact_timers();
        Some(call.stats())
    }

    /// Calls relayed.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Entries of the relay's tables as (calls, flows, timer heap items), for leak tests: all 0
    /// once every call is removed and the stale timers have come due.
    pub fn table_sizes(&self) -> (usize, usize, usize) {
        (self.by_id.len(), self.flows.len(), self.timers.len())
    }

    /// No call relayed.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ids of the calls relayed, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = RelayId> + '_ {
        self.by_id.keys().copied()
    }

    fn call(&self, id: RelayId) -> Option<&Call> {
        self.slots.get(*self.by_id.get(&id)?)?.as_ref()
    }

    /// Drops timer entries of removed calls once they outnumber the live ones (two per call)
    /// threefold: amortized O(1) per removal.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 1024 + 6 * self.len() {
            return;
        }
        let slots = &self.slots;
        self.timers.retain(|e| slots.get(e.slot).and_then(Option::as_ref).is_some_and(|c| c.incarnation == e.incarnation));
    }
}

/// Puts a leg in the timer heap at its real deadline if it needs watching and is not there yet.
fn arm(timers: &mut Timers, inactivity: Option<Duration>, slot: usize, incarnation: u64, leg: Leg, state: &mut LegState) {
    let Some(inactivity) = inactivity else { return };
    if state.silence.armed || state.silence.reported || !state.sends() {
        return;
    }
    if let Some(deadline) = state.silence.since.checked_add(inactivity) {
        timers.push(Entry { deadline, slot, incarnation, leg });
        state.silence.armed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_and_remote_media() {
        assert_eq!((Leg::Caller.other(), Leg::Callee.other()), (Leg::Callee, Leg::Caller));
        let phone: SocketAddr = "192.0.2.20:5000".parse().unwrap();
        let r = RemoteMedia::sendrecv(phone);
        assert_eq!(r.rtcp, Some("192.0.2.20:5001".parse().unwrap()));
        assert_eq!(RemoteMedia::sendrecv("192.0.2.20:65535".parse().unwrap()).rtcp, None);
        // c=0.0.0.0 and port 0 mean no address; clock rate 0 means G.711's.
        let hold =
            RemoteMedia { rtp: Some("0.0.0.0:5000".parse().unwrap()), rtcp: Some("192.0.2.20:0".parse().unwrap()), clock_rate: 0, ..r };
        assert_eq!(hold.normalized(), RemoteMedia { rtp: None, rtcp: None, clock_rate: 8000, ..r });
        assert_eq!(r.normalized(), r);
        assert_eq!(RelayConfig::default().inactivity, Some(Duration::from_secs(30)));
    }
}
