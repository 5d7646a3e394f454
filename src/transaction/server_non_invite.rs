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
use super::lingering::Lingering;
use super::machine::{check_non_invite, machine_api, Core};
use super::{Config, Error, Timer, TransactionKey, TransactionState};
use crate::message::Message;
use std::time::Instant;

/// A non-INVITE server transaction (any method but INVITE and ACK, CANCEL included). Build it from
/// the received request with [`ServerNonInvite::new`]; give it the TU's responses with
/// [`ServerNonInvite::handle_tu_response`] and retransmissions with
/// [`ServerNonInvite::handle_request`]; drain the `poll_*` outputs after every input.
#[derive(Debug)]
pub struct ServerNonInvite {
    core: Core,
    state: State,
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
        check_non_invite(&request)?;
        let key = TransactionKey::server(&request)?;
        Ok(ServerNonInvite { core: Core::new(request, key, config)?, state: State::Trying })
    }

    /// [`ServerNonInvite::new`] with the key and the transport's reliability already read from the
    /// request's top Via ([`server_key`](super::machine::server_key)), as the table has them: the
    /// Via is not parsed again.
    pub(crate) fn with_key(request: Message, (key, reliable): (TransactionKey, bool), config: &Config) -> Result<ServerNonInvite, Error> {
        check_non_invite(&request)?;
        Ok(ServerNonInvite { core: Core::with_transport(request, key, reliable, config), state: State::Trying })
    }

    /// A retransmission of the request (§17.2.2): answered with the last response sent, if any.
    pub fn handle_request(&mut self, request: Message, _now: Instant) -> Result<(), Error> {
        let method = request.method().ok_or(Error::NotARequest)?;
        if Some(method) != self.core.request.method() {
            return Err(Error::WrongMethod);
        }
        match &self.state {
            State::Proceeding { provisional } => self.core.transmit(provisional.clone()),
            State::Completed { response } => self.core.transmit(response.clone()),
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
        self.core.transmit(response.clone());
        if code < 200 {
            self.state = State::Proceeding { provisional: response };
        } else {
            self.state = State::Completed { response };
            self.linger(Timer::J, now, self.core.config.timeout());
        }
        Ok(())
    }

    /// Fires Timer J if due at `now`: the transaction terminates.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, _)) = self.core.timers.take_expired(now) {
            if timer == Timer::J {
                self.terminate();
            }
        }
    }

    /// RFC 2543 matching, after the key matched (§17.2.3): the To tag must equal the original
    /// request's. Always true for RFC 3261 keys.
    pub fn accepts(&self, request: &Message) -> bool {
        if !self.core.key.is_rfc2543() {
            return true;
        }
        match (to_tag_of(request), to_tag_of(&self.core.request)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
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
}

machine_api!(ServerNonInvite);

// ----- the short form (issue 16 point 4) -----

impl ServerNonInvite {
    /// This transaction in the short form [`Transactions`](super::Transactions) keeps while it
    /// waits for Timer J in Completed: key and response bytes. `None` in any other state, on a
    /// reliable transport (no Timer J) and for an RFC 2543 key.
    pub(crate) fn lingering(&self) -> Option<Lingering> {
        let State::Completed { response } = &self.state else { return None };
        Some(Lingering::non_invite_server(&self.core.key, response, self.completed_end()?))
    }

    /// Timer J when [`ServerNonInvite::lingering`] would give the short form (Completed, unreliable
    /// transport, RFC 3261 key), without building it.
    pub(crate) fn completed_end(&self) -> Option<Instant> {
        let State::Completed { .. } = &self.state else { return None };
        self.core.timers.get(Timer::J).filter(|_| !self.core.key.is_rfc2543())
    }
}
