//! [`Lingering`]: what a transaction keeps once it only waits out its last timer (issue 16 point 4).
//!
//! After its final response a transaction mostly waits: on UDP it lingers to answer or absorb
//! retransmissions (RFC 3261 §17, Table 4), for up to `64*T1`. At thousands of requests a second
//! that is hundreds of thousands of transactions at once, so [`Transactions`](super::Transactions)
//! swaps each one, as it enters such a state, for this short form: its key, the bytes of the
//! response that answers a retransmission, and one deadline. The request, its parsed header table,
//! the timer table and the output queues are dropped.
//!
//! ```text
//!   figure  state                 ends at   a matching message                 keeps
//!   8       Completed             Timer J   request: the final response again  key, response bytes
//!   7       Confirmed             Timer I   INVITE, ACK: absorbed              key
//!   7       Accepted (RFC 6026)   Timer L   INVITE: absorbed; 2xx from the     key
//!                                           TU: sent (§13.3.1.4)
//!   6       Completed             Timer K   response: absorbed                 key
//! ```
//!
//! Not swapped: the INVITE server's Completed (Timer G still resends its final response and the ACK
//! is still awaited), the INVITE client's Completed and Accepted (the ACK is resent; further 2xx go
//! to the TU), and any transaction with an RFC 2543 key (legacy peers: matching reads the To tags).
//! A lingering transaction reports [`TransactionState`] as before but has no request
//! ([`Transactions::request`](super::Transactions::request) is `None`).

use super::{Error, Event, TransactionKey, TransactionState};
use crate::message::{Message, Method};
use bytes::Bytes;
use std::time::Instant;

/// A transaction in one of the lingering states of the module table.
#[derive(Debug)]
pub(crate) struct Lingering {
    /// A copy of the live key whose strings no longer point into the request (see
    /// [`TransactionKey::rebased`], [`TransactionKey::detached`]).
    key: TransactionKey,
    state: State,
    /// When the last timer (J, I, L or K) ends the transaction; `None` once Terminated.
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
    /// INVITE server, Confirmed (Figure 7): ACKs and INVITEs are absorbed until Timer I.
    InviteServerConfirmed,
    /// INVITE server, Accepted (RFC 6026 §8.5): INVITEs are absorbed, the TU's 2xx retransmissions
    /// are sent, until Timer L. An ACK is the dialog's (the table hands it back as stray).
    InviteServerAccepted,
    /// Non-INVITE client, Completed (Figure 6): response retransmissions are absorbed until Timer K.
    NonInviteClientCompleted,
    Terminated,
}

/// What one input made the transaction send or report, for the table to queue.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) transmit: Option<Message>,
    pub(crate) event: Option<Event>,
}

// ===== impl Lingering =====

impl Lingering {
    /// Figure 8 Completed, ended by Timer J at `end`; `response` is the final response sent, and
    /// `key` the live key (rebased onto a copy of the response, or detached).
    pub(crate) fn non_invite_server(key: &TransactionKey, response: &Message, end: Instant) -> Lingering {
        let kept = Bytes::copy_from_slice(response.as_bytes());
        let key = key.rebased(response, &kept).unwrap_or_else(|| key.detached());
        Lingering::new(key, State::NonInviteServerCompleted { response: kept }, end)
    }

    /// Figure 7 Confirmed, ended by Timer I at `end`.
    pub(crate) fn invite_server_confirmed(key: &TransactionKey, end: Instant) -> Lingering {
        Lingering::new(key.detached(), State::InviteServerConfirmed, end)
    }

    /// RFC 6026 Accepted (INVITE server), ended by Timer L at `end`.
    pub(crate) fn invite_server_accepted(key: &TransactionKey, end: Instant) -> Lingering {
        Lingering::new(key.detached(), State::InviteServerAccepted, end)
    }

    /// Figure 6 Completed, ended by Timer K at `end`.
    pub(crate) fn non_invite_client(key: &TransactionKey, end: Instant) -> Lingering {
        Lingering::new(key.detached(), State::NonInviteClientCompleted, end)
    }

    fn new(key: TransactionKey, state: State, end: Instant) -> Lingering {
        Lingering { key, state, end: Some(end), scheduled: Some(end) }
    }

    /// The key messages are matched by (§17.1.3, §17.2.3).
    pub(crate) fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The state, by the name its figure gives it.
    pub(crate) fn state(&self) -> TransactionState {
        match self.state {
            State::NonInviteServerCompleted { .. } | State::NonInviteClientCompleted => TransactionState::Completed,
            State::InviteServerConfirmed => TransactionState::Confirmed,
            State::InviteServerAccepted => TransactionState::Accepted,
            State::Terminated => TransactionState::Terminated,
        }
    }

    /// A server transaction (a CANCEL may target it; [`Transactions::forget_server`](super::Transactions::forget_server) applies).
    pub(crate) fn is_server(&self) -> bool {
        !self.key.is_client()
    }

    /// An INVITE server transaction (a CANCEL finds it answered, §9.2).
    pub(crate) fn is_invite_server(&self) -> bool {
        matches!(self.state, State::InviteServerConfirmed | State::InviteServerAccepted)
    }

    /// RFC 6026 Accepted: a matching ACK acknowledges the 2xx and belongs to the dialog.
    pub(crate) fn is_accepted(&self) -> bool {
        matches!(self.state, State::InviteServerAccepted)
    }

    pub(crate) fn is_terminated(&self) -> bool {
        matches!(self.state, State::Terminated)
    }

    /// When the transaction ends, if not yet Terminated.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.end
    }

    /// A request that matched the key (§17.2.3): a retransmitted non-INVITE request gets the final
    /// response again, byte for byte (§17.2.2); INVITEs and ACKs in Confirmed or Accepted are
    /// absorbed (§17.2.1, RFC 6026 §8.7).
    pub(crate) fn handle_request(&mut self, request: &Message) -> Result<Output, Error> {
        let method = request.method().ok_or(Error::NotARequest)?;
        match (&self.state, method) {
            (State::NonInviteServerCompleted { response }, _) => Ok(Output { transmit: reparse(response), event: None }),
            (State::InviteServerConfirmed | State::InviteServerAccepted, Method::Invite | Method::Ack) => Ok(Output::default()),
            (State::InviteServerConfirmed | State::InviteServerAccepted, _) => Err(Error::WrongMethod),
            (State::NonInviteClientCompleted, _) => Err(Error::WrongRole),
            (State::Terminated, _) => Ok(Output::default()),
        }
    }

    /// A response that matched the key (client, §17.1.3): absorbed in Completed (§17.1.2.2).
    pub(crate) fn handle_response(&mut self, response: &Message) -> Result<Output, Error> {
        response.status().ok_or(Error::NotAResponse)?;
        match self.state {
            State::NonInviteClientCompleted | State::Terminated => Ok(Output::default()),
            _ => Err(Error::WrongRole),
        }
    }

    /// A response from the TU: in Accepted a 2xx (the dialog layer's retransmission, §13.3.1.4)
    /// is sent; anything else comes after the final response.
    pub(crate) fn handle_tu_response(&mut self, response: Message) -> Result<Output, Error> {
        let code = response.status().ok_or(Error::NotAResponse)?;
        match self.state {
            State::InviteServerAccepted if (200..300).contains(&code) => Ok(Output { transmit: Some(response), event: None }),
            State::NonInviteClientCompleted => Err(Error::WrongRole),
            _ => Err(Error::FinalAlreadySent),
        }
    }

    /// Timer J, I, L or K, if due at `now`: the transaction terminates.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Output {
        if self.end.is_some_and(|end| end <= now) {
            return self.terminate();
        }
        Output::default()
    }

    /// The transport failed (§17.1.4, §17.2.4): tell the TU and terminate.
    pub(crate) fn handle_transport_error(&mut self) -> [Output; 2] {
        if self.is_terminated() {
            return Default::default();
        }
        [Output { transmit: None, event: Some(Event::TransportError) }, self.terminate()]
    }

    fn terminate(&mut self) -> Output {
        self.state = State::Terminated;
        self.end = None;
        Output { transmit: None, event: Some(Event::Terminated) }
    }
}

/// The kept response as a message again, to be sent. It was a message when it was kept, so it
/// parses; if it ever did not, the retransmission is skipped (logged) rather than a panic.
fn reparse(bytes: &Bytes) -> Option<Message> {
    match Message::parse(bytes.clone()) {
        Ok(msg) => Some(msg),
        Err(e) => {
            tracing::debug!(error = %e, "kept response does not parse; retransmission not answered");
            None
        }
    }
}
