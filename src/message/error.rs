//! Typed parse errors for the message layer.
//!
//! A [`ParseError`] says what was wrong ([`ErrorKind`]), where (byte offset into the datagram) and, when
//! it happened inside a header, which one. The layer above turns it into a response: `400` with a reason
//! phrase naming the bad part (see [`ParseError::reason_phrase`]), `505` for another SIP version, or a
//! counted drop for a response (RFC 3261 §18.3, §21.4.1, §21.5.6).

use super::HeaderName;
use std::fmt;

/// What was wrong with a message. One variant per distinct failure, so callers can match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The datagram holds no start line at all.
    Empty,
    /// The start line is neither a Request-Line nor a Status-Line (RFC 3261 §7.1, §7.2).
    StartLine,
    /// The method is not a token (RFC 3261 §25.1 `Method`).
    Method,
    /// The Request-URI is malformed: `<>`-wrapped, has whitespace, no scheme, or carries `?headers`.
    RequestUri,
    /// The SIP-Version is malformed.
    Version,
    /// The SIP-Version is well-formed but not `SIP/2.0`: answer 505 (RFC 3261 §21.5.6).
    VersionNotSupported,
    /// The Status-Code is not exactly three digits (RFC 3261 §7.2).
    StatusCode,
    /// A header line has no colon or its name is not a token (RFC 3261 §7.3.1).
    HeaderLine,
    /// A known header's value does not match its grammar.
    HeaderValue,
    /// A mandatory header is missing.
    MissingHeader,
    /// A header that may appear once appears several times.
    DuplicateHeader,
    /// Content-Length is not a non-negative decimal number (RFC 3261 §20.14).
    ContentLength,
    /// Two Content-Length headers disagree (RFC 4475 §3.3.9).
    ConflictingContentLength,
    /// The body is shorter than Content-Length (RFC 3261 §18.3).
    BodyTooShort,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    CSeqMethodMismatch,
    /// A header value is not valid UTF-8 where the grammar needs text.
    NotUtf8,
}

/// A parse error: what, where, and in which header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: ErrorKind,
    offset: usize,
    header: Option<HeaderName>,
}

// ===== impl ParseError =====

impl ParseError {
    /// An error of `kind` at byte `offset`.
    pub(crate) fn new(kind: ErrorKind, offset: usize) -> Self {
        ParseError { kind, offset, header: None }
    }

    /// An error inside header `name`, at byte `offset` of the message.
    pub(crate) fn in_header(kind: ErrorKind, name: HeaderName, offset: usize) -> Self {
        ParseError { kind, offset, header: Some(name) }
    }

    /// What was wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Byte offset into the message where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The header the problem is in, if any.
    pub fn header(&self) -> Option<HeaderName> {
        self.header
    }

    /// Which status a UAS should answer a request that failed with this error (RFC 3261 §21):
    /// 505 for another SIP version, 400 for everything else.
    pub fn status_code(&self) -> u16 {
        match self.kind {
            ErrorKind::VersionNotSupported => 505,
            _ => 400,
        }
    }

    /// A reason phrase for the error response that names the bad part, e.g. `Bad Via Header`
    /// or `Missing Call-ID Header`.
    pub fn reason_phrase(&self) -> String {
        let what = match self.kind {
            ErrorKind::Empty => "Empty Message",
            ErrorKind::StartLine => "Bad Start Line",
            ErrorKind::Method => "Bad Method",
            ErrorKind::RequestUri => "Bad Request-URI",
            ErrorKind::Version => "Bad SIP Version",
            ErrorKind::VersionNotSupported => return "Version Not Supported".into(),
            ErrorKind::StatusCode => "Bad Status Code",
            ErrorKind::HeaderLine => "Bad Header Line",
            ErrorKind::HeaderValue => "Bad",
            ErrorKind::MissingHeader => "Missing",
            ErrorKind::DuplicateHeader => "Duplicate",
            ErrorKind::ContentLength => "Bad Content-Length",
            ErrorKind::ConflictingContentLength => "Conflicting Content-Length",
            ErrorKind::BodyTooShort => "Body Shorter Than Content-Length",
            ErrorKind::CSeqMethodMismatch => "CSeq Method Does Not Match Request Method",
            ErrorKind::NotUtf8 => "Header Not UTF-8",
        };
        match (self.kind, self.header) {
            (ErrorKind::HeaderValue | ErrorKind::MissingHeader | ErrorKind::DuplicateHeader, Some(h)) => {
                format!("{what} {} Header", h.as_str())
            }
            (ErrorKind::HeaderValue, None) => "Bad Header".into(),
            (_, Some(h)) if self.kind == ErrorKind::NotUtf8 => {
                format!("{} Header Not UTF-8", h.as_str())
            }
            _ => what.into(),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Empty => "empty message",
            ErrorKind::StartLine => "malformed start line",
            ErrorKind::Method => "malformed method",
            ErrorKind::RequestUri => "malformed Request-URI",
            ErrorKind::Version => "malformed SIP version",
            ErrorKind::VersionNotSupported => "SIP version not supported",
            ErrorKind::StatusCode => "status code is not three digits",
            ErrorKind::HeaderLine => "malformed header line",
            ErrorKind::HeaderValue => "malformed header value",
            ErrorKind::MissingHeader => "missing header",
            ErrorKind::DuplicateHeader => "header may appear only once",
            ErrorKind::ContentLength => "malformed Content-Length",
            ErrorKind::ConflictingContentLength => "conflicting Content-Length headers",
            ErrorKind::BodyTooShort => "body shorter than Content-Length",
            ErrorKind::CSeqMethodMismatch => "CSeq method differs from the request method",
            ErrorKind::NotUtf8 => "header value is not UTF-8",
        };
        f.write_str(s)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.header) {
            (ErrorKind::MissingHeader, Some(h)) => write!(f, "missing {} header", h.as_str()),
            (ErrorKind::DuplicateHeader, Some(h)) => {
                write!(f, "{} header repeated at byte {}", h.as_str(), self.offset)
            }
            (_, Some(h)) => write!(f, "{} in {} header at byte {}", self.kind, h.as_str(), self.offset),
            (_, None) => write!(f, "{} at byte {}", self.kind, self.offset),
        }
    }
}

impl std::error::Error for ParseError {}

/// An error inside one header value parsed on its own (e.g. [`super::Via::parse`]): the value does
/// not match its grammar at byte `offset` of the value. Message accessors turn it into a
/// [`ParseError`] that names the header and the offset in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueError {
    pub(crate) offset: usize,
}

impl ValueError {
    pub(crate) fn at(offset: usize) -> Self {
        ValueError { offset }
    }

    /// Byte offset into the value where parsing failed.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed value at byte {}", self.offset)
    }
}

impl std::error::Error for ValueError {}
