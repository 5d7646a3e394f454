//! The service's built-in `echo` user (sans-IO): answers INVITEs to `sip:echo@...` with 200 and an
//! SDP answer (after 180 Ringing when an answer delay is set), re-INVITEs (hold, resume) with the
//! matching answer, out-of-dialog OPTIONS with 200 and Allow/Supported, and other users with 404
//! until routing exists. BYE, CANCEL, 2xx retransmission until the ACK and the BYE when no ACK comes
//! (§13.3.1.4) are the dialog layer's ([`crate::dialog`]), reached through [`UaCore`].

use super::audio_answer;
use super::core::{UaCore, UaEvent};
use crate::dialog::{DialogConfig, DialogId, Dialogs, Event as DialogEvent};
use crate::driver::{Application, Io};
use crate::endpoint::{Endpoint, EndpointEvent, ALLOW};
use crate::message::{HeaderName, Message, Method, Uri};
use crate::sdp::SessionDescription;
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
    /// T1 for 2xx retransmission (§13.3.1.4).
    pub t1: Duration,
    /// T2, the cap of the 2xx retransmission interval.
    pub t2: Duration,
}

/// The echo UAS.
#[derive(Debug)]
pub struct EchoUas {
    config: EchoConfig,
    ua: UaCore,
    /// Calls ringing, with the instant they are answered.
    ringing: HashMap<DialogId, (Instant, Message)>,
    seq: u64,
    next_media_port: u16,
    stopping: bool,
    /// Calls answered so far.
    pub answered: u64,
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
            config,
            ua: UaCore::new(Dialogs::new(dialog_config), None),
            ringing: HashMap::new(),
            seq: seed,
            next_media_port: 20_000,
            stopping: false,
            answered: 0,
        }
    }

    /// Dialogs (and pending INVITEs) in progress.
    pub fn active_calls(&self) -> usize {
        self.ua.dialogs_ref().len()
    }

    /// An SDP answer to the offer in `req`, on the next media port; `None` when nothing matches.
    fn answer_for(&mut self, req: &Message) -> Option<bytes::Bytes> {
        let offer = SessionDescription::parse(&req.body_bytes()).ok()?;
        let port = self.next_media_port;
        self.next_media_port = if port >= 60_000 { 20_000 } else { port + 2 };
        self.seq = self.seq.wrapping_add(1);
        audio_answer(&offer, self.config.local.ip(), port, self.seq >> 1).map(|s| s.to_bytes())
    }

    fn on_incoming(&mut self, id: DialogId, request: Message, now: Instant) {
        let to_echo = matches!(request.request_uri(), Some(Uri::Sip(u)) if u.user == Some("echo"));
        let d = self.ua.dialogs();
        if self.stopping {
            let _ = d.reject(&id, 503, now);
        } else if !to_echo {
            let _ = d.reject(&id, 404, now);
        } else if self.config.answer_delay.is_zero() {
            self.answer(&id, &request, now);
        } else {
            let _ = d.ring(&id, now);
            self.ringing.insert(id, (now + self.config.answer_delay, request));
        }
    }

    fn answer(&mut self, id: &DialogId, request: &Message, now: Instant) {
        match self.answer_for(request) {
            Some(sdp) => {
                if self.ua.dialogs().accept(id, Some(sdp), now).is_ok() {
                    self.answered += 1;
                }
            }
            None => {
                let _ = self.ua.dialogs().reject(id, 488, now);
            }
        }
    }

    fn on_ua_event(&mut self, ep: &mut Endpoint, event: UaEvent, now: Instant) {
        match event {
            UaEvent::Dialog(DialogEvent::Incoming { id, request }) => self.on_incoming(id, request, now),
            UaEvent::Dialog(DialogEvent::Reoffer { id, request }) => {
                // Hold, resume, codec change: answer the new offer the same way.
                match self.answer_for(&request) {
                    Some(sdp) => drop(self.ua.dialogs().accept(&id, Some(sdp), now)),
                    None => drop(self.ua.dialogs().reject(&id, 488, now)),
                }
            }
            UaEvent::Dialog(DialogEvent::Terminated { id, reason }) => {
                tracing::debug!(call_id = %id.call_id, ?reason, "call ended");
                self.ringing.remove(&id);
            }
            UaEvent::Endpoint(EndpointEvent::Request { tx, request, .. }) => {
                let ok = request.method() == Some(&Method::Options);
                let answer = if ok {
                    request
                        .response_to(200, "OK", Some("echo"))
                        .header(HeaderName::Allow, ALLOW)
                        .header(HeaderName::Supported, "timer")
                        .header(HeaderName::Accept, "application/sdp")
                        .finish()
                } else {
                    request.response_to(405, "Method Not Allowed", Some("echo")).header(HeaderName::Allow, ALLOW).finish()
                };
                let _ = ep.respond(tx, answer, now);
            }
            _ => {}
        }
        self.ua.flush(ep, now);
    }

    fn drain(&mut self, ep: &mut Endpoint, now: Instant) {
        while let Some(ev) = self.ua.poll_event() {
            self.on_ua_event(ep, ev, now);
        }
    }
}

impl Application for EchoUas {
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.ua.handle_endpoint_event(io.endpoint, event, now);
        self.drain(io.endpoint, now);
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        let due: Vec<DialogId> = self.ringing.iter().filter(|(_, (at, _))| *at <= now).map(|(id, _)| id.clone()).collect();
        for id in due {
            if let Some((_, request)) = self.ringing.remove(&id) {
                self.answer(&id, &request, now);
            }
        }
        self.ua.handle_timeout(io.endpoint, now);
        self.drain(io.endpoint, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ringing.values().map(|(at, _)| *at).chain(self.ua.poll_timeout()).min()
    }

    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.stopping = true;
        let ids: Vec<DialogId> = self.ua.dialogs_ref().ids().cloned().collect();
        for id in ids {
            if self.ringing.remove(&id).is_some() {
                let _ = self.ua.dialogs().reject(&id, 480, now);
            } else {
                let _ = self.ua.dialogs().send_bye(&id, now);
            }
        }
        self.ua.flush(io.endpoint, now);
        self.drain(io.endpoint, now);
    }

    fn is_done(&self) -> bool {
        self.stopping && self.ua.is_idle()
    }
}
