//! The INVITE server transaction (RFC 3261 §17.2.1, Figure 7).
//!
//! ```text
//!                      new(): INVITE received; Trying100 = 200 ms
//!                                     |
//!      INVITE: resend last            v
//!      provisional            +---------------+   Trying100 (TU silent): send 100 Trying
//!      1xx from TU: send  +---|  Proceeding   |<--+
//!                         +-->|               |---+
//!                             +---------------+
//!                  300-699 from TU:  |     |   2xx from TU: send, L = 64*T1 (RFC 6026 §8.5)
//!                  send, G = T1 (UDP)|     +-----------------------------+
//!                  H = 64*T1         |                                   v
//!                                    v                           +---------------+
//!      INVITE: resend final   +---------------+  INVITE: absorbed|   Accepted    |
//!      Timer G: resend,   +---|   Completed   |  2xx from TU:    |               |
//!      G = min(2G, T2)    +-->|               |  send (§13.3.1.4)+---------------+
//!                             +---------------+  ACK: to the TU          |
//!                                    | ACK          Timer H: Timeout     | Timer L
//!                                    v              transport error  |   |
//!                             +---------------+                      |   |
//!      ACK: absorbed      +---|   Confirmed   |   I = T4 (UDP), 0    |   |
//!                         +-->|               |   (reliable)         |   |
//!                             +---------------+                      |   |
//!                                    | Timer I                       v   v
//!                             +-----------------------------------------------+
//!                             |                  Terminated                   |
//!                             +-----------------------------------------------+
//! ```

use super::key::to_tag_of;
use super::lingering::Lingering;
use super::machine::{machine_api, Core};
use super::{Config, Error, Event, Timer, TransactionKey, TransactionState};
use crate::message::{HeaderName, Message, Method};
use std::time::{Duration, Instant};

/// An INVITE server transaction. Build it from the received INVITE with [`ServerInvite::new`];
/// give it the TU's responses with [`ServerInvite::handle_tu_response`] and retransmissions and the
/// ACK with [`ServerInvite::handle_request`]; drain the `poll_*` outputs after every input.
#[derive(Debug)]
pub struct ServerInvite {
    core: Core,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Waiting for the TU; `provisional` is the last 1xx sent, resent for each retransmission.
    Proceeding {
        provisional: Provisional,
    },
    /// A 300-699 went out; resent by Timer G (current `interval`) and for each retransmission.
    Completed {
        response: Message,
        interval: Duration,
    },
    /// The ACK arrived; later ACKs are absorbed until Timer I.
    Confirmed,
    /// A 2xx went out (RFC 6026 §8.5): retransmitted INVITEs are absorbed instead of reaching the
    /// TU as new requests, and the TU's 2xx retransmissions are sent, until Timer L.
    Accepted,
    Terminated,
}

/// The last provisional response sent in Proceeding.
#[derive(Debug)]
enum Provisional {
    /// None yet: a retransmitted INVITE is absorbed.
    None,
    /// Our own `100 Trying`. Rebuilt from the INVITE for each retransmission instead of kept: it is
    /// the same bytes every time, and a transaction waiting on a slow TU then holds no response
    /// (about 1 KiB less each, see BENCHMARKS.md "Transactions").
    Trying,
    /// A 1xx from the TU.
    Tu(Message),
}

// ===== impl ServerInvite =====

impl ServerInvite {
    /// Starts the transaction for a received INVITE at `now` and arms the 200 ms `100 Trying`
    /// timer (§17.2.1). Sends nothing yet.
    pub fn new(request: Message, now: Instant, config: &Config) -> Result<ServerInvite, Error> {
        if request.method() != Some(&Method::Invite) {
            return Err(Error::WrongMethod);
        }
        let key = TransactionKey::server(&request)?;
        let core = Core::new(request, key, config)?;
        Ok(Self::with_core(core, now))
    }

    /// [`ServerInvite::new`] with the key and the transport's reliability already read from the
    /// request's top Via ([`server_key`](super::machine::server_key)), as the table has them: the
    /// Via is not parsed again.
    pub(crate) fn with_key(
        request: Message,
        now: Instant,
        (key, reliable): (TransactionKey, bool),
        config: &Config,
    ) -> Result<ServerInvite, Error> {
        if request.method() != Some(&Method::Invite) {
            return Err(Error::WrongMethod);
        }
        Ok(Self::with_core(Core::with_transport(request, key, reliable, config), now))
    }

    fn with_core(mut core: Core, now: Instant) -> ServerInvite {
        core.timers.set(Timer::Trying100, now, Config::TRYING_DELAY);
        ServerInvite { core, state: State::Proceeding { provisional: Provisional::None } }
    }

    /// A request matching this transaction (§17.2.3): a retransmitted INVITE is answered with the
    /// last response sent (if any); the ACK for the non-2xx final response moves to Confirmed; later
    /// ACKs are absorbed. Nothing here goes to the TU (§17.2.1).
    pub fn handle_request(&mut self, request: Message, now: Instant) -> Result<(), Error> {
        let method = request.method().ok_or(Error::NotARequest)?;
        match (method, &self.state) {
            (Method::Invite, State::Proceeding { provisional: Provisional::Trying }) => self.core.transmit(self.trying()),
            (Method::Invite, State::Proceeding { provisional: Provisional::Tu(p) }) => self.core.transmit(p.clone()),
            (Method::Invite, State::Completed { response, .. }) => self.core.transmit(response.clone()),
            (Method::Invite, State::Accepted) => {}
            (Method::Ack, State::Completed { .. }) => {
                self.core.timers.stop(Timer::G);
                self.core.timers.stop(Timer::H);
                self.state = State::Confirmed;
                self.linger(Timer::I, now, self.core.config.t4);
            }
            (Method::Invite | Method::Ack, _) => {}
            _ => return Err(Error::WrongMethod),
        }
        Ok(())
    }

    /// A response from the TU. In Proceeding: a 1xx is sent and remembered; a 2xx is sent and
    /// moves to Accepted with Timer L (RFC 6026 §8.5; the dialog layer owns the 2xx
    /// retransmissions, §13.3.1.4, and they are sent from Accepted); a 300-699 is sent, arms Timer
    /// G (UDP) and Timer H, and moves to Completed. Anything else after the final response is
    /// refused with [`Error::FinalAlreadySent`].
    pub fn handle_tu_response(&mut self, response: Message, now: Instant) -> Result<(), Error> {
        let code = response.status().ok_or(Error::NotAResponse)?;
        if matches!(self.state, State::Accepted) && (200..300).contains(&code) {
            self.core.transmit(response);
            return Ok(());
        }
        if !matches!(self.state, State::Proceeding { .. }) {
            return Err(Error::FinalAlreadySent);
        }
        self.core.timers.stop(Timer::Trying100);
        self.core.transmit(response.clone());
        match code {
            100..=199 => self.state = State::Proceeding { provisional: Provisional::Tu(response) },
            200..=299 => {
                self.state = State::Accepted;
                self.core.timers.set(Timer::L, now, self.core.config.timeout());
            }
            _ => {
                self.state = State::Completed { response, interval: self.core.config.t1 };
                self.core.set_retransmit(Timer::G, now, self.core.config.t1);
                self.core.timers.set(Timer::H, now, self.core.config.timeout());
            }
        }
        Ok(())
    }

    /// Fires every timer due at `now`: Trying100 sends `100 Trying` if the TU is still silent, G
    /// resends the final response (interval doubling up to T2), H reports [`Event::Timeout`] and
    /// terminates, I terminates.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((timer, due)) = self.core.timers.take_expired(now) {
            match timer {
                Timer::Trying100 => self.send_trying(),
                Timer::G => {
                    if let State::Completed { response, interval } = &mut self.state {
                        *interval = interval.saturating_mul(2).min(self.core.config.t2);
                        let next = *interval;
                        self.core.transmit(response.clone());
                        self.core.timers.rearm(Timer::G, due, now, next);
                    }
                }
                Timer::H => {
                    self.core.event(Event::Timeout);
                    self.terminate();
                }
                Timer::I | Timer::L => self.terminate(),
                _ => {}
            }
        }
    }

    /// §17.2.1: the TU is silent after 200 ms, so the transaction answers `100 Trying` itself.
    fn send_trying(&mut self) {
        if let State::Proceeding { provisional: provisional @ Provisional::None } = &mut self.state {
            *provisional = Provisional::Trying;
            let trying = self.trying();
            self.core.transmit(trying);
        }
    }

    /// The `100 Trying` for the INVITE (§8.2.6.1: Timestamp copied, no To tag).
    fn trying(&self) -> Message {
        self.core.request.response_to(100, "Trying", None).copy_headers(&self.core.request, HeaderName::Timestamp).finish()
    }

    /// RFC 2543 matching, after the key matched (§17.2.3): an INVITE must carry the To tag of the
    /// original INVITE; an ACK must carry the To tag of the final response sent. In Confirmed any
    /// ACK with the key is absorbed. Always true for RFC 3261 keys.
    pub fn accepts(&self, request: &Message) -> bool {
        if !self.core.key.is_rfc2543() {
            return true;
        }
        let Ok(tag) = to_tag_of(request) else { return false };
        match (request.method(), &self.state) {
            (Some(Method::Ack), State::Completed { response, .. }) => to_tag_of(response).ok() == Some(tag),
            (Some(Method::Ack), State::Confirmed) => true,
            (Some(Method::Ack), _) => false,
            _ => to_tag_of(&self.core.request).ok() == Some(tag),
        }
    }

    /// True while the TU may still answer (Proceeding): a CANCEL would have an effect (§9.2).
    pub fn is_proceeding(&self) -> bool {
        matches!(self.state, State::Proceeding { .. })
    }

    /// True after a 2xx (RFC 6026 Accepted): an ACK that matches this transaction acknowledges the
    /// 2xx and belongs to the TU's dialog, not to the transaction (RFC 6026 §8.6).
    pub fn is_accepted(&self) -> bool {
        matches!(self.state, State::Accepted)
    }

    /// The current state (Figure 7 names).
    pub fn state(&self) -> TransactionState {
        match self.state {
            State::Proceeding { .. } => TransactionState::Proceeding,
            State::Completed { .. } => TransactionState::Completed,
            State::Confirmed => TransactionState::Confirmed,
            State::Accepted => TransactionState::Accepted,
            State::Terminated => TransactionState::Terminated,
        }
    }
}

machine_api!(ServerInvite);

// ----- the short form (issue 16 point 4) -----

impl ServerInvite {
    /// This transaction in the short form [`Transactions`](super::Transactions) keeps once its
    /// final response is sent: key and 300-699 bytes in Completed (Timers G, H), key alone in
    /// Confirmed (Timer I) and Accepted (Timer L). `None` in Proceeding and for an RFC 2543 key.
    pub(crate) fn lingering(&self) -> Option<Lingering> {
        if self.core.key.is_rfc2543() {
            return None;
        }
        match &self.state {
            State::Completed { response, interval } => Some(Lingering::invite_server_completed(
                &self.core.key,
                response,
                self.core.timers.get(Timer::G),
                *interval,
                self.core.timers.get(Timer::H)?,
                self.core.reliable,
            )),
            State::Confirmed => Some(Lingering::invite_server_confirmed(&self.core.key, self.core.timers.get(Timer::I)?)),
            State::Accepted => Some(Lingering::invite_server_accepted(&self.core.key, self.core.timers.get(Timer::L)?)),
            _ => None,
        }
    }
}
