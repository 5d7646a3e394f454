//! The non-INVITE client transaction (RFC 3261 §17.1.2, Figure 6).
//!
//! ```text
//!                      new(): request sent; E = T1 (UDP), F = 64*T1
//!                                     |
//!      Timer E: resend,               v
//!      E = min(2E, T2)        +---------------+   Timer F, or transport error:
//!                 +-----------|    Trying     |---------------------------------+
//!                 +---------->|               |   tell TU                       |
//!                             +---------------+                                 |
//!                    1xx: to TU   |       |  200-699: to TU                     |
//!                                 v       |                                     |
//!      Timer E: resend,   +---------------+                                     |
//!      E = T2     +-------|  Proceeding   |---- Timer F, transport error ------>+
//!      1xx: to TU +------>|               |                                     |
//!                         +---------------+                                     |
//!                   200-699: to TU |      |                                     |
//!                                  v      v                                     |
//!                         +---------------+                                     |
//!   responses: absorbed   |   Completed   |   K = T4 (UDP), 0 (reliable)        |
//!                         +---------------+                                     |
//!                                 | Timer K                                     |
//!                                 v                                             v
//!                         +-----------------------------------------------------+
//!                         |                     Terminated                      |
//!                         +-----------------------------------------------------+
//! ```

use super::timer::TimerTable;
use super::{via_is_reliable, Config, Error, Event, Outbox, Timer, TransactionKey, TransactionState};
use crate::message::{Message, Method};
use std::time::{Duration, Instant};

/// A non-INVITE client transaction (any method but INVITE and ACK, CANCEL included). Build it with
/// [`ClientNonInvite::new`], which queues the request; drain the `poll_*` outputs after every input.
#[derive(Debug)]
pub struct ClientNonInvite {
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
    /// Nothing heard; `interval` is the current Timer E interval.
    Trying {
        interval: Duration,
    },
    /// A provisional arrived; Timer E now always runs at T2.
    Proceeding,
    /// A final response arrived; retransmissions of it are absorbed until Timer K.
    Completed,
    Terminated,
}

// ===== impl ClientNonInvite =====

impl ClientNonInvite {
    /// Starts the transaction for `request` at `now`: queues it, arms Timer E (UDP only) and
    /// Timer F (§17.1.2.2).
    pub fn new(request: Message, now: Instant, config: &Config) -> Result<ClientNonInvite, Error> {
        match request.method() {
            None => return Err(Error::NotARequest),
            Some(Method::Invite) => return Err(Error::WrongMethod),
            Some(Method::Ack) => return Err(Error::AckNotATransaction),
            Some(_) => {}
        }
        let key = TransactionKey::client(&request)?;
        let reliable = via_is_reliable(&request)?;
        let mut tx = ClientNonInvite {
            key,
            config: *config,
            reliable,
            state: State::Trying { interval: config.t1 },
            timers: TimerTable::default(),
            out: Outbox::default(),
            request: request.clone(),
        };
        tx.out.transmit(request);
        if !reliable {
            tx.timers.set(Timer::E, now, config.t1);
        }
        tx.timers.set(Timer::F, now, config.timeout());
        Ok(tx)
    }

    /// A response whose key matches this transaction (§17.1.3). Every provisional and the first
    /// final response go to the TU; later ones are absorbed.
    pub fn handle_response(&mut self, response: Message, now: Instant) -> Result<(), Error> {
        let code = response.status().ok_or(Error::NotAResponse)?;
        match (&self.state, code) {
            (State::Trying { .. } | State::Proceeding, 100..=199) => {
                // Timer E keeps its deadline; from its next firing on it runs at T2.
                self.state = State::Proceeding;
                self.out.event(Event::Response(response));
            }
            (State::Trying { .. } | State::Proceeding, _) => {
                self.timers.stop(Timer::E);
                self.timers.stop(Timer::F);
                self.out.event(Event::Response(response));
                self.state = State::Completed;
                if self.reliable {
                    self.terminate();
                } else {
                    self.timers.set(Timer::K, now, self.config.t4);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Fires every timer due at `now`: E retransmits (doubling up to T2 in Trying, T2 in
    /// Proceeding), F reports [`Event::Timeout`] and terminates, K terminates.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, due)) = self.timers.take_expired(now) {
            match timer {
                Timer::E => {
                    let next = match &mut self.state {
                        State::Trying { interval } => {
                            *interval = interval.saturating_mul(2).min(self.config.t2);
                            *interval
                        }
                        State::Proceeding => self.config.t2,
                        State::Completed | State::Terminated => continue,
                    };
                    self.out.transmit(self.request.clone());
                    self.timers.rearm(Timer::E, due, now, next);
                }
                Timer::F => {
                    self.out.event(Event::Timeout);
                    self.terminate();
                }
                Timer::K => self.terminate(),
                _ => {}
            }
        }
    }

    /// The transport could not send the request (§17.1.4): tell the TU and terminate.
    pub fn handle_transport_error(&mut self, _now: Instant) {
        if !self.is_terminated() {
            self.out.event(Event::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        if !matches!(self.state, State::Terminated) {
            self.state = State::Terminated;
            self.out.event(Event::Terminated);
        }
    }

    /// The next message to send: the request and its retransmissions.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.out.poll_transmit()
    }

    /// The next event for the TU.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.poll_event()
    }

    /// When to call [`ClientNonInvite::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next().map(|(_, at)| at)
    }

    /// Which timer [`ClientNonInvite::poll_timeout`] is for.
    pub fn next_timer(&self) -> Option<(Timer, Instant)> {
        self.timers.next()
    }

    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }

    /// The current state (Figure 6 names).
    pub fn state(&self) -> TransactionState {
        match self.state {
            State::Trying { .. } => TransactionState::Trying,
            State::Proceeding => TransactionState::Proceeding,
            State::Completed => TransactionState::Completed,
            State::Terminated => TransactionState::Terminated,
        }
    }

    /// The key responses are matched by (§17.1.3).
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The request this transaction sends.
    pub fn request(&self) -> &Message {
        &self.request
    }
}
