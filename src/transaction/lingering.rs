//! [`Lingering`]: what a transaction keeps once it has sent or received its final response
//! (issue 16 point 4).
//!
//! After its final response a transaction mostly waits: on UDP it lingers to answer or absorb
//! retransmissions (RFC 3261 §17, Table 4), for up to `64*T1`. At thousands of requests a second
//! that is hundreds of thousands of transactions at once, so [`Transactions`](super::Transactions)
//! swaps each one, as it enters such a state, for this short form: its key, the bytes of the
//! response that answers a retransmission, and its deadlines. The request, its parsed header
//! table, the timer table and the output queues are dropped.
//!
//! ```text
//!   figure  state                 timers    a matching message                 keeps
//!   8       Completed             J         request: the final response again  key, response bytes
//!   7       Completed             G, H      INVITE: the final response again;  key, response bytes,
//!                                           ACK: to Confirmed                  G interval
//!   7       Confirmed             I         INVITE, ACK: absorbed              key
//!   7       Accepted (RFC 6026)   L         INVITE: absorbed; 2xx from the     key
//!                                           TU: sent (§13.3.1.4)
//!   6       Completed             K         response: absorbed                 key
//!   5       Completed             D         300-699: the ACK again;            key, ACK bytes
//!                                           other responses: absorbed
//!   5       Accepted (RFC 6026)   M         2xx: to the TU (a retransmission,  key
//!                                           or another fork's); others absorbed
//! ```
//!
//! An INVITE client in Accepted needs nothing but its key: every 2xx that matches it goes to the
//! TU whole (the dialog layer ACKs it, §13.2.2.4; a proxy forwards it, §16.7 step 5), and its
//! To tag, not anything the transaction kept, tells a fork from a retransmission. At 1,000 calls a
//! second a UAC, a stateful proxy and a B2BUA each hold 32,000 of these (Timer M is `64*T1`).
//!
//! Not swapped: any transaction with an RFC 2543 key (legacy peers: matching reads the To tags of
//! the request and the response). A lingering transaction reports its [`TransactionState`] as
//! before but has no request ([`Transactions::request`](super::Transactions::request) is `None`).

use super::{Config, Error, Event, TransactionId, TransactionKey, TransactionState};
use crate::message::{Message, Method};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A transaction in one of the lingering states of the module table.
#[derive(Debug)]
pub(crate) struct Lingering {
    /// A copy of the live key whose strings no longer point into the request (see
    /// [`TransactionKey::rebased`], [`TransactionKey::detached`]).
    key: TransactionKey,
    state: State,
    /// When the transaction ends: Timer J, I, L or K, or Timer H in the INVITE server's Completed
    /// (which then reports a timeout first). `None` once Terminated.
    end: Option<Instant>,
    /// The deadline the table's timer heap holds for this transaction.
    pub(crate) scheduled: Option<Instant>,
}

#[derive(Debug)]
enum State {
    /// Non-INVITE server, Completed (Figure 8): `response` (exactly its bytes) answers every
    /// retransmitted request until Timer J (§17.2.2).
    NonInviteServerCompleted {
        response: Bytes,
    },
    /// INVITE server, Completed (Figure 7): `response`, a 300-699, answers each retransmitted INVITE
    /// and is resent by Timer G until the ACK or Timer H. Boxed so that this short-lived state does
    /// not make every other one larger.
    InviteServerCompleted {
        response: Bytes,
        resend: Box<Resend>,
    },
    /// INVITE server, Confirmed (Figure 7): ACKs and INVITEs are absorbed until Timer I.
    InviteServerConfirmed,
    /// INVITE server, Accepted (RFC 6026 §8.5): INVITEs are absorbed, the TU's 2xx retransmissions
    /// are sent, until Timer L. An ACK is the dialog's (the table hands it back as stray).
    InviteServerAccepted,
    /// Non-INVITE client, Completed (Figure 6): response retransmissions are absorbed until Timer K.
    NonInviteClientCompleted,
    /// INVITE client, Completed (Figure 5): each retransmitted 300-699 gets `ack` (exactly its
    /// bytes) again, until Timer D (§17.1.1.2).
    InviteClientCompleted {
        ack: Bytes,
    },
    /// INVITE client, Accepted (RFC 6026 §8.4): every 2xx goes to the TU, until Timer M.
    InviteClientAccepted,
    Terminated,
}

/// Timer G of an INVITE server in Completed (§17.2.1).
#[derive(Debug)]
struct Resend {
    /// When G fires next; `None` on a reliable transport.
    next: Option<Instant>,
    /// The current interval: T1, doubling up to T2.
    interval: Duration,
    /// A reliable transport: the ACK ends the transaction at once (Timer I is zero, Table 4).
    reliable: bool,
}

/// The table's output queues, for what a lingering transaction `id` sends and reports.
pub(crate) struct Queues<'a> {
    pub(crate) id: TransactionId,
    pub(crate) transmits: &'a mut VecDeque<(TransactionId, Message)>,
    pub(crate) events: &'a mut VecDeque<(TransactionId, Event)>,
}

impl Queues<'_> {
    /// Sends the kept response (or ACK) again. It was a message when it was kept, so it parses; if it ever
    /// did not, the retransmission is skipped (logged) rather than a panic.
    fn resend(&mut self, bytes: &Bytes) {
        match Message::parse(bytes.clone()) {
            Ok(msg) => self.transmits.push_back((self.id, msg)),
            Err(e) => tracing::debug!(id = ?self.id, error = %e, "kept response does not parse; not resent"),
        }
    }

    fn event(&mut self, event: Event) {
        self.events.push_back((self.id, event));
    }
}

// ===== impl Lingering =====

impl Lingering {
    /// Figure 8 Completed, ended by Timer J at `end`; `response` is the final response sent, and
    /// `key` the live key (rebased onto a copy of the response, or detached).
    pub(crate) fn non_invite_server(key: &TransactionKey, response: &Message, end: Instant) -> Lingering {
        let (key, response) = keep(key, response);
        Lingering::new(key, State::NonInviteServerCompleted { response }, end, None)
    }

    /// Figure 7 Completed after the 300-699 `response`: Timer G next at `next` (UDP) with the
    /// current `interval`, Timer H at `end`; `reliable` ends the transaction at the ACK (Timer I
    /// is zero, Table 4).
    pub(crate) fn invite_server_completed(
        key: &TransactionKey,
        response: &Message,
        next: Option<Instant>,
        interval: Duration,
        end: Instant,
        reliable: bool,
    ) -> Lingering {
        let (key, response) = keep(key, response);
        Lingering::new(key, State::InviteServerCompleted { response, resend: Box::new(Resend { next, interval, reliable }) }, end, next)
    }

    /// Figure 7 Confirmed, ended by Timer I at `end`.
    pub(crate) fn invite_server_confirmed(key: &TransactionKey, end: Instant) -> Lingering {
        Lingering::new(key.detached(), State::InviteServerConfirmed, end, None)
    }

    /// RFC 6026 Accepted (INVITE server), ended by Timer L at `end`.
    pub(crate) fn invite_server_accepted(key: &TransactionKey, end: Instant) -> Lingering {
        Lingering::new(key.detached(), State::InviteServerAccepted, end, None)
    }

    /// Figure 6 Completed, ended by Timer K at `end`.
    pub(crate) fn non_invite_client(key: &TransactionKey, end: Instant) -> Lingering {
        Lingering::new(key.detached(), State::NonInviteClientCompleted, end, None)
    }

    /// Figure 5 Completed after a 300-699 was ACKed with `ack`, ended by Timer D at `end`.
    pub(crate) fn invite_client_completed(key: &TransactionKey, ack: &Message, end: Instant) -> Lingering {
        let ack = Bytes::copy_from_slice(ack.as_bytes());
        Lingering::new(key.detached(), State::InviteClientCompleted { ack }, end, None)
    }

    /// RFC 6026 Accepted (INVITE client), ended by Timer M at `end`.
    pub(crate) fn invite_client_accepted(key: &TransactionKey, end: Instant) -> Lingering {
        Lingering::new(key.detached(), State::InviteClientAccepted, end, None)
    }

    fn new(key: TransactionKey, state: State, end: Instant, retransmit: Option<Instant>) -> Lingering {
        let scheduled = Some(retransmit.map_or(end, |g| g.min(end)));
        Lingering { key, state, end: Some(end), scheduled }
    }

    /// The key messages are matched by (§17.1.3, §17.2.3).
    pub(crate) fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The state, by the name its figure gives it.
    pub(crate) fn state(&self) -> TransactionState {
        match self.state {
            State::NonInviteServerCompleted { .. }
            | State::InviteServerCompleted { .. }
            | State::NonInviteClientCompleted
            | State::InviteClientCompleted { .. } => TransactionState::Completed,
            State::InviteServerConfirmed => TransactionState::Confirmed,
            State::InviteServerAccepted | State::InviteClientAccepted => TransactionState::Accepted,
            State::Terminated => TransactionState::Terminated,
        }
    }

    /// A server transaction ([`Transactions::forget_server`](super::Transactions::forget_server)
    /// applies).
    pub(crate) fn is_server(&self) -> bool {
        !self.key.is_client()
    }

    /// An INVITE server transaction: a CANCEL finds it answered (§9.2).
    pub(crate) fn is_invite_server(&self) -> bool {
        matches!(self.state, State::InviteServerCompleted { .. } | State::InviteServerConfirmed | State::InviteServerAccepted)
    }

    /// An INVITE client transaction (answered, so a CANCEL comes too late, §9.1).
    pub(crate) fn is_invite_client(&self) -> bool {
        matches!(self.state, State::InviteClientCompleted { .. } | State::InviteClientAccepted)
    }

    /// RFC 6026 Accepted (server): a matching ACK acknowledges the 2xx and belongs to the dialog.
    pub(crate) fn is_accepted(&self) -> bool {
        matches!(self.state, State::InviteServerAccepted)
    }

    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }

    /// The next deadline (Timer G, or the one that ends the transaction); `None` once Terminated.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::InviteServerCompleted { ref resend, .. } => match resend.next {
                Some(g) => self.end.map(|end| end.min(g)),
                None => self.end,
            },
            _ => self.end,
        }
    }

    /// A request that matched the key (§17.2.3): a retransmitted request gets the final response
    /// again, byte for byte (§17.2.1, §17.2.2); the ACK for an INVITE's 300-699 moves to Confirmed
    /// (Timer I = T4 on UDP, at once on a reliable transport); INVITEs and ACKs in Confirmed or
    /// Accepted are absorbed (RFC 6026 §8.7).
    pub(crate) fn handle_request(&mut self, request: &Message, now: Instant, config: &Config, q: &mut Queues<'_>) -> Result<(), Error> {
        let method = request.method().ok_or(Error::NotARequest)?;
        match (&self.state, method) {
            (State::NonInviteServerCompleted { response }, _) => q.resend(response),
            (State::InviteServerCompleted { response, .. }, Method::Invite) => q.resend(response),
            (State::InviteServerCompleted { resend, .. }, Method::Ack) => {
                if resend.reliable {
                    self.terminate(q);
                } else {
                    self.state = State::InviteServerConfirmed;
                    self.end = now.checked_add(config.t4);
                }
            }
            (State::InviteServerConfirmed | State::InviteServerAccepted, Method::Invite | Method::Ack) => {}
            (State::InviteServerCompleted { .. } | State::InviteServerConfirmed | State::InviteServerAccepted, _) => {
                return Err(Error::WrongMethod)
            }
            (State::NonInviteClientCompleted | State::InviteClientCompleted { .. } | State::InviteClientAccepted, _) => {
                return Err(Error::WrongRole)
            }
            (State::Terminated, _) => {}
        }
        Ok(())
    }

    /// A response that matched the key (client, §17.1.3): absorbed in a non-INVITE's Completed
    /// (§17.1.2.2); in an INVITE's Completed a 300-699 is ACKed again and anything else absorbed
    /// (§17.1.1.2); in Accepted every 2xx goes to the TU, anything else is absorbed (RFC 6026
    /// §8.4).
    pub(crate) fn handle_response(&mut self, response: Message, q: &mut Queues<'_>) -> Result<(), Error> {
        let code = response.status().ok_or(Error::NotAResponse)?;
        match &self.state {
            State::InviteClientCompleted { ack } if code >= 300 => q.resend(ack),
            State::InviteClientAccepted if (200..300).contains(&code) => q.event(Event::Response(response)),
            State::NonInviteClientCompleted | State::InviteClientCompleted { .. } | State::InviteClientAccepted | State::Terminated => {}
            _ => return Err(Error::WrongRole),
        }
        Ok(())
    }

    /// A response from the TU: in Accepted a 2xx (the dialog layer's retransmission, §13.3.1.4)
    /// is sent; anything else comes after the final response.
    pub(crate) fn handle_tu_response(&mut self, response: Message, q: &mut Queues<'_>) -> Result<(), Error> {
        let code = response.status().ok_or(Error::NotAResponse)?;
        match self.state {
            State::InviteServerAccepted if (200..300).contains(&code) => {
                q.transmits.push_back((q.id, response));
                Ok(())
            }
            State::NonInviteClientCompleted | State::InviteClientCompleted { .. } | State::InviteClientAccepted => Err(Error::WrongRole),
            _ => Err(Error::FinalAlreadySent),
        }
    }

    /// Fires what is due at `now`, in deadline order: Timer G resends the 300-699 (interval
    /// doubling up to T2, the next deadline counted from the one due, §17.2.1); Timer H reports
    /// [`Event::Timeout`] and terminates; Timers J, I, L, K, D and M terminate.
    pub(crate) fn handle_timeout(&mut self, now: Instant, config: &Config, q: &mut Queues<'_>) {
        if let State::InviteServerCompleted { response, resend } = &mut self.state {
            if let Some(due) = resend.next.filter(|&g| g <= now && self.end.is_none_or(|end| g <= end)) {
                resend.interval = resend.interval.saturating_mul(2).min(config.t2);
                let step = resend.interval.max(Duration::from_millis(1));
                resend.next = due.checked_add(step).filter(|t| *t > now).or_else(|| now.checked_add(step));
                q.resend(response);
            }
        }
        if self.end.is_some_and(|end| end <= now) {
            if matches!(self.state, State::InviteServerCompleted { .. }) {
                q.event(Event::Timeout);
            }
            self.terminate(q);
        }
    }

    /// The transport failed (§17.1.4, §17.2.4): tell the TU and terminate.
    pub(crate) fn handle_transport_error(&mut self, q: &mut Queues<'_>) {
        if !self.is_terminated() {
            q.event(Event::TransportError);
            self.terminate(q);
        }
    }

    fn terminate(&mut self, q: &mut Queues<'_>) {
        self.state = State::Terminated;
        self.end = None;
        q.event(Event::Terminated);
    }
}

/// The key and an exact-size copy of `response`'s bytes, the key rebased onto that copy (or, if
/// the response does not yield the key, copied out of the request).
fn keep(key: &TransactionKey, response: &Message) -> (TransactionKey, Bytes) {
    let kept = Bytes::copy_from_slice(response.as_bytes());
    let key = key.rebased(response, &kept).unwrap_or_else(|| key.detached());
    (key, kept)
}
