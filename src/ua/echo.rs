//! The service's built-in `echo` user (sans-IO): answers INVITEs to `sip:echo@...` with 200 and an
//! SDP answer (after 180 Ringing when an answer delay is set), re-INVITEs (hold, resume) with the
//! matching answer, out-of-dialog OPTIONS with 200 and Allow/Supported, and other users with 404
//! until routing exists. An INVITE without SDP gets our offer in the 200 and its ACK the answer
//! (late offer, RFC 3264 §4; [`super::late_offer`]); secure RTP lines are refused with port 0 and
//! an offer of nothing else with 488 ([`crate::call::negotiate::choose_audio`]). BYE, CANCEL, 2xx retransmission until the ACK and the BYE when no ACK comes
//! (§13.3.1.4) are the dialog layer's ([`crate::dialog`]), reached through [`UaCore`].

use super::core::{UaCore, UaEvent};
use super::log_unsent;
use super::media::{CallKey, CallMedia, CallMediaConfig};
use crate::application::{Application, FlowId, Io};
use crate::call::{MediaEvent, Source};
use crate::collections::HashMap;
use crate::dialog::{DialogConfig, DialogId, Dialogs, Event as DialogEvent};
use crate::endpoint::{EndpointEvent, ALLOW};
use crate::message::{HeaderName, Message, Method, Uri};
use crate::transaction::TransactionId;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Settings of the echo UAS.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Our address, for Contact and SDP.
    pub local: SocketAddr,
    /// Delay between 180 Ringing and 200 OK (0: answer at once, no 180).
    pub answer_delay: Duration,
    /// T1 for 2xx retransmission (§13.3.1.4).
    pub t1: Duration,
    /// T2, the cap of the 2xx retransmission interval.
    pub t2: Duration,
    /// Media: address, RTP port range, codecs, inactivity timeout.
    pub media: CallMediaConfig,
    /// Calls from one source IP at most (anyone may call `echo`, unauthenticated); one more is
    /// answered 486 with Retry-After. 0: no limit.
    pub max_calls_per_source: usize,
    /// The percentage of the RTP port range's pairs that echo calls may hold, so unauthenticated
    /// calls cannot take the ports real calls need; one more call is answered 503 with
    /// Retry-After. 100: the whole range.
    pub port_share: u8,
}

impl EchoConfig {
    /// The echo calls the port share allows: that share of the range's RTP/RTCP pairs, at least one
    /// when the share is above 0.
    pub fn max_calls(&self) -> usize {
        let ports = usize::from(self.media.ports.end() - self.media.ports.start()) + 1;
        let share = usize::from(self.port_share.min(100));
        let calls = ports / 2 * share / 100;
        if share > 0 {
            calls.max(1)
        } else {
            0
        }
    }
}

/// Retry-After of a refused echo call, in seconds: a never-ACKed call holds its slot for 64*T1.
const BUSY_RETRY_AFTER: u64 = 30;

/// How many entries each table of the [`EchoUas`] holds ([`EchoUas::table_sizes`]): all are back
/// to 0 once every call has ended and its timers have run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Calls ringing.
    pub ringing: usize,
    /// Source IP per call.
    pub sources: usize,
    /// Calls per source IP.
    pub per_source: usize,
    /// Calls with media state.
    pub media_calls: usize,
    /// Media flows (RTP and RTCP ports).
    pub media_flows: usize,
    /// The UA core's tables.
    pub ua: super::core::TableSizes,
}

/// The echo UAS.
#[derive(Debug)]
pub struct EchoUas {
    config: EchoConfig,
    ua: UaCore,
    /// Calls ringing, with the instant they are answered.
    ringing: HashMap<DialogId, (Instant, Message)>,
    media: CallMedia,
    stopping: bool,
    /// The `now` of the latest input, for checks made without one ([`Application::is_done`]).
    last_now: Option<Instant>,
    /// Calls answered so far.
    pub answered: u64,
    /// Calls refused by `max_calls_per_source` or `port_share`.
    pub refused: u64,
    /// The source IP of each call, for `max_calls_per_source`.
    sources: HashMap<DialogId, IpAddr>,
    per_source: HashMap<IpAddr, usize>,
    /// The source of the INVITE being handed to the dialogs, until its `Incoming` event.
    incoming_source: Option<IpAddr>,
}

impl EchoUas {
    /// A new echo UAS; `seed` feeds tags, branches and SDP session ids.
    pub fn new(config: EchoConfig, seed: u64) -> EchoUas {
        let dialog_config = DialogConfig {
            t1: config.t1,
            t2: config.t2,
            contact: format!("sip:echo@{}", config.local),
            sent_by: config.local.to_string(),
            rng_seed: seed,
            // The echo user never asks for session timers; it honours the caller's (RFC 4028 §9).
            session_expires: None,
            ..DialogConfig::default()
        };
        EchoUas {
            media: CallMedia::new(config.media.clone()),
            config,
            ua: UaCore::new(Dialogs::new(dialog_config), None).with_owner(crate::endpoint::Owner::Echo),
            ringing: HashMap::default(),
            stopping: false,
            last_now: None,
            answered: 0,
            refused: 0,
            sources: HashMap::default(),
            per_source: HashMap::default(),
            incoming_source: None,
        }
    }

    /// Issue 14 point 5: refuses a new INVITE from `source` beyond the per-source cap (486) or the
    /// port share (503), both with Retry-After. Returns true when it answered.
    fn refuse_over_caps(&mut self, io: &mut Io<'_>, tx: TransactionId, request: &Message, source: SocketAddr, now: Instant) -> bool {
        let new_call = request.method() == Some(&Method::Invite) && request.to_tag().is_ok_and(|t| t.is_none());
        if !new_call {
            return false;
        }
        let from_source = self.per_source.get(&source.ip()).copied().unwrap_or(0);
        let per_source = self.config.max_calls_per_source;
        let (code, reason) = if per_source > 0 && from_source >= per_source {
            (486, "Too Many Calls From This Address")
        } else if self.sources.len() >= self.config.max_calls() {
            (503, "Unauthenticated Calls Hold Their Share Of Ports")
        } else {
            self.incoming_source = Some(source.ip());
            return false;
        };
        tracing::debug!(peer = %source, code, calls = self.sources.len(), from_source, "echo call refused");
        self.refused += 1;
        let answer = request.response_to(code, reason, Some("echo")).header(HeaderName::RetryAfter, BUSY_RETRY_AFTER).finish();
        io.endpoint.respond_or_log(tx, answer, now);
        true
    }

    fn track(&mut self, id: &DialogId) {
        if let Some(ip) = self.incoming_source.take() {
            self.sources.insert(id.clone(), ip);
            *self.per_source.entry(ip).or_default() += 1;
        }
    }

    fn untrack(&mut self, id: &DialogId) {
        let Some(ip) = self.sources.remove(id) else { return };
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
    }

    /// Whether `msg` (a request or a response) belongs to one of the echo user's dialogs.
    pub fn knows(&self, msg: &Message) -> bool {
        // No dialog (the B2BUA's and the proxy's traffic): nothing to parse the identity for.
        if self.ua.dialogs_ref().is_empty() {
            return false;
        }
        let id = if msg.is_request() { DialogId::of_request(msg) } else { DialogId::of_response(msg) };
        id.is_some_and(|id| self.ua.dialogs_ref().get(&id).is_some())
    }

    /// The sizes of the tables (cheap: a few lengths).
    pub fn table_sizes(&self) -> TableSizes {
        let (media_calls, media_flows) = self.media.table_sizes();
        TableSizes {
            ringing: self.ringing.len(),
            sources: self.sources.len(),
            per_source: self.per_source.len(),
            media_calls,
            media_flows,
            ua: self.ua.table_sizes(),
        }
    }

    /// Dialogs (and pending INVITEs) in progress.
    pub fn active_calls(&self) -> usize {
        self.ua.dialogs_ref().len()
    }

    fn on_incoming(&mut self, io: &mut Io<'_>, id: DialogId, request: Message, now: Instant) {
        self.track(&id);
        let to_echo = matches!(request.request_uri(), Some(Uri::Sip(u)) if u.user == Some("echo"));
        let d = self.ua.dialogs();
        if self.stopping {
            log_unsent(d.reject(&id, 503, now), "503 while stopping", &id);
        } else if !to_echo {
            log_unsent(d.reject(&id, 404, now), "404 to a call not for the echo", &id);
        } else if self.config.answer_delay.is_zero() {
            self.answer(io, &id, &request, now);
        } else {
            log_unsent(d.ring(&id, now), "180", &id);
            self.ringing.insert(id, (now + self.config.answer_delay, request));
        }
    }

    /// Answers with media that sends back what arrives (RTP echo). An INVITE without SDP gets our
    /// offer in the 200 and the answer comes in the ACK (late offer, RFC 3261 §13.3.1.4).
    fn answer(&mut self, io: &mut Io<'_>, id: &DialogId, request: &Message, now: Instant) {
        match self.media.answer_or_offer(io, id, &request.body_bytes(), Source::Echo, now) {
            Ok(sdp) => {
                if self.ua.dialogs().accept(id, Some(sdp), now).is_ok() {
                    self.answered += 1;
                }
            }
            Err(e) => {
                tracing::debug!(error = ?e, "cannot answer: 488");
                log_unsent(self.ua.dialogs().reject(id, 488, now), "488", id);
            }
        }
    }

    fn on_ua_event(&mut self, io: &mut Io<'_>, event: UaEvent, now: Instant) {
        match event {
            UaEvent::Dialog(DialogEvent::Incoming { id, request }) => self.on_incoming(io, id, request, now),
            // The echo user transfers nowhere: the REFER's subscription ends at once (RFC 3515).
            UaEvent::Dialog(DialogEvent::Refer { id, .. }) => {
                if let Err(e) = self.ua.dialogs().send_refer_notify(&id, 603, "Declined", true, now) {
                    tracing::debug!(call_id = %id.call_id, error = %e, "NOTIFY 603 not sent");
                }
            }
            UaEvent::Dialog(DialogEvent::Reoffer { id, request }) => {
                // Hold, resume, codec change: answer the new offer on the same port.
                match self.media.answer_reoffer(&id, &request.body_bytes()) {
                    Ok(sdp) => drop(self.ua.dialogs().accept(&id, Some(sdp), now)),
                    Err(_) => drop(self.ua.dialogs().reject(&id, 488, now)),
                }
            }
            UaEvent::Dialog(DialogEvent::Acked { id }) => {
                let _ = super::late_offer::on_acked(&mut self.ua, &mut self.media, io, &id, now);
            }
            UaEvent::Dialog(DialogEvent::Terminated { id, reason }) => {
                let media = self.media.end(io, &CallKey::of(&id));
                tracing::debug!(call_id = %id.call_id, ?reason, echoed = media.map_or(0, |m| m.summary.packets_sent), "call ended");
                self.ringing.remove(&id);
                self.untrack(&id);
            }
            UaEvent::Endpoint(EndpointEvent::Request { tx, request, .. }) => {
                let answer = match request.method() {
                    Some(Method::Options) => request
                        .response_to(200, "OK", Some("echo"))
                        .header(HeaderName::Allow, ALLOW)
                        .header(HeaderName::Supported, "timer")
                        .header(HeaderName::Accept, "application/sdp")
                        .finish(),
                    // MESSAGE, SUBSCRIBE (489), UPDATE/INFO outside a dialog (481): as a phone.
                    _ => crate::ua::message::answer_out_of_dialog(&request, "echo").0,
                };
                io.endpoint.respond_or_log(tx, answer, now);
            }
            _ => {}
        }
        self.ua.flush(io.endpoint, now);
    }

    fn drain(&mut self, io: &mut Io<'_>, now: Instant) {
        while let Some(ev) = self.ua.poll_event() {
            self.on_ua_event(io, ev, now);
        }
    }

    fn on_media_events(&mut self, io: &mut Io<'_>, events: Vec<(CallKey, MediaEvent)>, now: Instant) {
        for (key, ev) in events {
            if ev == MediaEvent::Inactive {
                let id = self.ua.dialogs_ref().ids().find(|id| CallKey::of(id) == key).cloned();
                if let Some(id) = id {
                    tracing::info!(call_id = %id.call_id, "no media from the caller: hanging up");
                    let bye = self.ua.dialogs().send_bye_with_reason(&id, Some("SIP;cause=408;text=\"RTP timeout\""), now);
                    log_unsent(bye, "BYE after the RTP timeout", &id);
                }
            }
        }
        self.ua.flush(io.endpoint, now);
    }
}

impl Application for EchoUas {
    fn start(&mut self, io: &mut Io<'_>, _now: Instant) {
        self.media.reserve(io);
    }

    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.last_now = Some(now);
        self.incoming_source = None;
        if let EndpointEvent::Request { tx, request, source } = &event {
            if self.refuse_over_caps(io, *tx, request, *source, now) {
                return;
            }
        }
        self.ua.handle_endpoint_event(io.endpoint, event, now);
        self.drain(io, now);
    }

    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: bytes::Bytes, now: Instant) {
        self.last_now = Some(now);
        let events = self.media.handle_media(io, flow, source, payload, now);
        self.on_media_events(io, events, now);
        self.drain(io, now);
    }

    /// Our media port was taken by another process after the 200 named it: the call cannot echo,
    /// so end it with BYE (sent once the ACK is in, §15; see [`crate::application`]).
    fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) {
        self.last_now = Some(now);
        let Some(key) = self.media.call_of(flow).cloned() else { return };
        let id = self.ua.dialogs_ref().ids().find(|id| CallKey::of(id) == key).cloned();
        if let Some(id) = id {
            tracing::warn!(call_id = %id.call_id, "media port taken by another process: hanging up");
            let _ = self.ua.dialogs().send_bye_with_reason(&id, Some("SIP;cause=503;text=\"media port taken\""), now);
        }
        self.ua.flush(io.endpoint, now);
        self.drain(io, now);
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.last_now = Some(now);
        let due: Vec<DialogId> = self.ringing.iter().filter(|(_, (at, _))| *at <= now).map(|(id, _)| id.clone()).collect();
        for id in due {
            if let Some((_, request)) = self.ringing.remove(&id) {
                self.answer(io, &id, &request, now);
            }
        }
        let events = self.media.handle_timeout(io, now);
        self.on_media_events(io, events, now);
        self.ua.handle_timeout(io.endpoint, now);
        self.drain(io, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ringing.values().map(|(at, _)| *at).chain(self.ua.poll_timeout()).chain(self.media.poll_timeout()).min()
    }

    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.last_now = Some(now);
        self.stopping = true;
        let ids: Vec<DialogId> = self.ua.dialogs_ref().ids().cloned().collect();
        for id in ids {
            if self.ringing.remove(&id).is_some() {
                log_unsent(self.ua.dialogs().reject(&id, 480, now), "480 at shutdown", &id);
            } else {
                log_unsent(self.ua.dialogs().send_bye(&id, now), "BYE at shutdown", &id);
            }
        }
        self.ua.flush(io.endpoint, now);
        self.drain(io, now);
    }

    fn is_done(&self) -> bool {
        self.stopping && self.last_now.is_some_and(|now| self.ua.is_idle(now))
    }
}
