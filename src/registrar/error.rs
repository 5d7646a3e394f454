//! Why a REGISTER was refused: one variant per RFC 3261 §10.3 step that can fail, each with the
//! status and reason phrase the registrar answers with.

use crate::message::ParseError;
use std::borrow::Cow;
use std::fmt;

/// A refused REGISTER. [`Outcome::rejected`](super::Outcome::rejected) carries it next to the
/// response already built from it; no binding changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// The request is not a REGISTER: 405.
    NotRegister,
    /// Step 1: the Request-URI names a domain this registrar does not serve: 404.
    DomainNotServed,
    /// Step 2: the request requires extensions (listed in `Require`) this registrar lacks: 420.
    BadExtension(Vec<String>),
    /// A header the registrar reads is missing or malformed: 400 naming it.
    Malformed(ParseError),
    /// Step 5: the To URI is not `sip:` or `sips:` (RFC 4475 §3.3.4 `isbn:`): 400.
    AorNotSip,
    /// Step 4: the authenticated user may not change this address-of-record: 403.
    Forbidden,
    /// Step 5: the address-of-record is not in the domain this registrar serves: 404.
    AorNotInDomain,
    /// Step 6: `Contact: *` came with other contacts or without `Expires: 0`: 400.
    InvalidWildcard,
    /// A Contact carries a malformed `expires` or `q` parameter: 400.
    BadContactParam,
    /// Step 7: a contact asked for less than Min-Expires (and not 0): 423 with `Min-Expires`.
    IntervalTooBrief {
        /// The shortest interval accepted, sent back in `Min-Expires`.
        min_expires: u32,
    },
    /// Steps 6 and 7: same Call-ID as a stored binding with a CSeq not above it, so the request is
    /// older than what is stored. Answered 500, as RFC 3261 §12.2.2 does for an out-of-order
    /// in-dialog request, so the UA neither takes it for success nor retries it unchanged.
    OutOfOrder,
    /// The AOR already holds `max_contacts` contacts, or one more would make the 200 listing them
    /// longer than a UDP datagram may be (RFC 3261 §18.1.1): 503 with Retry-After, the seconds
    /// until the AOR's first binding lapses.
    TooManyContacts {
        /// Seconds for Retry-After.
        retry_after: u64,
    },
    /// The registrar holds `max_bindings` bindings: 503 with Retry-After, the seconds until the
    /// next binding lapses.
    TooManyBindings {
        /// Seconds for Retry-After.
        retry_after: u64,
    },
}

// ===== impl RegisterError =====

impl RegisterError {
    /// The response status.
    pub fn status_code(&self) -> u16 {
        match self {
            RegisterError::NotRegister => 405,
            RegisterError::DomainNotServed | RegisterError::AorNotInDomain => 404,
            RegisterError::BadExtension(_) => 420,
            RegisterError::Malformed(e) => e.status_code(),
            RegisterError::AorNotSip | RegisterError::InvalidWildcard | RegisterError::BadContactParam => 400,
            RegisterError::Forbidden => 403,
            RegisterError::IntervalTooBrief { .. } => 423,
            RegisterError::OutOfOrder => 500,
            RegisterError::TooManyContacts { .. } | RegisterError::TooManyBindings { .. } => 503,
        }
    }

    /// The reason phrase: it names what was wrong.
    pub fn reason_phrase(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            RegisterError::NotRegister => "Method Not Allowed",
            RegisterError::DomainNotServed => "Domain Not Served Here",
            RegisterError::BadExtension(_) => "Bad Extension",
            RegisterError::Malformed(e) => return Cow::Owned(e.reason_phrase()),
            RegisterError::AorNotSip => "Address-of-Record In To Must Be A SIP Or SIPS URI",
            RegisterError::Forbidden => "Forbidden",
            RegisterError::AorNotInDomain => "Address-of-Record Not In This Domain",
            RegisterError::InvalidWildcard => "Contact * Needs Expires 0 And No Other Contact",
            RegisterError::BadContactParam => "Bad Contact Header",
            RegisterError::IntervalTooBrief { .. } => "Interval Too Brief",
            RegisterError::OutOfOrder => "Out Of Order CSeq",
            RegisterError::TooManyContacts { .. } => "Too many registered contacts",
            RegisterError::TooManyBindings { .. } => "Too many registrations",
        })
    }
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status_code(), self.reason_phrase())
    }
}

impl std::error::Error for RegisterError {}

impl From<ParseError> for RegisterError {
    fn from(e: ParseError) -> Self {
        RegisterError::Malformed(e)
    }
}
