//! The transaction layer (RFC 3261 §17), sans-IO.
//!
//! A transaction is one request and the responses to it. Four state machines cover the four kinds,
//! one file per figure of the RFC:
//!
//! ```text
//!               client side                          server side
//!   INVITE      ClientInvite      (Figure 5)         ServerInvite      (Figure 7)
//!   other       ClientNonInvite   (Figure 6)         ServerNonInvite   (Figure 8)
//! ```
//!
//! [`Transactions`] owns any number of them: it routes incoming messages by [`TransactionKey`]
//! (§17.1.3, §17.2.3), keeps one timer heap for all of them, and drains their output.
//!
//! # Run loop
//!
//! Nothing here reads a clock or touches a socket. Every input carries `now`:
//!
//! 1. feed one input: `handle_request`, `handle_response`, `handle_tu_response` (servers),
//!    `handle_timeout` or `handle_transport_error`;
//! 2. drain `poll_transmit` (messages to put on the wire) and `poll_event` (news for the TU) until
//!    both return `None`;
//! 3. sleep until `poll_timeout`, or until the next datagram, then go to 1.
//!
//! A spurious `handle_timeout(now)` (nothing due yet) changes nothing.
//!
//! # Transports
//!
//! Whether the transport is reliable is read from the `transport` of the request's top Via
//! (§18.1.1): on UDP the machines retransmit (Timers A, E, G) and linger to absorb duplicates
//! (Timers D, I, J, K); on TCP, TLS, SCTP or WebSocket those timers are zero (Table 4).

mod answered;
mod build;
mod client_invite;
mod client_non_invite;
mod key;
mod lingering;
mod machine;
mod server_invite;
mod server_non_invite;
mod table;
mod timer;

pub use build::{build_ack, build_cancel};
pub use client_invite::ClientInvite;
pub use client_non_invite::ClientNonInvite;
pub use key::TransactionKey;
pub use server_invite::ServerInvite;
pub use server_non_invite::ServerNonInvite;
pub use table::{CancelTarget, Routed, TransactionId, Transactions};
pub use timer::Timer;

use crate::message::{Message, ParseError};
use std::fmt;
use std::time::Duration;

/// Timer base values (RFC 3261 §17.1.1.1, Table 4). Every other timer derives from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// RTT estimate: first retransmit interval (Timers A, E, G) and `64*T1` timeouts (B, F, H, J).
    pub t1: Duration,
    /// Cap on the retransmit interval of non-INVITE requests and INVITE final responses.
    pub t2: Duration,
    /// Maximum time a message stays in the network: Timers I and K on UDP.
    pub t4: Duration,
}

impl Default for Config {
    /// T1 = 500 ms, T2 = 4 s, T4 = 5 s (RFC 3261 Table 4).
    fn default() -> Config {
        Config { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl Config {
    /// Timer D on an unreliable transport: "> 32 s" (Table 4), independent of T1.
    pub const TIMER_D: Duration = Duration::from_secs(32);

    /// How long an INVITE server transaction waits for the TU before it sends `100 Trying` itself
    /// (§17.2.1).
    pub const TRYING_DELAY: Duration = Duration::from_millis(200);

    /// `64*T1`: Timers B, F, H and J.
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// What a transaction tells the transaction user (TU). Drain with `poll_event`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A request that opened a new server transaction ([`Transactions`] only; a standalone server
    /// machine is built from the request, so the TU already has it).
    Request(Message),
    /// A response for the TU (client transactions). Retransmitted 300-699 responses are absorbed
    /// and not reported again; every 2xx to an INVITE is reported (RFC 6026 Accepted state).
    Response(Message),
    /// Timer B, F or H fired: no final response (client) or no ACK (INVITE server) in `64*T1`.
    Timeout,
    /// The transport reported a failure for this transaction (§17.1.4, §17.2.4).
    TransportError,
    /// The transaction reached Terminated; it sends and reports nothing more.
    Terminated,
}

/// The state a machine is in, for logs and tests. Each machine uses the states of its figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransactionState {
    /// INVITE client: request sent, nothing heard (Figure 5).
    Calling,
    /// Non-INVITE client or server: request sent or received, nothing answered yet (Figures 6, 8).
    Trying,
    /// A provisional response was received or sent.
    Proceeding,
    /// A final response was received or sent; lingering to absorb retransmissions.
    Completed,
    /// INVITE server: the ACK for a non-2xx final response arrived (Figure 7).
    Confirmed,
    /// INVITE server: a 2xx was sent; INVITE retransmissions are absorbed until Timer L
    /// (RFC 6026 §7.1). INVITE client: a 2xx arrived; further 2xx go to the TU until Timer M
    /// (RFC 6026 §7.2).
    Accepted,
    /// Done: the transaction may be dropped.
    Terminated,
}

/// Why a transaction input or constructor was refused. Network input never makes a machine panic;
/// a malformed message yields one of these and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A header the transaction layer needs (Via, CSeq, Call-ID, From, To) is missing or malformed.
    Malformed(ParseError),
    /// The top Via has no `branch` and the message is not an RFC 2543 request (client side).
    MissingBranch,
    /// A response was given where a request was expected.
    NotARequest,
    /// A request was given where a response was expected.
    NotAResponse,
    /// The method does not fit this machine (e.g. an OPTIONS for an INVITE transaction).
    WrongMethod,
    /// The ACK for a 2xx is the dialog layer's job (§13.2.2.4), not the transaction's.
    AckFor2xx,
    /// ACK never opens a transaction (§17.1.1.3: it belongs to the INVITE transaction or the dialog).
    AckNotATransaction,
    /// The TU sent a response after the final one.
    FinalAlreadySent,
    /// CANCEL before any provisional response: §9.1 says wait for one.
    CancelTooEarly,
    /// CANCEL after a final response: §9.1 says it SHOULD NOT be sent.
    CancelTooLate,
    /// A client operation on a server transaction, or the reverse.
    WrongRole,
    /// No live transaction has this id.
    UnknownTransaction,
    /// A different live transaction already has this key.
    DuplicateKey,
}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Error {
        Error::Malformed(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(e) => write!(f, "malformed message: {e}"),
            Error::MissingBranch => f.write_str("top Via has no branch"),
            Error::NotARequest => f.write_str("expected a request"),
            Error::NotAResponse => f.write_str("expected a response"),
            Error::WrongMethod => f.write_str("method does not fit this transaction"),
            Error::AckFor2xx => f.write_str("the ACK for a 2xx belongs to the dialog layer"),
            Error::AckNotATransaction => f.write_str("ACK does not open a transaction"),
            Error::FinalAlreadySent => f.write_str("a final response was already sent"),
            Error::CancelTooEarly => f.write_str("CANCEL before a provisional response"),
            Error::CancelTooLate => f.write_str("CANCEL after a final response"),
            Error::WrongRole => f.write_str("operation does not fit a client/server transaction"),
            Error::UnknownTransaction => f.write_str("no such transaction"),
            Error::DuplicateKey => f.write_str("a transaction with this key exists"),
        }
    }
}

impl std::error::Error for Error {}
