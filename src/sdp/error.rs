//! [`SdpError`]: why a session description was rejected, and on which line.

use std::fmt;

/// What was wrong with a session description.
///
/// Line types are named by their RFC 4566 §5 letter (`'c'` for `c=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SdpErrorKind {
    /// The body is not valid UTF-8 (RFC 4566 §5 allows other charsets only
    /// via `a=charset`, which this parser does not support).
    NotUtf8,
    /// A line is not of the form `<type>=<value>`, is empty (other than
    /// trailing empty lines), or contains a NUL or a bare CR.
    Malformed,
    /// A line's type letter is not one RFC 4566 §5 defines; per §5 the whole
    /// description must then be ignored.
    UnknownType(char),
    /// The first line is not `v=` (RFC 4566 §5.1).
    MissingVersion,
    /// The `v=` value is not `0` (RFC 4566 §5.1).
    BadVersion,
    /// The second line is not `o=` (RFC 4566 §5.2).
    MissingOrigin,
    /// The `o=` line is malformed (RFC 4566 §5.2).
    BadOrigin,
    /// The third line is not `s=` (RFC 4566 §5.3).
    MissingSessionName,
    /// No `t=` line precedes the media descriptions (RFC 4566 §5.9).
    MissingTiming,
    /// A `t=` line is malformed (RFC 4566 §5.9).
    BadTiming,
    /// A `c=` line is malformed (RFC 4566 §5.7).
    BadConnection,
    /// A `b=` line is malformed (RFC 4566 §5.8).
    BadBandwidth,
    /// An `m=` line is malformed (RFC 4566 §5.14).
    BadMedia,
    /// An `a=` line has an empty attribute name (RFC 4566 §5.13).
    BadAttribute,
    /// A known attribute (`rtpmap`, `fmtp`, `ptime`, `maxptime`, `rtcp`) has
    /// a value that does not follow its grammar (RFC 4566 §6, RFC 3605).
    BadAttributeValue,
    /// A line appears where RFC 4566 §5 does not allow it: a session-level
    /// line after the first `m=`, or `r=` before any `t=`.
    OutOfOrder(char),
    /// A line that may appear only once in its section appears again.
    Duplicate(char),
}

impl fmt::Display for SdpErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpErrorKind::NotUtf8 => f.write_str("not valid UTF-8"),
            SdpErrorKind::Malformed => f.write_str("malformed line"),
            SdpErrorKind::UnknownType(c) => write!(f, "unknown line type {c:?}"),
            SdpErrorKind::MissingVersion => f.write_str("missing v= line"),
            SdpErrorKind::BadVersion => f.write_str("bad v= line (must be v=0)"),
            SdpErrorKind::MissingOrigin => f.write_str("missing o= line"),
            SdpErrorKind::BadOrigin => f.write_str("bad o= line"),
            SdpErrorKind::MissingSessionName => f.write_str("missing s= line"),
            SdpErrorKind::MissingTiming => f.write_str("missing t= line"),
            SdpErrorKind::BadTiming => f.write_str("bad t= line"),
            SdpErrorKind::BadConnection => f.write_str("bad c= line"),
            SdpErrorKind::BadBandwidth => f.write_str("bad b= line"),
            SdpErrorKind::BadMedia => f.write_str("bad m= line"),
            SdpErrorKind::BadAttribute => f.write_str("bad a= line"),
            SdpErrorKind::BadAttributeValue => f.write_str("bad attribute value"),
            SdpErrorKind::OutOfOrder(c) => write!(f, "{c}= line out of order"),
            SdpErrorKind::Duplicate(c) => write!(f, "duplicate {c}= line"),
        }
    }
}

/// A session description could not be parsed.
///
/// Displays as e.g. `SDP line 4: bad c= line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SdpError {
    /// What was wrong.
    pub kind: SdpErrorKind,
    /// The 1-based line number where the problem was found. For a missing
    /// line, the number the line was expected at.
    pub line: usize,
}

impl SdpError {
    /// Creates an error of `kind` at 1-based `line`.
    pub fn new(kind: SdpErrorKind, line: usize) -> SdpError {
        SdpError { kind, line }
    }

    /// What was wrong.
    pub fn kind(&self) -> SdpErrorKind {
        self.kind
    }

    /// The 1-based line number where the problem was found.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SDP line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for SdpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display() {
        assert_eq!(SdpError::new(SdpErrorKind::BadConnection, 4).to_string(), "SDP line 4: bad c= line");
        assert_eq!(SdpError::new(SdpErrorKind::UnknownType('x'), 7).to_string(), "SDP line 7: unknown line type 'x'");
        assert_eq!(SdpError::new(SdpErrorKind::OutOfOrder('t'), 9).to_string(), "SDP line 9: t= line out of order");
        let e: Box<dyn std::error::Error> = Box::new(SdpError::new(SdpErrorKind::NotUtf8, 1));
        assert_eq!(e.to_string(), "SDP line 1: not valid UTF-8");
    }
}
