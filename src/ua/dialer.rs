//! The softphone's `dial` (sans-IO): one outgoing call through the dialog layer. Sends the INVITE
//! with an audio offer, lets the dialog ACK the 2xx (and every retransmission of it, §13.2.2.4),
//! hangs up with BYE after the call duration, CANCELs a call still ringing when asked to stop, and
//! records what happened for the summary.

use super::audio_offer;
use super::core::{UaCore, UaEvent};
use crate::dialog::{CallParams, DialogConfig, DialogId, Dialogs, EndReason, Event as DialogEvent, Side};
use crate::driver::{Application, Io};
use crate::endpoint::{Endpoint, EndpointEvent};
use crate::message::Method;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How a dial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Still in progress.
    Pending,
    /// Answered, then ended by a BYE from `ended_by` ("local" or "remote").
    Completed {
        /// Who hung up.
        ended_by: &'static str,
    },
    /// A final non-2xx response.
    Rejected(u16),
    /// No final response (Timer B), or the dialog timed out.
    Timeout,
    /// We cancelled it (Ctrl-C while ringing).
    Cancelled,
    /// The dialog ended another way (no ACK, session expired, ...).
    Ended(EndReason),
}

/// A single outgoing call.
#[derive(Debug)]
pub struct Dialer {
    ua: UaCore,
    params: Option<CallParams>,
    duration: Duration,
    pending: Option<DialogId>,
    established: Option<DialogId>,
    hangup_at: Option<Instant>,
    started: Option<Instant>,
    done: bool,
    /// Status codes of every response to the INVITE, in order.
    pub responses: Vec<u16>,
    /// Time from the INVITE to the 2xx.
    pub setup_time: Option<Duration>,
    /// When the call was answered.
    pub answered_at: Option<Instant>,
    /// When the call ended.
    pub ended_at: Option<Instant>,
    /// How it ended.
    pub outcome: Outcome,
    /// The Call-ID, once the INVITE is built.
    pub call_id: String,
}

impl Dialer {
    /// Prepares a call to `uri`, sent to `target` from `local`; [`Dialer::start`] sends the INVITE.
    pub fn new(uri: &str, user: &str, local: SocketAddr, target: SocketAddr, duration: Duration, seed: u64) -> Dialer {
        let config = DialogConfig {
            contact: format!("sip:{user}@{local}"),
            sent_by: local.to_string(),
            rng_seed: seed,
            session_expires: None,
            ..DialogConfig::default()
        };
        // Signalling only for now: the media layer binds this port; until then it is a placeholder.
        let media_port = 20_000 + 2 * (seed % 20_000) as u16;
        let sdp = audio_offer(local.ip(), media_port, seed >> 1).to_bytes();
        let params =
            CallParams { from: format!("<sip:{user}@{local}>"), to: format!("<{uri}>"), target: None, routes: Vec::new(), sdp: Some(sdp) };
        Dialer {
            ua: UaCore::new(Dialogs::new(config), Some(target)),
            params: Some(params),
            duration,
            pending: None,
            established: None,
            hangup_at: None,
            started: None,
            done: false,
            responses: Vec::new(),
            setup_time: None,
            answered_at: None,
            ended_at: None,
            outcome: Outcome::Pending,
            call_id: String::new(),
        }
    }

    /// Sends the INVITE.
    pub fn start(&mut self, ep: &mut Endpoint, now: Instant) {
        self.started = Some(now);
        let Some(params) = self.params.take() else { return };
        match self.ua.dialogs().invite(params, now) {
            Ok(id) => {
                self.call_id = id.call_id.to_string();
                self.pending = Some(id);
            }
            Err(e) => {
                tracing::error!(error = ?e, "INVITE not built");
                self.finish(Outcome::Timeout, now);
            }
        }
        self.ua.flush(ep, now);
    }

    /// The call's duration from answer to end.
    pub fn talk_time(&self) -> Option<Duration> {
        Some(self.ended_at?.saturating_duration_since(self.answered_at?))
    }

    fn finish(&mut self, outcome: Outcome, now: Instant) {
        if self.outcome == Outcome::Pending {
            self.outcome = outcome;
        }
        self.ended_at = Some(now);
        self.done = true;
    }

    fn on_ua_event(&mut self, ep: &mut Endpoint, event: UaEvent, now: Instant) {
        match event {
            UaEvent::ResponseSeen { method: Method::Invite, status } => {
                self.responses.push(status);
                tracing::info!(status, "response to INVITE");
            }
            UaEvent::Dialog(DialogEvent::Established { id }) if self.established.is_none() => {
                self.setup_time = self.started.map(|s| now.saturating_duration_since(s));
                self.answered_at = Some(now);
                self.hangup_at = Some(now + self.duration);
                tracing::info!(setup_ms = self.setup_time.map(|d| d.as_millis() as u64), "call answered");
                self.established = Some(id);
            }
            UaEvent::Dialog(DialogEvent::Terminated { id, reason }) => {
                let ours = self.established.as_ref() == Some(&id) || self.pending.as_ref().is_some_and(|p| p.call_id == id.call_id);
                if !ours || (self.established.is_some() && self.established.as_ref() != Some(&id)) {
                    return;
                }
                let outcome = match reason {
                    EndReason::Bye(Side::Local) => Outcome::Completed { ended_by: "local" },
                    EndReason::Bye(Side::Remote) => Outcome::Completed { ended_by: "remote" },
                    EndReason::Rejected(code) => Outcome::Rejected(code),
                    EndReason::Timeout => Outcome::Timeout,
                    EndReason::Cancelled => Outcome::Cancelled,
                    other => Outcome::Ended(other),
                };
                tracing::info!(?reason, "call ended");
                self.finish(outcome, now);
            }
            UaEvent::Endpoint(EndpointEvent::Request { tx, request, .. }) => {
                let (code, reason) = if request.method() == Some(&Method::Options) { (200, "OK") } else { (405, "Method Not Allowed") };
                let _ = ep.respond(tx, request.response_to(code, reason, Some("softphone")).finish(), now);
            }
            _ => {}
        }
    }

    fn drain(&mut self, ep: &mut Endpoint, now: Instant) {
        while let Some(ev) = self.ua.poll_event() {
            self.on_ua_event(ep, ev, now);
        }
        self.ua.flush(ep, now);
    }
}

impl Application for Dialer {
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.ua.handle_endpoint_event(io.endpoint, event, now);
        self.drain(io.endpoint, now);
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        if self.hangup_at.is_some_and(|t| now >= t) {
            self.hangup_at = None;
            if let Some(id) = self.established.clone() {
                let _ = self.ua.dialogs().send_bye(&id, now);
            }
        }
        self.ua.handle_timeout(io.endpoint, now);
        self.drain(io.endpoint, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.hangup_at.into_iter().chain(self.ua.poll_timeout()).min()
    }

    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.hangup_at = None;
        match (&self.established, &self.pending) {
            (Some(id), _) => {
                let id = id.clone();
                let _ = self.ua.dialogs().send_bye(&id, now);
            }
            (None, Some(id)) => {
                let id = id.clone();
                if self.ua.cancel(io.endpoint, &id, now).is_err() {
                    self.finish(Outcome::Cancelled, now);
                }
            }
            (None, None) => self.finish(Outcome::Cancelled, now),
        }
        self.drain(io.endpoint, now);
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
