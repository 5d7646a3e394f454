//! The softphone's `dial` (sans-IO): sends an INVITE with an audio offer, ACKs the 2xx (and every
//! retransmission of it, RFC 3261 §13.2.2.4), hangs up with BYE after the call duration, CANCELs a
//! call still ringing when asked to stop, and records what happened for the summary.

use super::{audio_offer, DialogInfo, Rng};
use crate::driver::Application;
use crate::endpoint::{Endpoint, EndpointEvent};
use crate::message::{HeaderName, Message, Method};
use crate::transaction::TransactionId;
use crate::transport::via_value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a dial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Still in progress.
    Pending,
    /// Answered, then ended by our BYE (200 received) or theirs.
    Completed {
        /// Who hung up: "local" or "remote".
        ended_by: &'static str,
    },
    /// A final non-2xx response.
    Rejected(u16, String),
    /// No final response (Timer B), or no answer to BYE.
    Timeout,
    /// We cancelled it (Ctrl-C while ringing).
    Cancelled,
}

#[derive(Debug)]
enum State {
    Calling { tx: TransactionId },
    Confirmed { hangup_at: Instant, ack: Message },
    Ending { tx: TransactionId },
    Done,
}

/// A single outgoing call.
#[derive(Debug)]
pub struct Dialer {
    local: SocketAddr,
    target: SocketAddr,
    duration: Duration,
    state: State,
    dialog: Option<DialogInfo>,
    invite: Message,
    rng: Rng,
    started: Option<Instant>,
    /// Status codes of every response to the INVITE, in order.
    pub responses: Vec<u16>,
    /// When the 2xx arrived, relative to the INVITE.
    pub setup_time: Option<Duration>,
    /// When the call was answered.
    pub answered_at: Option<Instant>,
    /// When the call ended.
    pub ended_at: Option<Instant>,
    /// How it ended.
    pub outcome: Outcome,
    /// The Call-ID.
    pub call_id: String,
}

impl Dialer {
    /// Prepares a call to `uri` at `target` from `local`; `start` sends the INVITE.
    pub fn new(uri: &str, user: &str, local: SocketAddr, target: SocketAddr, duration: Duration, seed: u64) -> Dialer {
        let mut rng = Rng::new(seed);
        let call_id = rng.call_id(local.ip());
        let from_tag = rng.tag();
        let branch = rng.branch();
        // Signalling only for now: the media layer binds this port; until then it is a placeholder.
        let media_port = 20_000 + 2 * (rng.next_u64() % 20_000) as u16;
        let sdp = audio_offer(local.ip(), media_port, rng.next_u64() >> 1);
        let invite = Message::request(Method::Invite, uri)
            .header(HeaderName::Via, via_value(local, &branch))
            .header(HeaderName::MaxForwards, 70)
            .header(HeaderName::From, format_args!("<sip:{user}@{local}>;tag={from_tag}"))
            .header(HeaderName::To, format_args!("<{uri}>"))
            .header(HeaderName::CallId, &call_id)
            .header(HeaderName::CSeq, "1 INVITE")
            .header(HeaderName::Contact, format_args!("<sip:{user}@{local}>"))
            .header(HeaderName::Allow, crate::endpoint::ALLOW)
            .header(HeaderName::UserAgent, concat!("switchboard-softphone/", env!("CARGO_PKG_VERSION")))
            .body("application/sdp", &sdp.to_bytes());
        Dialer {
            local,
            target,
            duration,
            state: State::Done,
            dialog: None,
            invite,
            rng,
            started: None,
            responses: Vec::new(),
            setup_time: None,
            answered_at: None,
            ended_at: None,
            outcome: Outcome::Pending,
            call_id,
        }
    }
}

impl Dialer {
    /// Sends the INVITE.
    pub fn start(&mut self, ep: &mut Endpoint, now: Instant) {
        self.started = Some(now);
        match ep.send_request(self.invite.clone(), self.target, now) {
            Ok(tx) => self.state = State::Calling { tx },
            Err(e) => {
                tracing::error!(error = ?e, "INVITE not sent");
                self.finish(Outcome::Timeout, now);
            }
        }
    }

    fn finish(&mut self, outcome: Outcome, now: Instant) {
        if self.outcome == Outcome::Pending {
            self.outcome = outcome;
        }
        self.ended_at = Some(now);
        self.state = State::Done;
    }

    /// The call's duration from answer to end.
    pub fn talk_time(&self) -> Option<Duration> {
        Some(self.ended_at?.saturating_duration_since(self.answered_at?))
    }

    fn on_invite_response(&mut self, ep: &mut Endpoint, response: Message, now: Instant) {
        let code = response.status().unwrap_or(0);
        self.responses.push(code);
        match code {
            100..=199 => tracing::info!(code, "{}", String::from_utf8_lossy(response.reason().unwrap_or(b""))),
            200..=299 => {
                self.setup_time = self.started.map(|s| now.saturating_duration_since(s));
                self.answered_at = Some(now);
                let to = response.to().ok();
                let remote_tag = to.as_ref().and_then(|t| t.tag()).unwrap_or_default().to_owned();
                let target = response.contacts().next().and_then(Result::ok).map(|c| c.uri.to_string());
                let from = self.invite.from().ok();
                let dialog = DialogInfo {
                    call_id: self.call_id.clone(),
                    local: (
                        from.as_ref().map(|f| f.uri.to_string()).unwrap_or_default(),
                        from.as_ref().and_then(|f| f.tag()).unwrap_or_default().to_owned(),
                    ),
                    remote: (self.invite.request_uri_str().unwrap_or_default().to_owned(), remote_tag),
                    remote_target: target.unwrap_or_else(|| self.invite.request_uri_str().unwrap_or_default().to_owned()),
                    local_cseq: 1,
                    peer: self.target,
                };
                // §13.2.2.4: the ACK has the INVITE's CSeq number and a new branch.
                let branch = self.rng.branch();
                let ack = dialog.build(Method::Ack, 1, self.local, &branch);
                ep.send_stateless(&ack, self.target);
                tracing::info!(setup_ms = self.setup_time.map(|d| d.as_millis() as u64), "call answered");
                self.dialog = Some(dialog);
                self.state = State::Confirmed { hangup_at: now + self.duration, ack };
            }
            _ => {
                let reason = String::from_utf8_lossy(response.reason().unwrap_or(b"")).into_owned();
                tracing::info!(code, %reason, "call rejected");
                self.finish(Outcome::Rejected(code, reason), now);
            }
        }
    }

    fn hang_up(&mut self, ep: &mut Endpoint, now: Instant) {
        let Some(dialog) = self.dialog.as_mut() else { return self.finish(Outcome::Cancelled, now) };
        let branch = self.rng.branch();
        let bye = dialog.request(Method::Bye, self.local, &branch);
        match ep.send_request(bye, self.target, now) {
            Ok(tx) => self.state = State::Ending { tx },
            Err(_) => self.finish(Outcome::Completed { ended_by: "local" }, now),
        }
    }
}

impl Application for Dialer {
    fn handle_event(&mut self, ep: &mut Endpoint, event: EndpointEvent, now: Instant) {
        match (&self.state, event) {
            (State::Calling { tx }, EndpointEvent::Response { tx: t, response }) if *tx == t => self.on_invite_response(ep, response, now),
            (State::Calling { tx }, EndpointEvent::Timeout { tx: t }) if *tx == t => self.finish(Outcome::Timeout, now),
            (State::Confirmed { ack, .. }, EndpointEvent::StrayResponse { response, .. })
                if response.status().is_some_and(|c| (200..300).contains(&c)) =>
            {
                // A retransmitted 2xx: our ACK was lost; send it again (§13.2.2.4).
                let ack = ack.clone();
                ep.send_stateless(&ack, self.target);
            }
            (State::Ending { tx }, EndpointEvent::Response { tx: t, response })
                if *tx == t && response.status().is_some_and(|c| c >= 200) =>
            {
                tracing::info!(code = response.status().unwrap_or(0), "BYE answered");
                self.finish(Outcome::Completed { ended_by: "local" }, now);
            }
            (State::Ending { tx }, EndpointEvent::Timeout { tx: t }) if *tx == t => {
                self.finish(Outcome::Completed { ended_by: "local" }, now)
            }
            (State::Confirmed { .. }, EndpointEvent::Request { tx, request, .. }) if request.method() == Some(&Method::Bye) => {
                let ok = request.response_to(200, "OK", None).finish();
                ep.respond(tx, ok, now);
                tracing::info!("remote hung up");
                self.finish(Outcome::Completed { ended_by: "remote" }, now);
            }
            (_, EndpointEvent::Request { tx, request, .. }) => {
                let code = if request.method() == Some(&Method::Options) { 200 } else { 481 };
                let reason = if code == 200 { "OK" } else { "Call/Transaction Does Not Exist" };
                ep.respond(tx, request.response_to(code, reason, Some("softphone")).finish(), now);
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if let State::Confirmed { hangup_at, .. } = self.state {
            if now >= hangup_at {
                self.hang_up(ep, now);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Confirmed { hangup_at, .. } => Some(hangup_at),
            _ => None,
        }
    }

    fn shutdown(&mut self, ep: &mut Endpoint, now: Instant) {
        match self.state {
            State::Calling { tx } => {
                if ep.cancel(tx, now).is_err() {
                    self.finish(Outcome::Cancelled, now);
                } else {
                    self.outcome = Outcome::Cancelled;
                }
            }
            State::Confirmed { .. } => self.hang_up(ep, now),
            _ => {}
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
