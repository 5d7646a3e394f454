//! The softphone (sans-IO): places and answers calls with media, through [`UaCore`] and
//! [`CallMedia`]. One type serves `softphone dial`, `softphone answer` and the interactive prompt.
//!
//! A call: INVITE with our offer (or an incoming INVITE answered after a delay), media from answer
//! to end (tone, WAV or silence out; recording in), optional DTMF after the answer, hang-up after a
//! duration, hold/resume by re-INVITE, and a BYE with a Reason when the peer's media stops for the
//! inactivity timeout. Each ended call leaves a [`CallReport`].
//!
//! A phone that changes network mid-call ([`Phone::move_to`], or [`PhoneConfig::move_after`])
//! asks the driver to move its SIP socket ([`Application::poll_move`]); once moved, it binds new
//! media ports on the new address, registers the new contact (removing the old one) and sends a
//! re-INVITE on every answered call with the new SDP address (RFC 3261 §12.2.1.1 target refresh,
//! RFC 3264 §8). The service challenges that re-INVITE (it comes from an address the call does
//! not know, issue 14 point 7); the dialog layer answers with our credentials.

mod early;

use super::core::{UaCore, UaEvent};
use super::log_unsent;
use super::media::{CallKey, CallMedia, CallMediaConfig, PreparedOffer};
use super::register::{RegState, RegisterConfig, Registration};
use crate::application::{Application, FlowId, Io};
use crate::call::{MediaEvent, Source};
use crate::collections::HashMap;
use crate::dialog::{CallParams, DialogConfig, DialogError, DialogId, Dialogs, EndReason, Event as DialogEvent, Side};
use crate::endpoint::EndpointEvent;
use crate::media::tone::ToneGenerator;
use crate::message::{Message, Method};
use crate::sdp::Direction;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod late_offer;

/// What the phone sends.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// Silence.
    Silence,
    /// A tone of this frequency (Hz).
    Tone(f64),
    /// These samples (8 kHz mono), looped.
    Samples(Arc<[i16]>),
}

impl SourceSpec {
    fn make(&self) -> Source {
        match self {
            SourceSpec::Silence => Source::Silence,
            SourceSpec::Tone(hz) => Source::Tone(ToneGenerator::new(*hz, 8000)),
            SourceSpec::Samples(pcm) => Source::Samples { pcm: pcm.clone(), pos: 0 },
        }
    }
}

/// Settings of the phone.
#[derive(Debug, Clone)]
pub struct PhoneConfig {
    /// User name for From and Contact.
    pub user: String,
    /// Host of our From (our address-of-record's domain); `None`: our SIP address.
    pub domain: Option<String>,
    /// Answer only digest challenges of this realm (`None`: any).
    pub realm: Option<String>,
    /// Our SIP address.
    pub local: SocketAddr,
    /// Media ports, codecs and session settings.
    pub media: CallMediaConfig,
    /// What we send.
    pub source: SourceSpec,
    /// Hang up this long after the answer (`None`: stay until the peer hangs up or Ctrl-C).
    pub duration: Option<Duration>,
    /// Answer incoming calls automatically after this delay (`None`: ring until the `answer` command).
    pub auto_answer: Option<Duration>,
    /// Stop after this many calls have ended (answer mode).
    pub max_calls: Option<u32>,
    /// Digits to send this long after the answer.
    pub dtmf: Option<(String, Duration)>,
    /// Seed for tags, branches, SSRCs.
    pub seed: u64,
    /// Register with a registrar (and unregister at the end).
    pub register: Option<RegisterConfig>,
    /// User name and password for digest challenges (REGISTER 401, INVITE 407).
    pub credentials: Option<(String, String)>,
    /// Move to this local address this long after the first call is answered (`--move-after`,
    /// `--move-to`; port 0 picks a free one): a phone changing network mid-call.
    pub move_after: Option<(Duration, SocketAddr)>,
    /// RFC 3261 T1 (§17.1.1.1, default 500 ms) of our dialogs; the endpoint's transactions take
    /// theirs from [`crate::endpoint::EndpointConfig`] (the softphone's `--t1-ms` sets both).
    pub t1: Duration,
    /// Reliable provisional responses (RFC 3262, `--100rel`): `Supported: 100rel` by default.
    pub rel100: crate::dialog::Rel100,
}

/// How a call ended, in one word: the summary's `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndState {
    /// Answered, then ended by a BYE from either side.
    Completed,
    /// The INVITE got a non-2xx final response.
    Rejected,
    /// The INVITE was cancelled (§9).
    Cancelled,
    /// Anything else: a timeout, a session expiry, a call that could not start.
    Failed,
}

impl EndState {
    /// `completed`, `rejected`, `cancelled` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndState::Completed => "completed",
            EndState::Rejected => "rejected",
            EndState::Cancelled => "cancelled",
            EndState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for EndState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a call in progress is: what [`Phone::status`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveState {
    /// Not answered yet (either direction).
    Ringing,
    /// Answered, media flowing.
    Active,
    /// Answered and put on hold.
    Held,
}

impl std::fmt::Display for LiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LiveState::Ringing => "ringing",
            LiveState::Active => "active",
            LiveState::Held => "held",
        })
    }
}

/// How a call ended, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    /// Call-ID.
    pub call_id: String,
    /// In one word.
    pub state: EndState,
    /// Why: `bye-local`, `bye-remote`, `486`, `timeout`, `cancel`, `rtp-timeout`, ...
    pub reason: String,
    /// From INVITE to answer.
    pub setup: Option<Duration>,
    /// From answer to end.
    pub duration: Option<Duration>,
    /// Status codes of the responses to our INVITE.
    pub responses: Vec<u16>,
    /// The final response to our BYE, when we hung up and it came.
    pub bye_status: Option<u16>,
    /// Media figures, if media ran.
    pub media: Option<crate::call::MediaSummary>,
    /// Decoded received audio.
    pub recording: Vec<i16>,
    /// An 18x with SDP started media before the answer (early media, see `early`).
    pub early_media: bool,
    /// When the phone itself gave up on the call (an unusable 2xx, an ICMP error): why, in one
    /// sentence (`reason` has the short word).
    pub detail: Option<String>,
}

#[derive(Debug)]
struct Call {
    id: DialogId,
    outgoing: bool,
    started: Instant,
    answered: Option<Instant>,
    hangup_at: Option<Instant>,
    dtmf_at: Option<Instant>,
    /// Incoming and not answered yet: the INVITE and when to answer (None: wait for a command).
    ringing: Option<(Message, Option<Instant>)>,
    responses: Vec<u16>,
    end_reason: Option<String>,
    held: bool,
    /// Media started on an 18x with SDP.
    early_media: bool,
    /// The phone gave up on the call (short reason, sentence): it ends as [`EndState::Failed`].
    failure: Option<(String, String)>,
    /// Where our INVITE went (outgoing calls), to tell an ICMP error from a plain timeout.
    peer: Option<SocketAddr>,
}

/// The phone.
#[derive(Debug)]
pub struct Phone {
    config: PhoneConfig,
    ua: UaCore,
    media: CallMedia,
    calls: HashMap<CallKey, Call>,
    /// Reports of ended calls, oldest first.
    pub reports: Vec<CallReport>,
    /// DTMF digits received, as (Call-ID, digit), for live display.
    pub digits: Vec<(String, char)>,
    /// MESSAGEs received (RFC 3428), oldest first, for live display.
    pub messages: Vec<super::message::ReceivedMessage>,
    /// Transfer progress lines (REFER answers, NOTIFYs, transfers done), for live display.
    pub transfer_news: Vec<String>,
    /// Calls placed for a REFER, by new call → the referring call (see `refer`).
    transfers: refer::Transfers,
    /// `Referred-By` for the next call placed (the REFER it carries out, RFC 3892).
    transfers_by: Option<String>,
    stopping: bool,
    registration: Option<Registration>,
    /// The `now` of the latest input, for checks made without one ([`Application::is_done`]).
    last_now: Option<Instant>,
    pending_dial: Option<(String, SocketAddr)>,
    /// When the pending dial goes out: at start, if no media port pair is bound ahead yet, on the
    /// next input (the driver binds the spares in between).
    dial_at: Option<Instant>,
    /// When to move, and where ([`PhoneConfig::move_after`]).
    move_at: Option<(Instant, SocketAddr)>,
    /// A move asked for, for the driver ([`Application::poll_move`]).
    pending_move: Option<SocketAddr>,
    /// Our INVITEs carry no SDP: the offer comes in the 2xx and our answer goes in the ACK
    /// (`dial --late-offer`, RFC 3261 §13.2.2.4; see `phone/late_offer.rs`).
    late_offer: bool,
}

/// Maps a dialog's end to (state, reason) of the summary.
fn describe(reason: EndReason) -> (EndState, String) {
    match reason {
        EndReason::Bye(Side::Local) => (EndState::Completed, "bye-local".into()),
        EndReason::Bye(Side::Remote) => (EndState::Completed, "bye-remote".into()),
        EndReason::Rejected(code) => (EndState::Rejected, code.to_string()),
        EndReason::Cancelled => (EndState::Cancelled, "cancel".into()),
        EndReason::Timeout => (EndState::Failed, "timeout".into()),
        EndReason::NoAck => (EndState::Failed, "no-ack".into()),
        EndReason::SessionExpired => (EndState::Failed, "session-expired".into()),
        EndReason::PingFailed => (EndState::Failed, "ping-failed".into()),
        EndReason::Gone => (EndState::Failed, "gone".into()),
    }
}

impl Phone {
    /// A phone; call [`Phone::dial`] for an outgoing call.
    pub fn new(config: PhoneConfig, outbound: Option<SocketAddr>) -> Phone {
        let dialog_config = DialogConfig {
            contact: format!("sip:{}@{}", config.user, config.local),
            sent_by: config.local.to_string(),
            rng_seed: config.seed,
            session_expires: None,
            t1: config.t1,
            rel100: config.rel100,
            ..DialogConfig::default()
        };
        let media = CallMedia::new(config.media.clone());
        let mut dialogs = Dialogs::new(dialog_config);
        let mut registration = None;
        let mut outbound_proxy = None;
        if let Some((user, password)) = config.credentials.clone() {
            // INVITEs answer 407/401 challenges with the same credentials (RFC 3261 §22.2).
            let mut client = crate::auth::DigestClient::new(user.as_str(), password.as_str());
            if let Some(realm) = &config.realm {
                client = client.only_realm(realm.as_str());
            }
            let mut cnonces = crate::dialog::IdGen::new(config.seed ^ 0x6a09_e667_f3bc_c908);
            dialogs.set_authorizer(Box::new(move |req, resp| {
                client.handle_challenge(req, resp).ok()?;
                let uri = req.request_uri_str()?.to_owned();
                client.authorization(req.method()?.as_str(), &uri, &format!("{:016x}", cnonces.next_u64()))
            }));
            if let Some(rc) = config.register.clone() {
                outbound_proxy = Some(rc.registrar);
                registration = Some(Registration::new(rc, &user, &password, config.seed ^ 0x2545_f491_4f6c_dd1d));
            }
        }
        let mut ua = UaCore::new(dialogs, outbound);
        ua.set_outbound_proxy(outbound_proxy);
        Phone {
            ua,
            registration,
            media,
            calls: HashMap::default(),
            reports: Vec::new(),
            digits: Vec::new(),
            messages: Vec::new(),
            transfer_news: Vec::new(),
            transfers: refer::Transfers::default(),
            transfers_by: None,
            stopping: false,
            last_now: None,
            pending_dial: None,
            dial_at: None,
            move_at: None,
            pending_move: None,
            late_offer: false,
            config,
        }
    }

    /// Sets whether calls protect their media with SDES-SRTP (`--srtp`, see [`crate::call::sdes`]).
    pub fn set_srtp(&mut self, mode: crate::call::sdes::SrtpMode) {
        self.media.set_srtp(mode);
    }

    /// Asks to call `uri` at `target`; the INVITE goes out when the driver starts the application
    /// ([`Application::start`]), where media ports can be bound.
    pub fn dial(&mut self, uri: &str, target: SocketAddr) {
        self.ua.set_default_peer(Some(target));
        self.pending_dial = Some((uri.to_owned(), target));
    }

    fn start_dial(&mut self, io: &mut Io<'_>, uri: String, peer: Option<SocketAddr>, now: Instant) {
        let prepared = if self.late_offer { Ok(None) } else { self.media.prepare_offer(io).map(Some) };
        let (prepared, sdp): (Option<PreparedOffer>, Option<Bytes>) = match prepared {
            Ok(Some((p, sdp))) => (Some(p), Some(sdp)),
            Ok(None) => (None, None),
            Err(e) => {
                tracing::error!(error = ?e, "no media ports");
                self.push_failed(format!("media: {e:?}"));
                return;
            }
        };
        let params = CallParams {
            from: match &self.config.domain {
                Some(d) => format!("<sip:{}@{d}>", self.config.user),
                None => format!("<sip:{}@{}>", self.config.user, self.config.local),
            },
            to: format!("<{uri}>"),
            target: None,
            routes: Vec::new(),
            sdp,
            max_forwards: None,
            asserted_identity: None,
            referred_by: self.transfers_by.take(),
        };
        match self.ua.dialogs().invite(params, now) {
            Ok(id) => {
                if let Some(prepared) = prepared {
                    self.media.attach(&id, prepared, self.config.source.make());
                }
                let call = Call {
                    id: id.clone(),
                    outgoing: true,
                    started: now,
                    answered: None,
                    hangup_at: None,
                    dtmf_at: None,
                    ringing: None,
                    responses: Vec::new(),
                    end_reason: None,
                    held: false,
                    early_media: false,
                    failure: None,
                    peer,
                };
                self.calls.insert(CallKey::of(&id), call);
                tracing::info!(call_id = %id.call_id, %uri, "calling");
            }
            Err(e) => self.push_failed(format!("invite: {e:?}")),
        }
        self.ua.flush(io.endpoint, now);
    }

    fn push_failed(&mut self, reason: String) {
        self.reports.push(CallReport {
            call_id: String::new(),
            state: EndState::Failed,
            reason,
            setup: None,
            duration: None,
            responses: vec![],
            bye_status: None,
            media: None,
            recording: vec![],
            early_media: false,
            detail: None,
        });
    }

    /// Calls in progress: id, state, time since the answer (since the start while ringing), media
    /// figures.
    pub fn status(&self, now: Instant) -> Vec<(DialogId, LiveState, Duration, Option<crate::call::MediaSummary>)> {
        self.calls
            .values()
            .map(|c| {
                let state = if c.answered.is_none() {
                    LiveState::Ringing
                } else if c.held {
                    LiveState::Held
                } else {
                    LiveState::Active
                };
                let since = c.answered.unwrap_or(c.started);
                (c.id.clone(), state, now.saturating_duration_since(since), self.media.session(&c.id).map(|s| s.summary()))
            })
            .collect()
    }

    fn key_of(&self, id: &DialogId) -> CallKey {
        CallKey::of(id)
    }

    /// The one call commands apply to: the only call, else the most recent.
    fn current(&self) -> Option<CallKey> {
        self.calls.iter().max_by_key(|(_, c)| c.started).map(|(k, _)| k.clone())
    }

    /// Answers the ringing call (prompt `answer`).
    pub fn answer(&mut self, io: &mut Io<'_>, now: Instant) -> Result<(), &'static str> {
        let key = self.calls.iter().find(|(_, c)| c.ringing.is_some()).map(|(k, _)| k.clone()).ok_or("no call is ringing")?;
        self.answer_call(io, &key, now);
        Ok(())
    }

    fn answer_call(&mut self, io: &mut Io<'_>, key: &CallKey, now: Instant) {
        let Some(call) = self.calls.get_mut(key) else { return };
        let Some((invite, _)) = call.ringing.take() else { return };
        let id = call.id.clone();
        let offer = invite.body_bytes();
        // An INVITE without SDP gets our offer; the ACK brings the answer (late offer, §13.3.1.4).
        match self.media.answer_or_offer(io, &id, &offer, self.config.source.make(), now) {
            Ok(sdp) => log_unsent(self.ua.dialogs().accept(&id, Some(sdp), now), "200 to the INVITE", &id),
            Err(e) => {
                tracing::info!(error = ?e, "cannot answer the offer: 488");
                log_unsent(self.ua.dialogs().reject(&id, 488, now), "488 to the INVITE", &id);
            }
        }
        self.ua.flush(io.endpoint, now);
    }

    /// Hangs up the current call: BYE when answered, CANCEL or 486 while ringing (prompt `hangup`).
    pub fn hangup(&mut self, io: &mut Io<'_>, now: Instant) -> Result<(), &'static str> {
        let key = self.current().ok_or("no call")?;
        self.hangup_call(io, &key, None, now);
        Ok(())
    }

    fn hangup_call(&mut self, io: &mut Io<'_>, key: &CallKey, reason: Option<&str>, now: Instant) {
        let Some(call) = self.calls.get_mut(key) else { return };
        let id = call.id.clone();
        call.hangup_at = None;
        if call.answered.is_some() {
            log_unsent(self.ua.dialogs().send_bye_with_reason(&id, reason, now), "BYE", &id);
        } else if call.outgoing {
            match self.ua.cancel(io.endpoint, &id, now) {
                // §9.1: no CANCEL before a provisional response; try again a T1 later.
                Err(DialogError::WrongState) => call.hangup_at = Some(now + self.ua.dialogs_ref().config().t1),
                r => log_unsent(r, "CANCEL", &id),
            }
        } else {
            call.ringing = None;
            log_unsent(self.ua.dialogs().reject(&id, 486, now), "486 to the INVITE", &id);
        }
        self.ua.flush(io.endpoint, now);
    }

    /// Puts the current call on hold (re-INVITE with `a=sendonly`) or resumes it (`a=sendrecv`).
    pub fn hold(&mut self, io: &mut Io<'_>, hold: bool, now: Instant) -> Result<(), &'static str> {
        let key = self.current().ok_or("no call")?;
        let call = self.calls.get_mut(&key).ok_or("no call")?;
        if call.answered.is_none() {
            return Err("the call is not answered");
        }
        let id = call.id.clone();
        let direction = if hold { Direction::SendOnly } else { Direction::SendRecv };
        let sdp = self.media.reoffer(&id, direction).ok_or("no media")?;
        self.ua.dialogs().send_reinvite(&id, sdp, now).map_err(|_| "a re-INVITE is already in progress")?;
        call.held = hold;
        if let Some(session) = self.media.session_mut(&id) {
            session.set_muted(hold);
        }
        self.ua.flush(io.endpoint, now);
        Ok(())
    }

    /// Moves the phone to the local address `to` (prompt `move ADDR`; port 0 picks a free one): the
    /// driver rebinds the SIP socket, then [`Application::moved`] moves media, registration and
    /// calls there (see the module doc).
    pub fn move_to(&mut self, to: SocketAddr) {
        self.pending_move = Some(to);
    }

    /// The SIP socket moved to `local`: new media ports there, the new contact registered, and a
    /// re-INVITE with the new SDP on every answered call.
    fn on_moved(&mut self, io: &mut Io<'_>, local: SocketAddr, now: Instant) {
        self.config.local = local;
        let contact = format!("sip:{}@{local}", self.config.user);
        self.ua.dialogs().set_local(contact.clone(), local.to_string());
        let stuck = self.media.rebind(io, local.ip());
        if stuck > 0 {
            tracing::warn!(calls = stuck, "no free media ports on the new address: those calls keep the old ones");
        }
        if let Some(r) = self.registration.as_mut() {
            r.move_to(io.endpoint, local, contact, now);
        }
        let answered: Vec<(DialogId, bool)> =
            self.calls.values().filter(|c| c.answered.is_some()).map(|c| (c.id.clone(), c.held)).collect();
        for (id, held) in &answered {
            let direction = if *held { Direction::SendOnly } else { Direction::SendRecv };
            let Some(sdp) = self.media.reoffer(id, direction) else { continue };
            if let Err(e) = self.ua.dialogs().send_reinvite(id, sdp, now) {
                tracing::warn!(call_id = %id.call_id, error = ?e, "no re-INVITE after the move");
            }
        }
        self.ua.flush(io.endpoint, now);
        tracing::info!(%local, calls = answered.len(), "moved to a new address");
    }

    /// Sends DTMF digits on the current call (prompt `dtmf 123#`).
    pub fn send_dtmf(&mut self, io: &mut Io<'_>, digits: &str) -> Result<(), &'static str> {
        let key = self.current().ok_or("no call")?;
        let id = self.calls.get(&key).ok_or("no call")?.id.clone();
        self.media.session_mut(&id).ok_or("no media yet")?.send_dtmf(digits).map_err(|_| "digits are 0-9 * # A-D")?;
        // A command queues no media event (events come from inputs, whose handlers drain them).
        let _ = self.media.flush(io, &key);
        Ok(())
    }

    fn on_ua_event(&mut self, io: &mut Io<'_>, event: UaEvent, now: Instant) {
        match event {
            UaEvent::ResponseSeen { method: Method::Invite, status } => {
                tracing::info!(status, "response to INVITE");
                if let Some(c) = self.calls.values_mut().find(|c| c.outgoing && c.answered.is_none()) {
                    c.responses.push(status);
                }
            }
            UaEvent::ResponseSeen { method: Method::Refer, status } => self.on_refer_answer(status),
            // A challenge to our BYE is answered with our credentials (dialog layer, issue 14
            // point 7): its status is the retry's answer, not the 401/407.
            UaEvent::ResponseSeen { method: Method::Bye, status }
                if status >= 200 && !(matches!(status, 401 | 407) && self.config.credentials.is_some()) =>
            {
                // The dialog ended when the BYE left; its answer belongs to the oldest call we hung
                // up that has none yet.
                if let Some(r) = self.reports.iter_mut().find(|r| r.reason == "bye-local" && r.bye_status.is_none()) {
                    r.bye_status = Some(status);
                }
            }
            UaEvent::Dialog(ev) => self.on_dialog_event(io, ev, now),
            UaEvent::Endpoint(EndpointEvent::Response { tx, response, .. }) => {
                if let Some(r) = self.registration.as_mut() {
                    r.handle_response(io.endpoint, tx, &response, now);
                }
            }
            UaEvent::Endpoint(EndpointEvent::Timeout { tx, .. }) => {
                if let Some(r) = self.registration.as_mut() {
                    r.handle_timeout_of(tx);
                }
            }
            UaEvent::Endpoint(EndpointEvent::Request { tx, request, .. }) => {
                let (answer, message) = super::message::answer_out_of_dialog(&request, "softphone");
                io.endpoint.respond_or_log(tx, answer, now);
                if let Some(m) = message {
                    tracing::info!(from = %m.from, "message received");
                    self.messages.push(m);
                }
            }
            _ => {}
        }
    }

    fn on_dialog_event(&mut self, io: &mut Io<'_>, ev: DialogEvent, now: Instant) {
        if let DialogEvent::Established { id } = &ev {
            self.transfer_answered(io, id, now);
        }
        match ev {
            DialogEvent::Incoming { id, request } => {
                if self.stopping {
                    log_unsent(self.ua.dialogs().reject(&id, 480, now), "480 while stopping", &id);
                    return;
                }
                log_unsent(self.ua.dialogs().ring(&id, now), "180", &id);
                tracing::info!(call_id = %id.call_id, from = %String::from_utf8_lossy(request.header(crate::message::HeaderName::From).unwrap_or(b"")), "incoming call");
                let answer_at = self.config.auto_answer.map(|d| now + d);
                let call = Call {
                    id: id.clone(),
                    outgoing: false,
                    started: now,
                    answered: None,
                    hangup_at: None,
                    dtmf_at: None,
                    ringing: Some((request, answer_at)),
                    responses: Vec::new(),
                    end_reason: None,
                    held: false,
                    early_media: false,
                    failure: None,
                    peer: None,
                };
                self.calls.insert(self.key_of(&id), call);
            }
            DialogEvent::Established { id } => {
                let key = self.key_of(&id);
                let late = self.ua.dialogs_ref().get(&id).is_some_and(|d| d.awaits_late_ack());
                let remote_sdp = self.ua.dialogs_ref().get(&id).and_then(|d| d.remote_sdp().cloned());
                let local_sdp = self.ua.dialogs_ref().get(&id).and_then(|d| d.local_sdp().cloned());
                let Some(call) = self.calls.get_mut(&key) else {
                    // A late 2xx from another fork after the call ended: nothing wants this dialog.
                    log_unsent(self.ua.dialogs().send_bye(&id, now), "BYE to a dialog of an ended call", &id);
                    return;
                };
                if call.answered.is_some() {
                    if call.id != id {
                        // A 2xx from another branch of a forked INVITE (§13.2.2.4): the dialog
                        // layer ACKed it; we keep the first dialog and end this one with a BYE.
                        tracing::info!(call_id = %id.call_id, remote_tag = %id.remote_tag, "2xx from another fork: BYE to the extra dialog");
                        log_unsent(self.ua.dialogs().send_bye(&id, now), "BYE to the extra forked dialog", &id);
                    }
                    return;
                }
                call.id = id.clone();
                call.answered = Some(now);
                if let Some((after, to)) = self.config.move_after.take() {
                    self.move_at = Some((now + after, to));
                }
                call.hangup_at = self.config.duration.map(|d| now + d);
                call.dtmf_at = self.config.dtmf.as_ref().map(|(_, after)| now + *after);
                let setup_ms = now.saturating_duration_since(call.started).as_millis() as u64;
                tracing::info!(call_id = %id.call_id, local_tag = %id.local_tag, remote_tag = %id.remote_tag, setup_ms, "call answered");
                let early_media = call.early_media;
                if call.outgoing && late {
                    self.answer_late_offer(io, &id, remote_sdp, now);
                } else if call.outgoing {
                    // An answer we cannot use (none, or SRTP to a plain offer): ACKed by the dialog
                    // layer already; BYE, and the call fails (issue 15 point 7).
                    if let Err(problem) = super::answer_check::check_answer(local_sdp.as_ref(), remote_sdp.as_ref()) {
                        tracing::warn!(%problem, "unusable answer in the 2xx: hanging up");
                        call.failure = Some((problem.reason().to_owned(), problem.to_string()));
                        log_unsent(self.ua.dialogs().send_bye(&id, now), "BYE after an unusable answer", &id);
                        return;
                    }
                    match remote_sdp {
                        Some(sdp) => {
                            if let Err(e) = self.media.apply_answer(io, &id, &sdp, now) {
                                tracing::warn!(error = ?e, "unusable answer: hanging up");
                                let short = super::srtp_end::unusable_answer(&e);
                                call.end_reason = Some(short.into());
                                call.failure = Some((short.into(), format!("unusable SDP answer in the 2xx: {e:?}")));
                                log_unsent(self.ua.dialogs().send_bye(&id, now), "BYE after an unusable answer", &id);
                            }
                        }
                        None => tracing::warn!("answer without SDP: no media"),
                    }
                }
                if early_media {
                    // The silence of a callee that rang with SDP but sent nothing counts from now.
                    if let Some(s) = self.media.session_mut(&id) {
                        s.restart_inactivity(now);
                    }
                }
            }
            DialogEvent::EarlyMedia { id, code, sdp } => self.on_early_media(io, &id, code, &sdp, now),
            DialogEvent::Reoffer { id, request } => match self.media.answer_reoffer(&id, &request.body_bytes()) {
                Ok(sdp) => drop(self.ua.dialogs().accept(&id, Some(sdp), now)),
                Err(_) => drop(self.ua.dialogs().reject(&id, 488, now)),
            },
            DialogEvent::Answered { id, response } => {
                if let Err(e) = self.media.apply_answer(io, &id, &response.body_bytes(), now) {
                    tracing::warn!(error = ?e, "unusable answer to our re-INVITE");
                }
            }
            DialogEvent::Acked { id } => self.on_acked(io, &id, now),
            DialogEvent::Terminated { id, reason } => self.finish_call(io, &id, reason, now),
            DialogEvent::Refer { id, request } => self.on_refer(io, id, &request, now),
            DialogEvent::Notify { id, request } => self.on_refer_notify(&id, &request, now),
            _ => {}
        }
    }

    fn finish_call(&mut self, io: &mut Io<'_>, id: &DialogId, reason: EndReason, now: Instant) {
        let key = self.key_of(id);
        // Another branch's early dialog of an answered call ended: not this call.
        if self.calls.get(&key).is_some_and(|c| c.answered.is_some() && c.id != *id) {
            return;
        }
        let Some(call) = self.calls.remove(&key) else { return };
        self.transfer_failed(io, &key, reason, now);
        let ended = self.media.end(io, &key);
        let (mut state, mut why) = describe(reason);
        if let Some(r) = call.end_reason {
            state = super::srtp_end::state_after(state, &r);
            why = r;
        }
        let mut detail = None;
        let refused = call.peer.filter(|p| reason == EndReason::Timeout && call.answered.is_none() && io.endpoint.was_unreachable(*p));
        if let Some(peer) = refused {
            // The INVITE failed on an ICMP error, not on Timer B (RFC 3261 §18.4, §17.1.4).
            (state, why, detail) =
                (EndState::Failed, format!("refused:{peer}"), Some(format!("connection refused by {peer} (ICMP unreachable)")));
        }
        if let Some((short, sentence)) = call.failure {
            (state, why, detail) = (EndState::Failed, short, Some(sentence));
        }
        tracing::info!(call_id = %id.call_id, %state, reason = %why, "call ended");
        let (media, recording) = match ended {
            Some(e) => (Some(e.summary), e.recording),
            None => (None, Vec::new()),
        };
        self.reports.push(CallReport {
            call_id: id.call_id.to_string(),
            state,
            reason: why,
            setup: call.answered.map(|a| a.saturating_duration_since(call.started)),
            duration: call.answered.map(|a| now.saturating_duration_since(a)),
            responses: call.responses,
            bye_status: None,
            media,
            recording,
            early_media: call.early_media,
            detail,
        });
    }

    fn on_media_events(&mut self, io: &mut Io<'_>, events: Vec<(CallKey, MediaEvent)>, now: Instant) {
        for (key, ev) in events {
            match ev {
                MediaEvent::Dtmf(d) => {
                    tracing::info!(digit = %d, "DTMF received");
                    if let Some(c) = self.calls.get(&key) {
                        self.digits.push((c.id.call_id.to_string(), d));
                    }
                }
                MediaEvent::Inactive if self.calls.get(&key).is_some_and(|c| c.answered.is_none()) => {
                    tracing::debug!("no early media for a while: the call still rings");
                }
                MediaEvent::Inactive => {
                    tracing::info!("no media from the peer: hanging up");
                    if let Some(c) = self.calls.get_mut(&key) {
                        c.end_reason = Some("rtp-timeout".into());
                    }
                    self.hangup_call(io, &key, Some("SIP;cause=408;text=\"RTP timeout\""), now);
                }
                _ => {}
            }
        }
    }

    fn drain(&mut self, io: &mut Io<'_>, now: Instant) {
        while let Some(ev) = self.ua.poll_event() {
            self.on_ua_event(io, ev, now);
            self.ua.flush(io.endpoint, now);
        }
    }
}

impl Phone {
    /// Once the calls asked for are done, removes the registration (§10.2.2) so the phone can exit.
    fn unregister_when_finished(&mut self, io: &mut Io<'_>, now: Instant) {
        let done = self.config.max_calls.is_some_and(|n| self.reports.len() as u32 >= n) && self.calls.is_empty();
        if let Some(r) = self.registration.as_mut().filter(|r| done && r.state() == RegState::Registered && !r.is_pending()) {
            r.unregister(io.endpoint, now);
        }
    }

    /// The registration state, when registering.
    pub fn registration(&self) -> Option<RegState> {
        self.registration.as_ref().map(Registration::state)
    }
}

/// The Reason of a BYE for a call whose media port another process took (RFC 3326).
const PORT_TAKEN: &str = "SIP;cause=503;text=\"media port taken\"";

impl Application for Phone {
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        if let Some(r) = self.registration.as_mut() {
            if r.state() == RegState::Pending && !r.is_pending() {
                r.start(io.endpoint, now);
            }
        }
        self.media.reserve(io);
        if self.pending_dial.is_some() && !self.media.ready(io) {
            self.dial_at = Some(now);
        } else if let Some((uri, target)) = self.pending_dial.take() {
            self.start_dial(io, uri, Some(target), now);
        }
    }

    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.last_now = Some(now);
        self.ua.handle_endpoint_event(io.endpoint, event, now);
        self.drain(io, now);
        self.unregister_when_finished(io, now);
    }

    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: Bytes, now: Instant) {
        self.last_now = Some(now);
        let events = self.media.handle_media(io, flow, source, payload, now);
        self.on_media_events(io, events, now);
        self.drain(io, now);
    }

    /// Our media port was taken by another process after we offered it: the call cannot carry
    /// audio, so hang it up (CANCEL before the answer, BYE after; see [`crate::application`]).
    fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) {
        self.last_now = Some(now);
        if let Some(key) = self.media.call_of(flow).cloned() {
            tracing::warn!(?flow, "media port taken by another process: hanging up");
            self.hangup_call(io, &key, Some(PORT_TAKEN), now);
            self.drain(io, now);
        }
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.last_now = Some(now);
        if self.dial_at.is_some_and(|t| t <= now) {
            self.dial_at = None;
            if let Some((uri, target)) = self.pending_dial.take() {
                self.start_dial(io, uri, Some(target), now);
            }
        }
        let due_answer: Vec<CallKey> = self
            .calls
            .iter()
            .filter(|(_, c)| c.ringing.as_ref().and_then(|r| r.1).is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due_answer {
            self.answer_call(io, &key, now);
        }
        let due_hangup: Vec<CallKey> =
            self.calls.iter().filter(|(_, c)| c.hangup_at.is_some_and(|t| t <= now)).map(|(k, _)| k.clone()).collect();
        for key in due_hangup {
            self.hangup_call(io, &key, None, now);
        }
        let due_dtmf: Vec<CallKey> =
            self.calls.iter().filter(|(_, c)| c.dtmf_at.is_some_and(|t| t <= now)).map(|(k, _)| k.clone()).collect();
        for key in due_dtmf {
            if let (Some(c), Some((digits, _))) = (self.calls.get_mut(&key), self.config.dtmf.as_ref()) {
                c.dtmf_at = None;
                let id = c.id.clone();
                if let Some(s) = self.media.session_mut(&id) {
                    if let Err(e) = s.send_dtmf(digits) {
                        tracing::warn!(error = ?e, %digits, "DTMF not sent");
                    }
                }
            }
        }
        if let Some((_, to)) = self.move_at.filter(|(at, _)| *at <= now) {
            self.move_at = None;
            self.pending_move = Some(to);
        }
        let events = self.media.handle_timeout(io, now);
        self.on_media_events(io, events, now);
        if let Some(r) = self.registration.as_mut() {
            r.handle_timeout(io.endpoint, now);
        }
        self.ua.handle_timeout(io.endpoint, now);
        self.drain(io, now);
        self.unregister_when_finished(io, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.calls.values().flat_map(|c| [c.ringing.as_ref().and_then(|r| r.1), c.hangup_at, c.dtmf_at]).flatten();
        let refresh = self.registration.as_ref().and_then(Registration::poll_timeout);
        let moving = self.move_at.map(|(at, _)| at);
        calls.chain(self.media.poll_timeout()).chain(self.ua.poll_timeout()).chain(refresh).chain(moving).chain(self.dial_at).min()
    }

    fn poll_move(&mut self) -> Option<SocketAddr> {
        self.pending_move.take().filter(|_| !self.stopping)
    }

    fn moved(&mut self, io: &mut Io<'_>, local: std::io::Result<SocketAddr>, now: Instant) {
        self.last_now = Some(now);
        match local {
            Ok(local) => self.on_moved(io, local, now),
            Err(e) => tracing::warn!(error = %e, "not moved: the new address cannot be bound"),
        }
        self.drain(io, now);
    }

    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.last_now = Some(now);
        self.stopping = true;
        self.pending_dial = None;
        self.dial_at = None;
        let keys: Vec<CallKey> = self.calls.keys().cloned().collect();
        for key in keys {
            self.hangup_call(io, &key, None, now);
        }
        if let Some(r) = self.registration.as_mut() {
            r.unregister(io.endpoint, now);
        }
        self.drain(io, now);
    }

    fn is_done(&self) -> bool {
        let registered = self.registration.as_ref().is_some_and(|r| r.is_pending() || r.state() == RegState::Registered);
        let finished =
            !registered && self.calls.is_empty() && self.last_now.is_some_and(|now| self.ua.is_idle(now)) && self.pending_dial.is_none();
        if self.stopping {
            return finished;
        }
        match self.config.max_calls {
            Some(n) => finished && self.reports.len() as u32 >= n,
            None => false,
        }
    }
}

/// Call transfer (REFER) in both roles: src/ua/refer.rs.
#[path = "refer.rs"]
mod refer;
