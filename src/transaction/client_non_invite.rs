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

use super::lingering::Lingering;
use super::machine::{check_non_invite, machine_api, Core};
use super::{Config, Error, Event, Timer, TransactionState};
use crate::message::Message;
use std::time::{Duration, Instant};

/// A non-INVITE client transaction (any method but INVITE and ACK, CANCEL included). Build it with
/// [`ClientNonInvite::new`], which queues the request; drain the `poll_*` outputs after every input.
#[derive(Debug)]
pub struct ClientNonInvite {
    core: Core,
    state: State,
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
        check_non_invite(&request)?;
        let key = super::machine::client_key(&request)?;
        let core = Core::client(request, key, config, now, Timer::E, Timer::F)?;
        Ok(ClientNonInvite { core, state: State::Trying { interval: config.t1 } })
    }

    /// A response whose key matches this transaction (§17.1.3). Every provisional and the first
    /// final response go to the TU; later ones are absorbed.
    pub fn handle_response(&mut self, response: Message, now: Instant) -> Result<(), Error> {
        let code = response.status().ok_or(Error::NotAResponse)?;
        match (&self.state, code) {
            (State::Trying { .. } | State::Proceeding, 100..=199) => {
                // Timer E keeps its deadline; from its next firing on it runs at T2.
                self.state = State::Proceeding;
                self.core.event(Event::Response(response));
            }
            (State::Trying { .. } | State::Proceeding, _) => {
                self.core.timers.stop(Timer::E);
                self.core.timers.stop(Timer::F);
                self.core.event(Event::Response(response));
                self.state = State::Completed;
                self.linger(Timer::K, now, self.core.config.t4);
            }
            _ => {}
        }
        Ok(())
    }

    /// Fires every timer due at `now`: E retransmits (doubling up to T2 in Trying, T2 in
    /// Proceeding), F reports [`Event::Timeout`] and terminates, K terminates.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, due)) = self.core.timers.take_expired(now) {
            match timer {
                Timer::E => {
                    let next = match &mut self.state {
                        State::Trying { interval } => {
                            *interval = interval.saturating_mul(2).min(self.core.config.t2);
                            *interval
                        }
                        State::Proceeding => self.core.config.t2,
                        State::Completed | State::Terminated => continue,
                    };
                    self.core.transmit(self.core.request.clone());
                    self.core.timers.rearm(Timer::E, due, now, next);
                }
                Timer::F => {
                    self.core.event(Event::Timeout);
                    self.terminate();
                }
                Timer::K => self.terminate(),
                _ => {}
            }
        }
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
}

machine_api!(ClientNonInvite);

// ----- the short form (issue 16 point 4) -----

impl ClientNonInvite {
    /// This transaction in the short form [`Transactions`](super::Transactions) keeps while it
    /// waits for Timer K in Completed: its key. `None` in any other state.
    pub(crate) fn lingering(&self) -> Option<Lingering> {
        let State::Completed = self.state else { return None };
        Some(Lingering::non_invite_client(&self.core.key, self.core.timers.get(Timer::K)?))
    }
}
