//! [`DialogUa`]: a bare user agent (an [`UaCore`] and nothing more) for tests that script each
//! dialog step themselves.

use crate::application::{Application, Io};
use crate::dialog::{DialogId, Dialogs, EndReason, Event};
use crate::endpoint::EndpointEvent;
use crate::ua::core::{UaCore, UaEvent};
use std::time::Instant;

/// A user agent that only does what its test tells it: it keeps every dialog event, answers
/// nothing by itself, and leaves out-of-dialog requests unanswered. Commands go through
/// [`super::Net::with`]: change [`DialogUa::dialogs`], then [`DialogUa::flush`].
#[derive(Debug)]
pub struct DialogUa {
    /// The UA core: the dialogs and how their messages travel.
    pub ua: UaCore,
    /// Every dialog event, oldest first.
    pub events: Vec<Event>,
    /// Endpoint events that were not about a dialog, oldest first.
    pub others: Vec<EndpointEvent>,
    /// Status codes of the responses to the requests its dialogs sent, oldest first (a 422 the
    /// dialog layer retried by itself shows here and nowhere else).
    pub statuses: Vec<u16>,
}

impl DialogUa {
    /// A user agent over `dialogs`.
    pub fn new(dialogs: Dialogs) -> DialogUa {
        DialogUa { ua: UaCore::new(dialogs, None), events: Vec::new(), others: Vec::new(), statuses: Vec::new() }
    }

    /// The dialogs, for a command; call [`DialogUa::flush`] after it.
    pub fn dialogs(&mut self) -> &mut Dialogs {
        self.ua.dialogs()
    }

    /// Sends what the last command produced and keeps its events.
    pub fn flush(&mut self, io: &mut Io<'_>, now: Instant) {
        self.ua.flush(io.endpoint, now);
        self.drain();
    }

    /// The latest incoming call.
    pub fn incoming(&self) -> Option<DialogId> {
        self.events.iter().rev().find_map(|e| if let Event::Incoming { id, .. } = e { Some(id.clone()) } else { None })
    }

    /// The latest dialog that was established.
    pub fn established(&self) -> Option<DialogId> {
        self.events.iter().rev().find_map(|e| if let Event::Established { id } = e { Some(id.clone()) } else { None })
    }

    /// Why each dialog ended, in order.
    pub fn ended(&self) -> Vec<EndReason> {
        self.events.iter().filter_map(|e| if let Event::Terminated { reason, .. } = e { Some(*reason) } else { None }).collect()
    }

    fn drain(&mut self) {
        while let Some(ev) = self.ua.poll_event() {
            match ev {
                UaEvent::Dialog(ev) => self.events.push(ev),
                UaEvent::Endpoint(ev) => self.others.push(ev),
                UaEvent::ResponseSeen { status, .. } => self.statuses.push(status),
            }
        }
    }
}

impl Application for DialogUa {
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.ua.handle_endpoint_event(io.endpoint, event, now);
        self.drain();
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.ua.handle_timeout(io.endpoint, now);
        self.drain();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.ua.poll_timeout()
    }

    fn shutdown(&mut self, _io: &mut Io<'_>, _now: Instant) {}

    fn is_done(&self) -> bool {
        false
    }
}
