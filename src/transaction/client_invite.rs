//! The INVITE client transaction (RFC 3261 §17.1.1, Figure 5, as updated by RFC 6026 §8.4, Figure 3).
//!
//! ```text
//!                         new(): INVITE sent; A = T1 (UDP), B = 64*T1
//!                                     |
//!      Timer A: resend INVITE,        v
//!      A = 2 * previous A     +---------------+   Timer B, or transport error:
//!                 +-----------|    Calling    |----------------------------------+
//!                 +---------->|               |   tell TU                        |
//!                             +---------------+                                  |
//!                   1xx: to TU  |     |     |  2xx: to TU                        |
//!                               |     |     +------------------------------+     |
//!                               v     |                                    |     |
//!                    +---------------+|  300-699: send ACK, to TU          |     |
//!   1xx: to TU  +----|  Proceeding   ||                                    |     |
//!               +--->|               |---- 2xx: to TU -------------------->+     |
//!                    +---------------+|                                    |     |
//!          300-699: send ACK, to TU |  |                                   v     |
//!                                   v  v                           +---------------+
//!                    +---------------+             2xx: to TU +----|   Accepted    |
//!   300-699:    +----|   Completed   |                        +--->|  M = 64*T1    |
//!   resend ACK  +--->|               | D = 32 s (UDP),             +---------------+
//!                    +---------------+ 0 (reliable)                        |     |
//!                            | Timer D                            Timer M  |     |
//!                            v                                             v     v
//!                    +-----------------------------------------------------------+
//!                    |                        Terminated                         |
//!                    +-----------------------------------------------------------+
//! ```
//!
//! RFC 6026 §7.2: after a 2xx the transaction does not end at once but waits in Accepted for
//! Timer M (`64*T1`, on every transport), passing each further 2xx to the TU: retransmissions of
//! the first one, and the 2xx of other forks (another To tag). So a proxy keeps forwarding them
//! upstream (§16.7 step 5) and a UAC's dialog layer ACKs each (§13.2.2.4), and none of them reaches
//! the TU as a stray response. Provisional and 300-699 responses in Accepted are absorbed.
//!
//! [`Transactions`](super::Transactions) keeps this machine only until its final response:
//! Completed and Accepted are spent in the short form ([`Lingering`]: the key, and in Completed
//! the ACK's bytes), so a call's INVITE and its parsed headers are freed at the 2xx rather than
//! 32 s later.

use super::build::{build_ack, build_cancel};
use super::lingering::Lingering;
use super::machine::{machine_api, Core};
use super::{Config, Error, Event, Timer, TransactionState};
use crate::message::{Message, Method};
use std::time::{Duration, Instant};

/// An INVITE client transaction. Build it with [`ClientInvite::new`], which queues the INVITE;
/// feed responses with [`ClientInvite::handle_response`] and drain the `poll_*` outputs after every
/// input (see the [module run loop](super)).
#[derive(Debug)]
pub struct ClientInvite {
    core: Core,
    state: State,
}

/// Each state holds only what it needs.
#[derive(Debug)]
enum State {
    /// Waiting for any response; `interval` is the current Timer A interval.
    Calling {
        interval: Duration,
    },
    /// A provisional response arrived; no more retransmissions.
    Proceeding,
    /// A 300-699 arrived and was ACKed; the ACK is resent for each retransmitted final response.
    Completed {
        ack: Message,
    },
    /// A 2xx arrived (RFC 6026 §7.2): further 2xx go to the TU until Timer M.
    Accepted,
    Terminated,
}

// ===== impl ClientInvite =====

impl ClientInvite {
    /// Starts the transaction for `request` (an INVITE with a branch in its top Via) at `now`:
    /// queues the INVITE, arms Timer A (UDP only) and Timer B (§17.1.1.2).
    pub fn new(request: Message, now: Instant, config: &Config) -> Result<ClientInvite, Error> {
        if request.method() != Some(&Method::Invite) {
            return Err(Error::WrongMethod);
        }
        let key = super::machine::client_key(&request)?;
        // Fail now rather than on the first 4xx: the ACK needs these.
        request.call_id()?;
        request.from()?;
        request.to()?;
        let core = Core::client(request, key, config, now, Timer::A, Timer::B)?;
        Ok(ClientInvite { core, state: State::Calling { interval: config.t1 } })
    }

    /// A response whose key matches this transaction (§17.1.3). 1xx and 2xx go to the TU; the first
    /// 2xx moves to Accepted, where every further 2xx goes to the TU too (RFC 6026 §8.4); a 300-699
    /// is ACKed and goes to the TU once; its retransmissions are ACKed again and absorbed. Anything
    /// after Terminated is ignored.
    pub fn handle_response(&mut self, response: Message, now: Instant) -> Result<(), Error> {
        let code = response.status().ok_or(Error::NotAResponse)?;
        match (&self.state, code) {
            (State::Calling { .. } | State::Proceeding, 100..=199) => {
                self.core.timers.stop(Timer::A);
                self.core.timers.stop(Timer::B);
                self.state = State::Proceeding;
                self.core.event(Event::Response(response));
            }
            (State::Calling { .. } | State::Proceeding, 200..=299) => {
                self.core.timers.stop(Timer::A);
                self.core.timers.stop(Timer::B);
                self.core.event(Event::Response(response));
                self.state = State::Accepted;
                // Timer M is 64*T1 whatever the transport (RFC 6026 §8.4): forks answer late
                // over TCP too.
                self.core.timers.set(Timer::M, now, self.core.config.timeout());
            }
            (State::Accepted, 200..=299) => self.core.event(Event::Response(response)),
            (State::Calling { .. } | State::Proceeding, _) => self.recv_failure(response, now)?,
            (State::Completed { ack }, 300..) => self.core.transmit(ack.clone()),
            // Late provisional or 2xx in Completed, 1xx or 300-699 in Accepted, anything once
            // Terminated: nothing to do.
            _ => {}
        }
        Ok(())
    }

    /// First 300-699 final response: ACK it, tell the TU, move to Completed.
    fn recv_failure(&mut self, response: Message, now: Instant) -> Result<(), Error> {
        let ack = build_ack(&self.core.request, &response)?;
        self.core.timers.stop(Timer::A);
        self.core.timers.stop(Timer::B);
        self.core.transmit(ack.clone());
        self.core.event(Event::Response(response));
        self.state = State::Completed { ack };
        self.linger(Timer::D, now, Config::TIMER_D);
        Ok(())
    }

    /// Fires every timer due at `now`: A retransmits (interval doubling, no cap), B reports
    /// [`Event::Timeout`] and terminates, D and M terminate. A call with nothing due does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, due)) = self.core.timers.take_expired(now) {
            match timer {
                Timer::A => {
                    if let State::Calling { interval } = &mut self.state {
                        *interval = interval.saturating_mul(2);
                        let next = *interval;
                        self.core.transmit(self.core.request.clone());
                        self.core.timers.rearm(Timer::A, due, now, next);
                    }
                }
                Timer::B => {
                    self.core.event(Event::Timeout);
                    self.terminate();
                }
                Timer::D | Timer::M => self.terminate(),
                _ => {}
            }
        }
    }

    /// Builds the CANCEL for this INVITE (§9.1). Refused before a provisional response
    /// ([`Error::CancelTooEarly`]) and after a final one ([`Error::CancelTooLate`]). Start the
    /// CANCEL as its own [`super::ClientNonInvite`].
    pub fn cancel(&self) -> Result<Message, Error> {
        match self.state {
            State::Calling { .. } => Err(Error::CancelTooEarly),
            State::Proceeding => build_cancel(&self.core.request),
            State::Completed { .. } | State::Accepted | State::Terminated => Err(Error::CancelTooLate),
        }
    }

    /// The current state (Figure 5 names).
    pub fn state(&self) -> TransactionState {
        match self.state {
            State::Calling { .. } => TransactionState::Calling,
            State::Proceeding => TransactionState::Proceeding,
            State::Completed { .. } => TransactionState::Completed,
            State::Accepted => TransactionState::Accepted,
            State::Terminated => TransactionState::Terminated,
        }
    }

    /// The timer values this transaction runs with.
    pub fn config(&self) -> &Config {
        &self.core.config
    }
}

machine_api!(ClientInvite);

// ----- the short form (issue 16 point 4) -----

impl ClientInvite {
    /// This transaction in the short form [`Transactions`](super::Transactions) keeps while it
    /// waits for Timer D in Completed (its key and the ACK) or Timer M in Accepted (its key).
    /// `None` in any other state.
    pub(crate) fn lingering(&self) -> Option<Lingering> {
        match &self.state {
            State::Completed { ack } => Some(Lingering::invite_client_completed(&self.core.key, ack, self.core.timers.get(Timer::D)?)),
            State::Accepted => Some(Lingering::invite_client_accepted(&self.core.key, self.core.timers.get(Timer::M)?)),
            _ => None,
        }
    }
}
