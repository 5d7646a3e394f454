//! The back-to-back user agent (RFC 3261 §6 "B2BUA", RFC 7092), sans-IO: the service's default way
//! of connecting two phones.
//!
//! Each call has two independent dialogs, one with the caller (we are its UAS) and one with the
//! callee (we are its UAC), with their own Call-IDs, tags and CSeqs, and an RTP relay between
//! them. Every SDP is rewritten so that both phones send media to the service's relay ports.
//!
//! ```text
//!   caller ──INVITE──► [UAS dialog] ── call ── [UAC dialog(s)] ──INVITE──► callee (every binding)
//!          ◄──180/200─               translate                ◄─180/200──
//!   RTP ──────────────► relay port A ════ Relay ════ relay port B ◄────────────── RTP
//! ```
//!
//! What one leg does is translated to the other: provisional and final answers (an 18x with SDP
//! as early media, relayed before the answer: `early`), CANCEL, BYE,
//! re-INVITE offers and their answers (hold, resume, codec change), INFO. A leg that ends for
//! another reason (no ACK, session timer expiry per RFC 4028, a 408/481 to a request) ends the
//! other with BYE; so does media inactivity on the relay.
//!
//! A call starts in [`B2bua::start_call`]: the relay ports are bound, then the caller's dialog is
//! created by [`crate::ua::core::UaCore::accept_invite`], whose id comes straight back. When the
//! dialog layer answers the INVITE itself instead (422, RFC 4028 §9; 482, RFC 3261 §8.2.2.2) the
//! ports are closed before `start_call` returns: no setup state outlives the INVITE's answer. How a
//! call ended is a [`CallEnd`]; its words are the call record's.
//!
//! Established calls are written to the store ([`crate::store::CallState`]); [`B2bua::restore`]
//! takes them back after a restart: it rebinds the relay ports and rebuilds both dialogs, so media
//! resumes and a BYE from either side ends the call, recorded as `restart-recovered`.
//! [`B2bua::follow`] adopts the calls of an instance the published membership dropped (issue 17
//! point 4): fresh relay ports, a re-INVITE to both phones, recorded as `failover`.

mod accepted;
mod adopt;
mod call;
mod early;
mod end;
mod events;
mod handover;
mod late_offer;
mod prack;
pub mod sdp;
mod transfer;
mod users;

pub use adopt::{restamp, stamp};
pub use call::Phase;
pub use end::{CallEnd, Cause, Party};
pub use handover::Parties;
pub use transfer::{TransferAsk, TransferParties};

use crate::application::{FlowId, Io};
use crate::collections::HashMap;
use crate::dialog::{DialogConfig, Dialogs, IdGen, NotAccepted};
use crate::endpoint::EndpointEvent;
use crate::message::Message;
use crate::proxy::Target;
use crate::records::{PendingCallState, StoreOp};
use crate::relay::{Leg, LegPorts, LegStats, RelayConfig, RelayId, RelayShards, ShardedRelay};
use crate::transaction::TransactionId;
use crate::ua::core::{UaCore, UaEvent};
use crate::ua::log_unsent;
use bytes::Bytes;
use call::Call;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of the B2BUA.
#[derive(Debug, Clone)]
pub struct B2buaConfig {
    /// Our SIP address (Contact and Via of both legs).
    pub local: SocketAddr,
    /// RFC 3261 T1.
    pub t1: Duration,
    /// RFC 3261 T2.
    pub t2: Duration,
    /// Address the relay ports are bound on and shown in SDP.
    pub media_ip: IpAddr,
    /// Port range of the relay: two even/odd pairs per call.
    pub rtp_ports: RangeInclusive<u16>,
    /// Relay settings (media inactivity timeout).
    pub relay: RelayConfig,
    /// Relay the media (the default). `false`: a signalling-only B2BUA; the SDPs pass through
    /// unchanged and media flows phone to phone (no ports bound, no media figures).
    pub relay_media: bool,
    /// A call whose callee leg sent no provisional answer with a tag (and no final one) for this
    /// long is given up: the caller gets 408 (as a proxy's branch timeout, RFC 3261 §16.8).
    pub no_answer: Duration,
    /// Seed of tags, Call-IDs and SDP session ids (see [`IdGen`]; the binaries take it from the OS).
    pub seed: u64,
}

/// One call as `switchboard calls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCall {
    /// The call record id.
    pub id: String,
    /// From of the caller's INVITE.
    pub from: String,
    /// To of the caller's INVITE.
    pub to: String,
    /// Where the call is.
    pub phase: Phase,
    /// Seconds since the INVITE.
    pub age_secs: f64,
    /// Seconds since the answer.
    pub duration_secs: Option<f64>,
    /// The codec.
    pub codec: Option<String>,
    /// Restored after a restart.
    pub recovered: bool,
    /// RTP figures of the caller's stream.
    pub caller: LegFigures,
    /// RTP figures of the callee's stream.
    pub callee: LegFigures,
}

/// A leg's relay figures.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LegFigures {
    /// RTP packets from the phone.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// RFC 3550 cumulative loss.
    pub lost: i64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Packets passed on to the other phone.
    pub forwarded: u64,
    /// Datagrams that were not RTP or RTCP.
    pub non_rtp_dropped: u64,
    /// RTP and RTCP from a source other than the phone's (a stranger's, or the phone's before its
    /// latch was learned): dropped.
    pub stray: u64,
}

impl From<LegStats> for LegFigures {
    fn from(s: LegStats) -> LegFigures {
        LegFigures {
            packets: s.packets,
            bytes: s.bytes,
            lost: s.lost,
            jitter_ms: if s.jitter_ms.is_finite() { s.jitter_ms } else { 0.0 },
            forwarded: s.forwarded,
            non_rtp_dropped: s.non_rtp_dropped,
            stray: s.stray,
        }
    }
}

/// How many entries each table of the [`B2bua`] holds ([`B2bua::table_sizes`]): all are back to 0
/// once every call has ended, its Call-IDs have lingered 64*T1 and its timers have run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Calls.
    pub calls: usize,
    /// Call-IDs of our legs, lingering ones included.
    pub by_call_id: usize,
    /// Call-IDs waiting to be forgotten.
    pub linger: usize,
    /// Setup deadlines (checked lazily, so they stay until due).
    pub setup_deadlines: usize,
    /// Store writes not yet polled.
    pub store_ops: usize,
    /// Calls in the relay.
    pub relay_calls: usize,
    /// Relay ports (RTP and RTCP flows).
    pub relay_flows: usize,
    /// Relay inactivity timers (stale ones until due).
    pub relay_timers: usize,
    /// The UA core's tables (both legs' dialogs).
    pub ua: crate::ua::core::TableSizes,
}

/// What a new call starts from, besides the caller's dialog and INVITE.
#[derive(Debug)]
struct Setup {
    targets: Vec<Target>,
    source: SocketAddr,
    media: Option<(LegPorts, LegPorts)>,
    /// The caller's identity for the callee legs' `P-Asserted-Identity` (RFC 3325), and the
    /// users of both legs.
    parties: Parties,
    /// The audio stream of the caller's offer and its parse (`None`: a late offer), as admission
    /// read them.
    offer: Option<(sdp::AudioStream, crate::sdp::SessionDescription)>,
}

/// The B2BUA: every call, both legs' dialogs and the relay.
#[derive(Debug)]
pub struct B2bua {
    config: B2buaConfig,
    ua: UaCore,
    relay: ShardedRelay,
    /// The relay runs on the driver's thread only (see [`B2bua::with_relay_lanes`]).
    relay_in_driver: bool,
    /// Boxed: the table keeps spare buckets (up to half of it after a resize), which would
    /// otherwise each be a whole `Call` wide.
    calls: HashMap<u64, Box<Call>>,
    /// Every Call-ID of ours (both legs, every fork) → call and leg. Entries stay 64*T1 after the
    /// call, so late retransmissions still reach the dialogs.
    /// Keys share the dialog ids' Call-ID strings.
    by_call_id: HashMap<Arc<str>, (u64, Leg)>,
    linger: VecDeque<(Instant, Arc<str>)>,
    next_key: u64,
    store_ops: VecDeque<StoreOp>,
    /// Wall-clock time of the latest input (for call records).
    wall: Duration,
    /// Calls in setup by the time their callee must have answered (checked lazily).
    setup_deadlines: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    /// This instance's member URI and the latest membership epoch it follows (see `adopt`).
    cluster: adopt::ClusterId,
    /// SDP session ids, a stream apart from the dialogs' ids: session ids go on the wire, and
    /// deriving them from the seed itself gave the seed (so every tag and Call-ID) away.
    session_ids: IdGen,
    /// Call record ids are `PREFIX-KEY`: a prefix per run keeps ids unique across restarts.
    record_prefix: u32,
    /// Transfers in progress, by call (see `transfer`), and REFERs waiting for the service.
    transfers: HashMap<u64, transfer::Transfer>,
    transfer_asks: VecDeque<TransferAsk>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl B2bua {
    /// A B2BUA with no calls.
    pub fn new(config: B2buaConfig) -> B2bua {
        let dialog = DialogConfig {
            t1: config.t1,
            t2: config.t2,
            contact: format!("sip:sb@{}", config.local),
            sent_by: config.local.to_string(),
            rng_seed: config.seed,
            // Each leg honours the session timer its phone asks for (RFC 4028 §9); we ask for none.
            session_expires: None,
            ..DialogConfig::default()
        };
        let mut session_ids = IdGen::new(config.seed ^ 0x5e55_1011_1d5e_ed00);
        let record_prefix = session_ids.next_u64() as u32;
        B2bua {
            session_ids,
            record_prefix,
            ua: UaCore::new(Dialogs::new(dialog), None).with_owner(crate::endpoint::Owner::B2bua),
            relay: ShardedRelay::new(config.relay, 1),
            relay_in_driver: false,
            config,
            calls: HashMap::default(),
            by_call_id: HashMap::default(),
            linger: VecDeque::new(),
            next_key: 1,
            store_ops: VecDeque::new(),
            wall: Duration::ZERO,
            setup_deadlines: std::collections::BinaryHeap::new(),
            cluster: adopt::ClusterId::default(),
            transfers: HashMap::default(),
            transfer_asks: VecDeque::new(),
        }
    }

    /// Relays media in `lanes` lanes, each read and forwarded by its own driver thread (see
    /// [`crate::relay::ShardedRelay`]); one lane by default. `0`: one lane that the driver's
    /// reader threads do not forward themselves (every datagram goes through the driver's
    /// thread, as before lanes; for comparison). Call before the first call.
    pub fn with_relay_lanes(mut self, lanes: usize) -> B2bua {
        self.relay = ShardedRelay::new(self.config.relay, lanes.max(1));
        self.relay_in_driver = lanes == 0;
        self
    }

    /// The relay's shards, for the driver's reader threads (`None` with 0 lanes).
    pub fn relay_shards(&self) -> Option<RelayShards> {
        (!self.relay_in_driver).then(|| self.relay.shards())
    }

    /// Calls per relay shard (lanes, then calls split over two lanes).
    pub fn relay_spread(&self) -> Vec<usize> {
        self.relay.spread()
    }

    /// Calls in progress (set up, up or ending).
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True with no calls.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// The sizes of the tables (cheap: a few lengths).
    pub fn table_sizes(&self) -> TableSizes {
        let (relay_calls, relay_flows, relay_timers) = self.relay.table_sizes();
        TableSizes {
            calls: self.calls.len(),
            by_call_id: self.by_call_id.len(),
            linger: self.linger.len(),
            setup_deadlines: self.setup_deadlines.len(),
            store_ops: self.store_ops.len(),
            relay_calls,
            relay_flows,
            relay_timers,
            ua: self.ua.table_sizes(),
        }
    }

    /// True if `msg` belongs to one of our legs (by Call-ID).
    pub fn knows(&self, msg: &Message) -> bool {
        msg.call_id().is_ok_and(|c| self.by_call_id.contains_key(c))
    }

    /// True if transaction `tx` is one of ours.
    pub fn owns(&self, tx: TransactionId) -> bool {
        self.ua.owns(tx)
    }

    /// The next store write (call records and call states), to hand to the store writer.
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.store_ops.pop_front()
    }

    /// Binds one relay port pair anywhere in the range (the allocator draws it at random, so the
    /// next call's ports cannot be guessed from this one's).
    /// With `lane`, the pair is taken in that relay lane (both legs of a call in one lane: one
    /// relay thread forwards both ways).
    fn bind_leg(&mut self, io: &mut Io<'_>, lane: Option<usize>) -> Option<LegPorts> {
        let (ip, range) = (self.config.media_ip, self.config.rtp_ports.clone());
        let lanes = self.relay.lanes();
        let pair = match lane {
            Some(lane) if lanes > 1 => io.media.bind_pair_in_lane(ip, range, true, (lanes, lane)),
            _ => io.media.bind_pair(ip, range, true),
        };
        match pair {
            Ok((rtp, rtcp, local)) => Some(LegPorts { rtp, rtcp, local }),
            Err(e) => {
                tracing::warn!(error = %e, "no free relay port");
                None
            }
        }
    }

    /// Has relay ports bound ahead of the first call (see [`crate::application::Media::reserve`]).
    pub fn reserve(&self, io: &mut Io<'_>) {
        if self.config.relay_media {
            io.media.reserve(self.config.media_ip, self.config.rtp_ports.clone(), true);
        }
    }

    fn close_ports(io: &mut Io<'_>, ports: &LegPorts) {
        io.media.close(ports.rtp);
        if let Some(rtcp) = ports.rtcp {
            io.media.close(rtcp);
        }
    }

    /// Starts a call: `request` is an authorized INVITE for which `targets` are the callee's
    /// contacts. Answers 488 to an INVITE whose SDP has no audio offer and 503 when no relay port
    /// is free; an INVITE without SDP is a late offer (see `late_offer.rs`).
    pub fn start_call(
        &mut self,
        io: &mut Io<'_>,
        tx: TransactionId,
        request: Message,
        source: SocketAddr,
        targets: Vec<Target>,
        now: Instant,
    ) {
        self.start_call_as(io, tx, request, source, targets, Parties::default(), now);
    }

    /// [`B2bua::start_call`] for an authenticated caller: every callee leg's INVITE carries
    /// `P-Asserted-Identity: parties.asserted` (RFC 3325 §9.1), and a leg's phone that moves must
    /// authenticate as that leg's user in `parties` (see [`Parties`]).
    #[allow(clippy::too_many_arguments)]
    pub fn start_call_as(
        &mut self,
        io: &mut Io<'_>,
        tx: TransactionId,
        request: Message,
        source: SocketAddr,
        targets: Vec<Target>,
        parties: Parties,
        now: Instant,
    ) {
        self.wall = io.wall_clock;
        let refuse = |io: &mut Io<'_>, code: u16, reason: &str| {
            io.endpoint.respond_or_log(tx, request.response_to(code, reason, Some("sb")).finish(), now);
        };
        let Some(offer) = Self::invite_sdp_acceptable(request.body()) else {
            tracing::debug!(peer = %source, "INVITE without an SDP audio offer refused");
            return refuse(io, 488, "Not Acceptable Here");
        };
        let media = if self.config.relay_media {
            // Both legs in one lane, from spares of that lane when one has two.
            let lanes = self.relay.lanes();
            let (ip, range) = (self.config.media_ip, self.config.rtp_ports.clone());
            let lane = io.media.lane_with_spares(ip, range, true, lanes, 2);
            let Some(caller_ports) = self.bind_leg(io, lane) else { return refuse(io, 503, "Service Unavailable") };
            let lane = crate::relay::lane_of(caller_ports.local.port(), lanes);
            let Some(callee_ports) = self.bind_leg(io, Some(lane)) else {
                Self::close_ports(io, &caller_ports);
                return refuse(io, 503, "Service Unavailable");
            };
            Some((caller_ports, callee_ports))
        } else {
            None
        };
        // The dialog is created (or refused) here and now: the ports just bound belong to the
        // call it starts, or are closed before this returns, whatever the dialog layer answered.
        match self.ua.accept_invite(io.endpoint, tx, &request, source, now) {
            Ok(id) => {
                self.begin_call(io, id, &request, Setup { targets, source, media, parties, offer }, now);
            }
            Err(e) => {
                tracing::debug!(peer = %source, error = %e, "INVITE created no call");
                for p in media.iter().flat_map(|(a, b)| [a, b]) {
                    Self::close_ports(io, p);
                }
                if let NotAccepted::Input(_) = e {
                    refuse(io, 400, "Bad Request");
                }
            }
        }
        self.drain(io, now);
    }

    /// An endpoint event for one of our legs (see [`B2bua::knows`] and [`B2bua::owns`]).
    pub fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.wall = io.wall_clock;
        // What this request makes us send on the other leg carries its Max-Forwards minus one
        // (issue 14 point 9; 0 was already answered 483 by the endpoint).
        let hops = match &event {
            EndpointEvent::Request { request, .. } => Some(request.max_forwards().ok().flatten().unwrap_or(70).saturating_sub(1)),
            _ => None,
        };
        self.ua.dialogs().set_relay_max_forwards(hops);
        self.ua.handle_endpoint_event(io.endpoint, event, now);
        self.drain(io, now);
        self.ua.dialogs().set_relay_max_forwards(None);
    }

    /// A datagram on a media flow; `false` if the flow is not a relay port.
    #[must_use]
    pub fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: &Bytes, now: Instant) -> bool {
        if !self.relay.owns(flow) {
            return false;
        }
        if let Some((out, dest)) = self.relay.handle_datagram(flow, source, payload, now) {
            io.media.send(out, dest, payload.clone());
        }
        true
    }

    /// The driver could not bind relay flow `flow`: another process holds the port. The port is
    /// already in an SDP on its way (it was picked without a round trip), so rather than move the
    /// leg with a re-INVITE the call ends on both legs (CANCEL or 480 in setup, BYE once up) with
    /// reason `relay-port-taken`; the allocator skips that port from now on. `false` if the flow
    /// is not a relay port.
    pub fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) -> bool {
        self.wall = io.wall_clock;
        let has = |m: &(LegPorts, LegPorts)| [&m.0, &m.1].iter().any(|p| p.rtp == flow || p.rtcp == Some(flow));
        let Some(key) = self.calls.iter().find(|(_, c)| c.media.as_deref().is_some_and(has)).map(|(k, _)| *k) else { return false };
        tracing::warn!(call = key, "relay port taken by another process: ending the call");
        self.end_both(io, key, CallEnd::new(Cause::RelayPortTaken, Party::Service), now);
        true
    }

    /// Dialog timers, relay inactivity and the end of lingering Call-IDs.
    pub fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.wall = io.wall_clock;
        self.ua.handle_timeout(io.endpoint, now);
        for (id, leg) in self.relay.handle_timeout(now) {
            tracing::info!(call = id.0, ?leg, "no media from a leg: ending the call");
            self.end_both(io, id.0, CallEnd::new(Cause::RtpTimeout, Party::Service), now);
        }
        while let Some(&std::cmp::Reverse((at, key))) = self.setup_deadlines.peek() {
            if at > now {
                break;
            }
            self.setup_deadlines.pop();
            if self.calls.get(&key).is_some_and(|c| c.phase == Phase::Setup && !c.rang) {
                tracing::debug!(call = key, "no answer from the callee leg: 408 to the caller");
                self.give_up(io, key, now);
            }
        }
        while self.linger.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, call_id)) = self.linger.pop_front() {
                self.by_call_id.remove(&call_id);
                self.ua.forget_peer(&call_id);
            }
        }
        self.drain(io, now);
    }

    /// The earliest deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let setup = self.setup_deadlines.peek().map(|r| r.0 .0);
        [self.ua.poll_timeout(), self.relay.poll_timeout(), self.linger.front().map(|(at, _)| *at), setup].into_iter().flatten().min()
    }

    /// The calls in progress with their live media figures.
    pub fn live(&self, now: Instant) -> Vec<LiveCall> {
        let mut out: Vec<LiveCall> = self
            .calls
            .iter()
            .map(|(key, c)| {
                let (a, b) = self.relay.stats(RelayId(*key)).unwrap_or_default();
                let since = |t: Option<u64>| t.map(|t| ms(self.wall).saturating_sub(t) as f64 / 1000.0);
                LiveCall {
                    id: c.record.id.clone(),
                    from: c.record.from.clone(),
                    to: c.record.to.clone(),
                    phase: c.phase,
                    age_secs: now.saturating_duration_since(c.started).as_secs_f64(),
                    duration_secs: since(c.record.answered_at),
                    codec: c.record.codec.clone(),
                    recovered: c.recovered,
                    caller: a.into(),
                    callee: b.into(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Sends what the dialogs produced, and acts on the UA core's events until none is left.
    fn drain(&mut self, io: &mut Io<'_>, now: Instant) {
        self.ua.flush(io.endpoint, now);
        while let Some(ev) = self.ua.poll_event() {
            match ev {
                UaEvent::Dialog(ev) => self.on_dialog(io, ev, now),
                UaEvent::Endpoint(EndpointEvent::Request { tx, request, .. }) => {
                    io.endpoint.respond_or_log(tx, crate::dialog::reject_unknown(&request), now);
                }
                _ => {}
            }
            self.ua.flush(io.endpoint, now);
        }
    }

    fn record_put(&mut self, key: u64) {
        if let Some(c) = self.calls.get(&key) {
            self.store_ops.push_back(StoreOp::PutCall(c.record.clone()));
        }
    }

    fn state_put(&mut self, key: u64) {
        let Some(saved) = self.saved(key) else { return };
        // Made into snapshots and serialized by the store writer, and not at all if the call ends
        // before its batch commits (see `PendingCallState`).
        // The first state of a call that was never saved (not one recovered or adopted, whose row
        // exists): a batch that also holds its removal writes neither.
        let first = self.calls.get(&key).is_some_and(|c| !c.saved);
        let id = saved.id.clone();
        let render = move || serde_json::to_string(&saved.snapshot()).map_err(|e| tracing::error!(error = %e, "call state not saved")).ok();
        let pending = if first { PendingCallState::first(id, render) } else { PendingCallState::new(id, render) };
        self.store_ops.push_back(StoreOp::PutCallStateLater(pending));
        if let Some(c) = self.calls.get_mut(&key) {
            c.saved = true;
        }
    }

    /// Ends the call `key` on both legs (BYE where a dialog is up, CANCEL or an error answer where
    /// it is not) and closes its record.
    fn end_both(&mut self, io: &mut Io<'_>, key: u64, end: CallEnd, now: Instant) {
        let Some(c) = self.calls.get(&key) else { return };
        let caller = c.caller.clone();
        let callee = c.callee.clone();
        let forks = c.forks.clone();
        let up = c.phase == Phase::Up;
        let dialogs = self.ua.dialogs();
        let bye_reason = end.bye_reason();
        if up {
            log_unsent(dialogs.send_bye_with_reason(&caller, bye_reason, now), "BYE to the caller", &caller);
        } else {
            log_unsent(dialogs.reject(&caller, 480, now), "480 to the caller", &caller);
        }
        if let Some(callee) = &callee {
            log_unsent(dialogs.send_bye_with_reason(callee, bye_reason, now), "BYE to the callee", callee);
        }
        for f in forks {
            self.cancel_fork(io, key, &f, now);
        }
        self.ua.flush(io.endpoint, now);
        self.finish(io, key, end, now);
    }

    /// Ends a call in setup whose callee never answered: 408 to the caller, CANCEL to the forks
    /// that rang by then (the others are cancelled if they still ring, §9.1).
    fn give_up(&mut self, io: &mut Io<'_>, key: u64, now: Instant) {
        let Some(c) = self.calls.get_mut(&key) else { return };
        c.phase = Phase::Ending;
        let (caller, forks) = (c.caller.clone(), std::mem::take(&mut c.forks));
        log_unsent(self.ua.dialogs().reject(&caller, 408, now), "408 to the caller", &caller);
        for f in forks {
            self.cancel_fork(io, key, &f, now);
        }
        self.ua.flush(io.endpoint, now);
        self.finish(io, key, CallEnd::new(Cause::Status(408), Party::Service), now);
    }

    fn cancel_fork(&mut self, io: &mut Io<'_>, key: u64, fork: &crate::dialog::DialogId, now: Instant) {
        if self.ua.cancel(io.endpoint, fork, now).is_err() {
            if let Some(c) = self.calls.get_mut(&key) {
                c.cancel_when_ringing.push(fork.clone());
            }
        }
    }

    /// Closes the record, frees the relay, forgets the call (its Call-IDs linger).
    fn finish(&mut self, io: &mut Io<'_>, key: u64, mut end: CallEnd, now: Instant) {
        self.drop_transfer(io, key, now);
        let Some(mut c) = self.calls.remove(&key) else { return };
        if let Some(stats) = self.relay.remove(RelayId(key)) {
            c.set_stats(stats);
        }
        if let Some((caller, callee)) = c.media.as_deref() {
            Self::close_ports(io, caller);
            Self::close_ports(io, callee);
        }
        if c.recovered && end.cause == Cause::Bye {
            end.cause = if c.adopted { Cause::Failover } else { Cause::RestartRecovered };
        }
        // The call is gone: its record moves to the store op rather than being copied.
        let Call { record: mut r, saved, call_ids, .. } = *c;
        r.ended_at = Some(ms(self.wall));
        r.end_reason = Some(end.cause.to_string());
        r.ended_by = Some(end.by.to_string());
        tracing::info!(call = %r.id, reason = %end.cause, by = %end.by, "call ended");
        let state = saved.then(|| r.id.clone());
        self.store_ops.push_back(StoreOp::PutCall(r));
        if let Some(id) = state {
            self.store_ops.push_back(StoreOp::RemoveCallState(id));
        }
        let until = now + self.config.t1 * 64;
        for id in call_ids {
            self.linger.push_back((until, id));
        }
    }
}
