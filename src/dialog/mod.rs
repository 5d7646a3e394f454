//! The dialog layer (RFC 3261 §12-15) with session timers (RFC 4028), sans-IO.
//!
//! A dialog is the peer-to-peer relationship an INVITE sets up: Call-ID plus both tags
//! ([`DialogId`]), the route set, the remote target and the CSeq counters. [`Dialogs`] holds every
//! dialog of one user agent, takes in the [`Message`]s the transaction layer delivers, and produces
//! the requests and responses the dialogs need: in-dialog requests (§12.2.1.1), the ACK for a 2xx
//! (§13.2.2.4), the 2xx retransmissions of a UAS (§13.3.1.4), answers to in-dialog requests
//! (§12.2.2, §14.2), session refreshes and keep-alive pings.
//!
//! ```text
//!                 1xx with tag              2xx (UAC: ACK sent / UAS: 2xx sent)
//!   (INVITE) ----------------------> Early ------------------------> Confirmed
//!       |                              |  non-2xx final, CANCEL          |  BYE, NoAck, session expiry,
//!       |  2xx                         v                                 v  ping failure, 481/408
//!       +----------------------> Terminated <----------------------------+
//! ```
//!
//! # Run loop
//!
//! Nothing here reads a clock, draws OS randomness or touches a socket. Every input carries `now`,
//! and tags, Call-IDs and branches come from an [`IdGen`] seeded from [`DialogConfig::rng_seed`].
//!
//! 1. feed one input: [`Dialogs::handle_request`] (or [`Dialogs::accept_invite`] for a new INVITE
//!    whose dialog id the caller wants back), [`Dialogs::handle_response`],
//!    [`Dialogs::handle_request_timeout`], [`Dialogs::handle_timeout`], or a command
//!    ([`Dialogs::invite`], [`Dialogs::accept`], [`Dialogs::send_bye`], ...);
//! 2. drain [`Dialogs::poll_transmit`] (messages to send: new requests go to a client transaction,
//!    responses to the server transaction of their request, ACKs and 2xx retransmissions straight to
//!    the transport) and [`Dialogs::poll_event`] until both return `None`;
//! 3. sleep until [`Dialogs::poll_timeout`] or the next message, then go to 1.
//!
//! A spurious `handle_timeout(now)` (nothing due yet) changes nothing.
//!
//! Every way a dialog ends produces exactly one [`Event::Terminated`] with an [`EndReason`]. An
//! INVITE that ends before any dialog exists ends its pending id (empty remote tag) the same way.

mod build;
mod commands;
mod id;
mod incoming;
mod late_offer;
mod merge;
mod refer;
mod reliable;
mod responses;
mod session;
mod set;
mod snapshot;
mod state;
mod timer;

pub use id::{DialogId, IdGen};
pub use merge::MergeDetector;
pub use refer::{refer_target, sipfrag_status, subscription_terminated};
pub use reliable::Rel100;
pub use set::{Authorizer, CallParams, Dialogs, TableSizes};
pub use snapshot::{DialogCapture, DialogSnapshot, CSEQ_MARGIN};
#[cfg(feature = "service")]
pub(crate) use state::addr_without_tag;
pub use state::{Dialog, DialogState, Role};
pub use timer::DialogTimer;

use crate::message::{Message, Refresher};
use std::fmt;
use std::time::Duration;

/// Settings of a [`Dialogs`] set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogConfig {
    /// RTT estimate (RFC 3261 Table 4): first 2xx retransmission interval; 64*T1 waits for the ACK.
    pub t1: Duration,
    /// Cap of the 2xx retransmission interval.
    pub t2: Duration,
    /// Session interval we ask for or offer (RFC 4028 §4); `None` turns session timers off unless
    /// the peer asks for one.
    pub session_expires: Option<Duration>,
    /// The smallest session interval we accept (RFC 4028 §5); never below 90 s.
    pub min_se: Duration,
    /// Who we would like to refresh: sent as `refresher` in our INVITE, and chosen by us as UAS when
    /// the request leaves it open. `None`: the UAC side refreshes.
    pub refresher: Option<Refresher>,
    /// The request a refresher sends (RFC 4028 §10).
    pub refresh_method: RefreshMethod,
    /// Interval of in-dialog OPTIONS keep-alives; `None` for none.
    pub ping_interval: Option<Duration>,
    /// Our Contact URI (§8.1.1.8), e.g. `sip:alice@192.0.2.1:5060`.
    pub contact: String,
    /// `sent-by` of our Via (§18.1.1), e.g. `192.0.2.1:5060`; also the host part of Call-IDs.
    pub sent_by: String,
    /// Transport named in our Via: `UDP`, `TCP`, `TLS`.
    pub transport: String,
    /// Seed of the generator for tags, Call-IDs and branches.
    pub rng_seed: u64,
    /// Reliable provisional responses (RFC 3262): what our INVITEs say and when our 1xx are sent
    /// reliably.
    pub rel100: Rel100,
}

impl Default for DialogConfig {
    /// T1 = 500 ms, T2 = 4 s, Session-Expires 1800 s, Min-SE 90 s, refresh by re-INVITE, no pings,
    /// `Supported: 100rel`.
    fn default() -> DialogConfig {
        DialogConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            session_expires: Some(Duration::from_secs(1800)),
            min_se: Duration::from_secs(90),
            refresher: None,
            refresh_method: RefreshMethod::Invite,
            ping_interval: None,
            contact: "sip:switchboard@127.0.0.1:5060".into(),
            sent_by: "127.0.0.1:5060".into(),
            transport: "UDP".into(),
            rng_seed: 0x5157_6974_6368,
            rel100: Rel100::Supported,
        }
    }
}

/// How a refresher refreshes the session (RFC 4028 §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMethod {
    /// A re-INVITE carrying our last SDP again (an unchanged offer).
    Invite,
    /// An UPDATE without a body (RFC 3311), lighter when the peer supports it.
    Update,
}

/// One side of a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// This user agent.
    Local,
    /// The peer.
    Remote,
}

/// Why a dialog (or a pending INVITE) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// A BYE from this side or the peer (§15).
    Bye(Side),
    /// The INVITE was cancelled (§9): by us as UAC, or by the peer's CANCEL as UAS.
    Cancelled,
    /// A request in the dialog timed out or got 408 (§12.2.1.2), or the INVITE timed out.
    Timeout,
    /// Our 2xx was not acknowledged within 64*T1 (§13.3.1.4); a BYE was sent.
    NoAck,
    /// No session refresh came in time (RFC 4028 §10); a BYE was sent.
    SessionExpired,
    /// The INVITE got this non-2xx final response (sent by us as UAS, received as UAC).
    Rejected(u16),
    /// An in-dialog OPTIONS keep-alive got 408/481 or timed out.
    PingFailed,
    /// The peer answered an in-dialog request with 481: it knows no such dialog (§12.2.1.2).
    Gone,
}

/// What the dialogs tell the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new INVITE (we are UAS) that came in through [`Dialogs::handle_request`]. Answer with
    /// [`Dialogs::ring`], [`Dialogs::accept`] or [`Dialogs::reject`]. An application that needs
    /// the id at once (to attach per-call state) takes the INVITE with [`Dialogs::accept_invite`]
    /// instead, which returns the id and produces no event.
    Incoming {
        /// The dialog the answers will create.
        id: DialogId,
        /// The INVITE.
        request: Message,
    },
    /// An early dialog exists (§12.1): our 1xx with a tag went out, or one came in.
    Early {
        /// The early dialog.
        id: DialogId,
    },
    /// A provisional response with a To tag to our INVITE carried an SDP body: early media
    /// (RFC 3261 §13.2.1 lets a 1xx carry the answer's preview; RFC 3960 §2: the UAC plays it).
    /// Sent for every such 1xx, after the [`Event::Early`] of its dialog; the dialog's
    /// [`Dialog::remote_sdp`] is then this body. With forking, each early dialog reports its own.
    EarlyMedia {
        /// The early dialog (its remote tag names the branch).
        id: DialogId,
        /// The status code (180, 183, ...).
        code: u16,
        /// The SDP body.
        sdp: bytes::Bytes,
    },
    /// The dialog is confirmed (§12.1): our 2xx went out, or a 2xx came in and was ACKed. After
    /// our INVITE without SDP the 2xx carries the offer and is not ACKed yet: see
    /// [`Dialog::awaits_late_ack`] and [`Dialogs::send_late_ack`] (late offer, RFC 3264 §4).
    Established {
        /// The dialog.
        id: DialogId,
    },
    /// The ACK for our 2xx arrived (§13.3.1.4); retransmissions stopped.
    Acked {
        /// The dialog.
        id: DialogId,
    },
    /// The peer sent a re-INVITE or UPDATE with a new offer (§14.2). Answer with
    /// [`Dialogs::accept`] or [`Dialogs::reject`].
    Reoffer {
        /// The dialog.
        id: DialogId,
        /// The request; its body is the offer.
        request: Message,
    },
    /// Our re-INVITE or UPDATE was accepted; the body of `response` is the answer.
    Answered {
        /// The dialog.
        id: DialogId,
        /// The 2xx.
        response: Message,
    },
    /// Our re-INVITE or UPDATE failed with `code`; the session is unchanged (§14.1). On 491 it is
    /// retried after the random delay of §14.1.
    ModifyFailed {
        /// The dialog.
        id: DialogId,
        /// The status code.
        code: u16,
    },
    /// An INFO arrived (RFC 6086) and was answered 200.
    Info {
        /// The dialog.
        id: DialogId,
        /// The INFO.
        request: Message,
    },
    /// A REFER arrived (RFC 3515) and was answered 202: call its Refer-To and report progress
    /// with [`Dialogs::send_refer_notify`].
    Refer {
        /// The dialog.
        id: DialogId,
        /// The REFER.
        request: Message,
    },
    /// A NOTIFY of the `refer` event arrived in the dialog (RFC 3515 §2.4.4) and was answered 200;
    /// its body is the sipfrag of the referee's call ([`sipfrag_status`]).
    Notify {
        /// The dialog.
        id: DialogId,
        /// The NOTIFY.
        request: Message,
    },
    /// The refresh interval passed: as refresher we sent a session refresh (RFC 4028 §10).
    RefreshNeeded {
        /// The dialog.
        id: DialogId,
    },
    /// A session refresh completed (either direction); the session now expires after `interval`.
    Refreshed {
        /// The dialog.
        id: DialogId,
        /// The negotiated session interval.
        interval: Duration,
    },
    /// The dialog ended. Sent exactly once per dialog.
    Terminated {
        /// The dialog, or the pending INVITE id when no dialog was created.
        id: DialogId,
        /// Why.
        reason: EndReason,
    },
}

/// A command the application gave cannot be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialogError {
    /// No such dialog (or pending INVITE).
    UnknownDialog,
    /// The dialog is not in a state that allows this (e.g. BYE on an unanswered INVITE).
    WrongState,
    /// An INVITE or offer is in progress in either direction (§14.1): wait for it to finish.
    RequestPending,
    /// Nothing of the peer's waits for an answer.
    NothingToAnswer,
    /// A From/To/target given to [`Dialogs::invite`] does not parse.
    BadAddress,
    /// The status code does not fit the command (e.g. `reject` with a 2xx).
    BadStatus,
}

impl fmt::Display for DialogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DialogError::UnknownDialog => "no such dialog",
            DialogError::WrongState => "not allowed in the dialog's state",
            DialogError::RequestPending => "another INVITE or offer is in progress",
            DialogError::NothingToAnswer => "no request waits for an answer",
            DialogError::BadAddress => "address does not parse",
            DialogError::BadStatus => "status code does not fit",
        })
    }
}

impl std::error::Error for DialogError {}

/// A message handed to [`Dialogs::handle_request`] or [`Dialogs::handle_response`] was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// A mid-dialog request (or CANCEL) for no dialog we know: answer it with [`reject_unknown`]
    /// (481). Never returned for ACK.
    UnknownDialog,
    /// A request outside any dialog that is not an INVITE (OPTIONS, REGISTER, ...): not ours.
    OutOfDialog,
    /// From, To, Call-ID or CSeq is missing or does not parse (or From has no tag).
    Malformed,
    /// A response that matches nothing we sent: drop it.
    Stray,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputError::UnknownDialog => "no such dialog",
            InputError::OutOfDialog => "not a dialog request",
            InputError::Malformed => "missing or malformed dialog headers",
            InputError::Stray => "response matches nothing sent",
        })
    }
}

impl std::error::Error for InputError {}

/// Why [`Dialogs::accept_invite`] created no dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotAccepted {
    /// The dialog layer answered the INVITE itself with this status (422, RFC 4028 §9; 482,
    /// RFC 3261 §8.2.2.2); the response waits in [`Dialogs::poll_transmit`].
    Answered(u16),
    /// The INVITE already has its dialog (a retransmission the transaction layer let through):
    /// nothing to do.
    Retransmission,
    /// Not a dialog-creating INVITE, or its headers do not parse: nothing was answered.
    Input(InputError),
}

impl From<InputError> for NotAccepted {
    fn from(e: InputError) -> NotAccepted {
        NotAccepted::Input(e)
    }
}

impl fmt::Display for NotAccepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotAccepted::Answered(code) => write!(f, "answered {code} by the dialog layer"),
            NotAccepted::Retransmission => f.write_str("a retransmission of an INVITE with a dialog"),
            NotAccepted::Input(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for NotAccepted {}

/// The `481 Call/Transaction Does Not Exist` for a request that names no dialog we know
/// (RFC 3261 §12.2.2), or a CANCEL that matches nothing (§9.2). Never answer an ACK.
pub fn reject_unknown(req: &Message) -> Message {
    req.response_to(481, "Call/Transaction Does Not Exist", Some(&derived_tag(req))).finish()
}

/// A To tag for stateless error answers (§8.2.6.2: every response but 100 carries one): derived
/// from the Call-ID and branch, so a retransmitted request gets the same answer.
pub(crate) fn derived_tag(req: &Message) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let branch = req.via().ok().and_then(|v| v.branch()).unwrap_or("");
    for b in req.call_id().unwrap_or("").bytes().chain(branch.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The reason phrase this layer writes for `code` (RFC 3261 §21).
pub(crate) fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        603 => "Decline",
        c if c < 200 => "Session Progress",
        c if c < 300 => "OK",
        c if c < 400 => "Redirect",
        c if c < 500 => "Request Failure",
        c if c < 600 => "Server Failure",
        _ => "Global Failure",
    }
}
