//! The service's built-in `echo` user (sans-IO): answers INVITEs to `sip:echo@...` with 200 and an
//! SDP answer (after 180 Ringing when an answer delay is set), OPTIONS with 200 and Allow/Supported,
//! BYE with 200, and other users with 404 until routing exists.
//!
//! The UAS core of RFC 3261 §13.3.1.4: the 2xx is retransmitted from T1 doubling to T2 until the
//! ACK arrives; without an ACK after 64*T1 the call is ended with a BYE.

use super::{audio_answer, DialogInfo, Rng};
use crate::driver::Application;
use crate::endpoint::{Endpoint, EndpointEvent, ALLOW};
use crate::message::{HeaderName, Message, Method, Uri};
use crate::sdp::SessionDescription;
use crate::transaction::TransactionId;
use crate::transport::response_destination;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Settings of the echo UAS.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Our address, for Contact and SDP.
    pub local: SocketAddr,
    /// Delay between 180 Ringing and 200 OK (0: answer at once, no 180).
    pub answer_delay: Duration,
    /// T1 and T2 for 2xx retransmission.
    pub t1: Duration,
    /// T2.
    pub t2: Duration,
}

#[derive(Debug)]
enum CallState {
    /// Ringing; answer at the instant.
    Ringing { tx: TransactionId, answer_at: Instant },
    /// 200 sent; retransmitting until ACK.
    Answered { ok: Message, dest: SocketAddr, next: Instant, interval: Duration, give_up: Instant },
    /// ACK received.
    Confirmed,
}

#[derive(Debug)]
struct Call {
    invite: Message,
    to_tag: String,
    state: CallState,
    dialog: DialogInfo,
}

/// The echo UAS. Calls are keyed by Call-ID.
#[derive(Debug)]
pub struct EchoUas {
    config: EchoConfig,
    calls: HashMap<String, Call>,
    rng: Rng,
    stopping: bool,
    next_media_port: u16,
    /// Calls answered so far.
    pub answered: u64,
}

impl EchoUas {
    /// A new echo UAS.
    pub fn new(config: EchoConfig, seed: u64) -> EchoUas {
        EchoUas { config, calls: HashMap::new(), rng: Rng::new(seed), stopping: false, next_media_port: 20_000, answered: 0 }
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    fn contact(&self) -> String {
        format!("<sip:echo@{}>", self.config.local)
    }

    fn reply(&self, req: &Message, code: u16, reason: &str, tag: &str) -> Message {
        req.response_to(code, reason, Some(tag)).header(HeaderName::Server, concat!("switchboard/", env!("CARGO_PKG_VERSION"))).finish()
    }

    fn handle_request(&mut self, ep: &mut Endpoint, tx: TransactionId, req: Message, source: SocketAddr, now: Instant) {
        let Some(method) = req.method().cloned() else { return };
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let in_dialog = req.to().ok().and_then(|t| t.tag().map(str::to_owned));
        let tag = in_dialog.clone().unwrap_or_else(|| self.rng.tag());
        match method {
            Method::Options => {
                let ok = req
                    .response_to(200, "OK", Some(&tag))
                    .header(HeaderName::Allow, ALLOW)
                    .header(HeaderName::Supported, "timer")
                    .header(HeaderName::Accept, "application/sdp")
                    .finish();
                ep.respond(tx, ok, now);
            }
            Method::Invite if in_dialog.is_none() => self.new_call(ep, tx, req, source, tag, call_id, now),
            Method::Invite => match self.calls.get(&call_id) {
                // A re-INVITE (hold, resume): answer with the same media, reversed direction.
                Some(_) => {
                    let answer = self.answer_for(&req);
                    let ok = match answer {
                        Some(sdp) => req
                            .response_to(200, "OK", Some(&tag))
                            .header(HeaderName::Contact, self.contact())
                            .body("application/sdp", &sdp.to_bytes()),
                        None => self.reply(&req, 488, "Not Acceptable Here", &tag),
                    };
                    ep.respond(tx, ok, now);
                }
                None => ep.respond(tx, self.reply(&req, 481, "Call/Transaction Does Not Exist", &tag), now),
            },
            Method::Bye => {
                let code = if self.calls.remove(&call_id).is_some() { 200 } else { 481 };
                let reason = if code == 200 { "OK" } else { "Call/Transaction Does Not Exist" };
                ep.respond(tx, self.reply(&req, code, reason, &tag), now);
            }
            Method::Info | Method::Update => {
                let code = if self.calls.contains_key(&call_id) { 200 } else { 481 };
                ep.respond(tx, self.reply(&req, code, if code == 200 { "OK" } else { "Call/Transaction Does Not Exist" }, &tag), now);
            }
            _ => ep.respond(tx, self.reply(&req, 405, "Method Not Allowed", &tag), now),
        }
    }

    fn answer_for(&mut self, req: &Message) -> Option<SessionDescription> {
        let offer = SessionDescription::parse(&req.body_bytes()).ok()?;
        let port = self.next_media_port;
        self.next_media_port = if port >= 60_000 { 20_000 } else { port + 2 };
        audio_answer(&offer, self.config.local.ip(), port, self.rng.next_u64() >> 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn new_call(
        &mut self,
        ep: &mut Endpoint,
        tx: TransactionId,
        req: Message,
        source: SocketAddr,
        tag: String,
        call_id: String,
        now: Instant,
    ) {
        let user_is_echo = matches!(req.request_uri(), Some(Uri::Sip(u)) if u.user == Some("echo"));
        if !user_is_echo || self.stopping {
            let (code, reason) = if self.stopping { (503, "Service Unavailable") } else { (404, "Not Found") };
            ep.respond(tx, self.reply(&req, code, reason, &tag), now);
            return;
        }
        let from = req.from().ok();
        let remote_uri = from.as_ref().map(|f| f.uri.to_string()).unwrap_or_default();
        let remote_tag = from.as_ref().and_then(|f| f.tag()).unwrap_or_default().to_owned();
        let remote_target = req.contacts().next().and_then(Result::ok).map(|c| c.uri.to_string()).unwrap_or_else(|| remote_uri.clone());
        let dialog = DialogInfo {
            call_id: call_id.clone(),
            local: (req.request_uri_str().unwrap_or_default().to_owned(), tag.clone()),
            remote: (remote_uri, remote_tag),
            remote_target,
            local_cseq: 0,
            peer: source,
        };
        let state = if self.config.answer_delay.is_zero() {
            CallState::Ringing { tx, answer_at: now }
        } else {
            ep.respond(tx, req.response_to(180, "Ringing", Some(&tag)).header(HeaderName::Contact, self.contact()).finish(), now);
            CallState::Ringing { tx, answer_at: now + self.config.answer_delay }
        };
        self.calls.insert(call_id.clone(), Call { invite: req, to_tag: tag, state, dialog });
        if self.config.answer_delay.is_zero() {
            self.answer(ep, &call_id, now);
        }
    }

    fn answer(&mut self, ep: &mut Endpoint, call_id: &str, now: Instant) {
        let Some(call) = self.calls.get(call_id) else { return };
        let CallState::Ringing { tx, .. } = call.state else { return };
        let (invite, tag, peer) = (call.invite.clone(), call.to_tag.clone(), call.dialog.peer);
        let Some(sdp) = self.answer_for(&invite) else {
            ep.respond(tx, self.reply(&invite, 488, "Not Acceptable Here", &tag), now);
            self.calls.remove(call_id);
            return;
        };
        let ok =
            invite.response_to(200, "OK", Some(&tag)).header(HeaderName::Contact, self.contact()).body("application/sdp", &sdp.to_bytes());
        let dest = response_destination(&ok).unwrap_or(peer);
        ep.respond(tx, ok.clone(), now);
        self.answered += 1;
        let t1 = self.config.t1;
        if let Some(call) = self.calls.get_mut(call_id) {
            call.state = CallState::Answered { ok, dest, next: now + t1, interval: t1, give_up: now + 64 * t1 };
        }
    }

    /// §13.3.1.4: retransmit the 2xx; after 64*T1 without ACK, confirm and end the call with BYE.
    fn retransmit(&mut self, ep: &mut Endpoint, now: Instant) {
        let t2 = self.config.t2;
        let local = self.config.local;
        let mut give_up = Vec::new();
        for (id, call) in &mut self.calls {
            if let CallState::Answered { ok, dest, next, interval, give_up: limit } = &mut call.state {
                if now >= *limit {
                    give_up.push(id.clone());
                } else if now >= *next {
                    ep.send_stateless(ok, *dest);
                    *interval = (*interval * 2).min(t2);
                    *next = now + *interval;
                }
            }
        }
        for id in give_up {
            if let Some(mut call) = self.calls.remove(&id) {
                tracing::info!(call_id = %id, "no ACK for 2xx: ending the call with BYE");
                let branch = self.rng.branch();
                let bye = call.dialog.request(Method::Bye, local, &branch);
                let _ = ep.send_request(bye, call.dialog.peer, now);
            }
        }
    }
}

impl Application for EchoUas {
    fn handle_event(&mut self, ep: &mut Endpoint, event: EndpointEvent, now: Instant) {
        match event {
            EndpointEvent::Request { tx, request, source } => self.handle_request(ep, tx, request, source, now),
            EndpointEvent::Ack { request, .. } => {
                if let Some(call) = request.call_id().ok().and_then(|c| self.calls.get_mut(c)) {
                    call.state = CallState::Confirmed;
                }
            }
            EndpointEvent::Cancelled { tx } => self.calls.retain(|_, c| !matches!(c.state, CallState::Ringing { tx: t, .. } if t == tx)),
            _ => {}
        }
    }

    fn handle_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.state, CallState::Ringing { answer_at, .. } if answer_at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            self.answer(ep, &id, now);
        }
        self.retransmit(ep, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.calls
            .values()
            .filter_map(|c| match &c.state {
                CallState::Ringing { answer_at, .. } => Some(*answer_at),
                CallState::Answered { next, give_up, .. } => Some((*next).min(*give_up)),
                CallState::Confirmed => None,
            })
            .min()
    }

    fn shutdown(&mut self, ep: &mut Endpoint, now: Instant) {
        self.stopping = true;
        let local = self.config.local;
        for (_, mut call) in self.calls.drain() {
            if matches!(call.state, CallState::Ringing { .. }) {
                continue;
            }
            let branch = self.rng.branch();
            let bye = call.dialog.request(Method::Bye, local, &branch);
            let _ = ep.send_request(bye, call.dialog.peer, now);
        }
    }

    fn is_done(&self) -> bool {
        self.stopping && self.calls.is_empty()
    }
}
