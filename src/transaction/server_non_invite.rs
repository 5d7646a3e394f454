//! The non-INVITE server transaction (RFC 3261 §17.2.2, Figure 8).
//!
//! ```text
//!                      new(): request received
//!                                     |
//!                                     v
//!      request: absorbed      +---------------+
//!                         +---|    Trying     |
//!                         +-->|               |
//!                             +---------------+
//!               1xx from TU: send  |      |  200-699 from TU: send
//!                                  v      |
//!      request: resend 1xx    +---------------+
//!      1xx from TU: send  +---|  Proceeding   |---- transport error: tell TU ----+
//!                         +-->|               |                                  |
//!                             +---------------+                                  |
//!               200-699 from TU: send |   |                                      |
//!                                     v   v                                      |
//!      request: resend final  +---------------+                                  |
//!                         +---|   Completed   |   J = 64*T1 (UDP), 0 (reliable)  |
//!                         +-->|               |                                  |
//!                             +---------------+                                  |
//!                                     | Timer J                                  v
//!                             +--------------------------------------------------+
//!                             |                    Terminated                    |
//!                             +--------------------------------------------------+
//! ```

use super::key::to_tag_of;
use super::timer::TimerTable;
use super::{via_is_reliable, Config, Error, Event, Outbox, Timer, TransactionKey, TransactionState};
use crate::message::{Message, Method};
use std::time::Instant;

/// A non-INVITE server transaction (any method but INVITE and ACK, CANCEL included). Build it from
/// the received request with [`ServerNonInvite::new`]; give it the TU's responses with
/// [`ServerNonInvite::handle_tu_response`] and retransmissions with
/// [`ServerNonInvite::handle_request`]; drain the `poll_*` outputs after every input.
#[derive(Debug)]
pub struct ServerNonInvite {
    request: Message,
    key: TransactionKey,
    config: Config,
    reliable: bool,
    state: State,
    timers: TimerTable,
    out: Outbox,
}

#[derive(Debug)]
enum State {
    /// Nothing sent yet: retransmissions are absorbed.
    Trying,
    /// `provisional`, the last 1xx sent, answers every retransmission.
    Proceeding {
        provisional: Message,
    },
    /// `response`, the final response, answers every retransmission until Timer J.
    Completed {
        response: Message,
    },
    Terminated,
}

// ===== impl ServerNonInvite =====

impl ServerNonInvite {
    /// Starts the transaction for a received request at `now`. Sends nothing and arms no timer: the
    /// TU answers (it must, §17.2.2).
    pub fn new(request: Message, _now: Instant, config: &Config) -> Result<ServerNonInvite, Error> {
        match request.method() {
            None => return Err(Error::NotARequest),
            Some(Method::Invite) => return Err(Error::WrongMethod),
            Some(Method::Ack) => return Err(Error::AckNotATransaction),
            Some(_) => {}
        }
        let key = TransactionKey::server(&request)?;
        let reliable = via_is_reliable(&request)?;
        Ok(ServerNonInvite {
            request,
            key,
            config: *config,
            reliable,
            state: State::Trying,
            timers: TimerTable::default(),
            out: Outbox::default(),
        })
    }

    /// A retransmission of the request (§17.2.2): answered with the last response sent, if any.
    pub fn handle_request(&mut self, request: Message, _now: Instant) -> Result<(), Error> {
        let method = request.method().ok_or(Error::NotARequest)?;
        if Some(method) != self.request.method() {
            return Err(Error::WrongMethod);
        }
        match &self.state {
            State::Proceeding { provisional } => self.out.transmit(provisional.clone()),
            State::Completed { response } => self.out.transmit(response.clone()),
            State::Trying | State::Terminated => {}
        }
        Ok(())
    }

    /// A response from the TU: a 1xx is sent and moves to Proceeding; a 200-699 is sent, moves to
    /// Completed and arms Timer J (UDP; on a reliable transport the transaction ends at once).
    /// Anything after the final response is refused with [`Error::FinalAlreadySent`].
    pub fn handle_tu_response(&mut self, response: Message, now: Instant) -> Result<(), Error> {
        let code = response.status().ok_or(Error::NotAResponse)?;
        if !matches!(self.state, State::Trying | State::Proceeding { .. }) {
            return Err(Error::FinalAlreadySent);
        }
        self.out.transmit(response.clone());
        if code < 200 {
            self.state = State::Proceeding { provisional: response };
        } else {
            self.state = State::Completed { response };
            if self.reliable {
                self.terminate();
            } else {
                self.timers.set(Timer::J, now, self.config.timeout());
            }
        }
        Ok(())
    }

    /// Fires Timer J if due at `now`: the transaction terminates.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, _)) = self.timers.take_expired(now) {
            if timer == Timer::J {
                self.terminate();
            }
        }
    }

    /// The transport could not send a response (§17.2.4): tell the TU and terminate.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if !self.is_terminated() {
            self.out.event(Event::TransportError);
            self.terminate();
        }
    }

    /// RFC 2543 matching, after the key matched (§17.2.3): the To tag must equal the original
    /// request's. Always true for RFC 3261 keys.
    pub fn accepts(&self, request: &Message) -> bool {
        if !self.key.is_rfc2543() {
            return true;
        }
        match (to_tag_of(request), to_tag_of(&self.request)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        if !matches!(self.state, State::Terminated) {
            self.state = State::Terminated;
            self.out.event(Event::Terminated);
        }
    }

    /// The next response to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.out.poll_transmit()
    }

    /// The next event for the TU.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    /// When to call [`ServerNonInvite::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next().map(|(_, at)| at)
    }

    /// Which timer [`ServerNonInvite::poll_timeout`] is for.
    pub fn next_timer(&self) -> Option<(Timer, Instant)> {
        self.timers.next()
    }

    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }

    /// The current state (Figure 8 names).
    pub fn state(&self) -> TransactionState {
        match self.state {
            State::Trying => TransactionState::Trying,
            State::Proceeding { .. } => TransactionState::Proceeding,
            State::Completed { .. } => TransactionState::Completed,
            State::Terminated => TransactionState::Terminated,
        }
    }

    /// The key requests are matched by (§17.2.3).
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The request that created this transaction.
    pub fn request(&self) -> &Message {
        &self.request
    }
}
