//! SIP messages (RFC 3261 §7, §20, §25): a zero-copy model over `bytes::Bytes`, a nom parser and a
//! serializer.
//!
//! [`Message::parse`] frames a datagram (start line, header lines, body by Content-Length) and keeps
//! every header in order as spans of the original buffer. Typed values are parsed lazily, when a
//! caller asks: [`Message::via`], [`Message::cseq`], [`Message::from`], ... borrow from the message
//! and copy nothing. [`Message::request`] and [`Message::response`] build new messages, and
//! [`Message::as_bytes`] is the wire form.
//!
//! ```
//! use switchboard::message::{Message, Method};
//! let wire = b"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
//! To: <sip:bob@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
//! Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
//! let msg = Message::parse(bytes::Bytes::from_static(wire)).unwrap();
//! assert_eq!(msg.method(), Some(&Method::Options));
//! assert_eq!(msg.via().unwrap().branch(), Some("z9hG4bKx"));
//! assert_eq!(msg.cseq().unwrap().seq, 1);
//! ```

mod access;
mod build;
mod error;
pub mod header;
mod header_name;
mod index;
mod lex;
mod method;
mod params;
mod parse;
mod salvage;
mod uri;

pub use access::ListValues;
pub(crate) use access::OwnVia;
pub use build::{MessageBuilder, ValueOut};
pub use error::{ErrorKind, ParseError, ValueError};
pub use header::{AuthHeader, CSeq, DeltaWithParams, MediaType, NameAddr, Reason, Refresher, TokenList, Via, BRANCH_COOKIE};
pub use header_name::HeaderName;
pub(crate) use lex::unquote;
pub use method::Method;
pub use params::{ParamIter, Params};
pub use salvage::error_response;
pub use uri::{percent_decode, Host, SipUri, TelUri, Uri};

use bytes::Bytes;
use index::{HeaderIndex, Lookup};
use std::fmt;

/// A byte range of the message buffer. u32 is plenty: a UDP datagram is at most 64 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span { start: start as u32, end: end as u32 }
    }

    fn shift(self, by: usize) -> Span {
        Span::new(self.start as usize + by, self.end as usize + by)
    }

    fn of<'a>(&self, b: &'a [u8]) -> &'a [u8] {
        &b[self.start as usize..self.end as usize]
    }
}

/// One header line (with its folds) as spans of the buffer.
#[derive(Debug, Clone, Copy)]
struct Header {
    name: HeaderName,
    name_span: Span,
    value: Span,
}

#[derive(Debug, Clone)]
enum StartLine {
    Request { method: Method, uri: Span },
    Response { code: u16, reason: Span },
}

/// A SIP request or response. Cheap to clone (the buffer is shared).
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    headers: Vec<Header>,
    /// The body: with a Content-Length, exactly that many bytes (the framing checked them), so
    /// the declared length is the body's and is not stored apart (`Message` stays within
    /// clippy's 128-byte error bound).
    body: Span,
    /// Where the headers the hot accessors read sit in `headers`.
    index: HeaderIndex,
    /// The From and To tags, kept once a parse of those headers has read them.
    tags: TagCache,
    /// The top Via's parts, kept once a parse of it has read them.
    via: ViaCache,
}

/// The `tag` parameters of From and To (RFC 3261 §19.3), each kept by the first successful parse of
/// its header ([`Message::validate`], [`Message::from_tag`], [`Message::to_tag`]): dialog and
/// transaction matching read them many times per message, and each read used to parse the whole
/// name-addr again. Only a parse that succeeded is kept, so an error is found again each time.
/// A message is never edited in place (edits build a new one with an empty cache).
///
/// One word, so that `Message` stays small: the low half is From's, the high half To's, each
/// [`TagCache::UNKNOWN`], [`TagCache::ABSENT`], or `start << 16 | len` of the tag in the buffer. A
/// tag beyond 64 KiB (only a built message can be that long) is not kept, and is parsed each time.
#[derive(Debug, Default)]
struct TagCache(std::sync::atomic::AtomicU64);

impl TagCache {
    const UNKNOWN: u32 = 0;
    const ABSENT: u32 = u32::MAX;

    /// The kept entry of `to` (else From): `None` if not kept, `Some(None)` for no tag.
    fn get(&self, to: bool) -> Option<Option<Span>> {
        let word = self.0.load(std::sync::atomic::Ordering::Relaxed);
        let half = if to { (word >> 32) as u32 } else { word as u32 };
        match half {
            TagCache::UNKNOWN => None,
            TagCache::ABSENT => Some(None),
            v => {
                let start = (v >> 16) as usize;
                Some(Some(Span::new(start, start + (v & 0xffff) as usize)))
            }
        }
    }

    /// Keeps `tag` for `to` (else From), if it fits; every caller computes the same value from the
    /// same bytes, so a race between two readers writes one value twice.
    fn set(&self, to: bool, tag: Option<Span>) {
        let half = match tag {
            None => TagCache::ABSENT,
            Some(t) => {
                let (start, len) = (t.start, t.end - t.start);
                if start == 0 || start > 0xffff || len > 0xffff {
                    return;
                }
                let v = start << 16 | len;
                if v == TagCache::ABSENT {
                    return;
                }
                v
            }
        };
        let bits = if to { u64::from(half) << 32 } else { u64::from(half) };
        self.0.fetch_or(bits, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clone for TagCache {
    fn clone(&self) -> TagCache {
        TagCache(std::sync::atomic::AtomicU64::new(self.0.load(std::sync::atomic::Ordering::Relaxed)))
    }
}

/// The top Via (RFC 3261 §20.42) as its parts' places in its header line, kept by the first
/// successful parse of it ([`Message::via`], [`Message::validate`]): the receive path reads it
/// four times per request and answer (the §18.2.1 stamp, `validate`, the transaction key, where
/// the answer goes), and each read used to parse the whole `via-parm` again. Only a parse that
/// succeeded is kept, and only when the first Via line holds that one value (the usual case; a
/// line with several values is parsed each time, as before). A message is never edited in
/// place: the edits that keep it (the stamp's inserts into the top Via's parameters, a
/// response's verbatim copy of the Via line) leave these places where they were, and every
/// other edit builds a message with nothing kept.
///
/// One word, so that `Message` stays small: seven-bit offsets from the start of the line's value
/// of the protocol's end, the version's start and end, the transport's start and end, the
/// host's start and end and the parameters' start (the parameters end with the line; the port is
/// read again from between the host and the parameters), the host's kind, and a flag. A value
/// whose parameters start 128 bytes or more into the line is not kept.
#[derive(Debug, Default)]
struct ViaCache(std::sync::atomic::AtomicU64);

impl ViaCache {
    const KEPT: u64 = 1 << 63;

    /// The kept word, if any.
    fn get(&self) -> Option<u64> {
        let w = self.0.load(std::sync::atomic::Ordering::Relaxed);
        (w & ViaCache::KEPT != 0).then_some(w)
    }

    /// Keeps `word` (made by `Message::keep_via`); every caller computes the same word from the
    /// same bytes, so a race between two readers writes one value twice.
    fn set(&self, word: u64) {
        self.0.store(word | ViaCache::KEPT, std::sync::atomic::Ordering::Relaxed);
    }

    /// A cache holding `word`, if any.
    fn of(word: Option<u64>) -> ViaCache {
        ViaCache(std::sync::atomic::AtomicU64::new(word.map_or(0, |w| w | ViaCache::KEPT)))
    }
}

impl Clone for ViaCache {
    fn clone(&self) -> ViaCache {
        ViaCache::of(self.get())
    }
}

/// A borrowed view of one header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// The header, or [`HeaderName::Other`].
    pub name: HeaderName,
    /// The name as written (compact forms and case kept).
    pub raw_name: &'a [u8],
    /// The value as written: leading and trailing whitespace removed, folds kept.
    pub value: &'a [u8],
}

// ===== impl Message =====

impl Message {
    /// Parses one datagram. Checks the start line and the framing (header lines, Content-Length,
    /// body length); header values are parsed lazily by the accessors. Bytes after the body are
    /// dropped (RFC 3261 §18.3). Never panics, whatever the input.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        parse::parse(buf)
    }

    /// The message exactly as on the wire. For a parsed message, the bytes it was parsed from (up to
    /// the end of its body); for a built one, what the builder wrote. Cloning the `Bytes` is cheap.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI text of a request.
    pub fn request_uri_str(&self) -> Option<&str> {
        match &self.start {
            // Checked to be UTF-8 by the parser or written from a &str by the builder.
            StartLine::Request { uri, .. } => std::str::from_utf8(uri.of(&self.buf)).ok(),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request, parsed (it was validated when the message was parsed).
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        Uri::parse(self.request_uri_str()?).ok()
    }

    /// Whether the Request-URI is a `sip:` or `sips:` URI (any case). For a parsed request, whose
    /// Request-URI the parser read whole, this is `matches!(self.request_uri(), Some(Uri::Sip(_)))`
    /// without parsing it again (issue 16: the endpoint asks it of every request); of a built one
    /// it reads the scheme only.
    pub fn request_uri_is_sip(&self) -> bool {
        let StartLine::Request { uri, .. } = &self.start else { return false };
        let uri = uri.of(&self.buf);
        let scheme = match uri.iter().position(|&c| c == b':') {
            Some(n) => &uri[..n],
            None => return false,
        };
        scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response, as bytes (it may hold any UTF-8 text, RFC 4475 §3.1.1.12).
    pub fn reason(&self) -> Option<&[u8]> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason.of(&self.buf)),
            StartLine::Request { .. } => None,
        }
    }

    /// Every header line in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderRef<'_>> + '_ {
        self.headers.iter().map(|h| self.header_ref(h))
    }

    fn header_ref(&self, h: &Header) -> HeaderRef<'_> {
        HeaderRef { name: h.name, raw_name: h.name_span.of(&self.buf), value: h.value.of(&self.buf) }
    }

    /// The raw value of the first header called `name`.
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.first(name).map(|h| h.value.of(&self.buf))
    }

    /// The first header line called `name`.
    #[inline]
    fn first(&self, name: HeaderName) -> Option<&Header> {
        match self.index.get(name) {
            Lookup::Absent => None,
            Lookup::Once(at) | Lookup::Repeated(at) => self.headers.get(at),
            Lookup::Scan => self.headers.iter().find(|h| h.name == name),
        }
    }

    /// The raw values of every header called `name`, in order.
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.headers.iter().filter(move |h| h.name == name).map(|h| h.value.of(&self.buf))
    }

    /// Raw values of an extension header, looked up by name (ASCII case-insensitive).
    pub fn other_header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers().filter(move |h| h.name == HeaderName::Other && h.raw_name.eq_ignore_ascii_case(name.as_bytes())).map(|h| h.value)
    }

    /// The first value of `name` as an owned, zero-copy slice of the buffer.
    pub fn header_bytes(&self, name: HeaderName) -> Option<Bytes> {
        let h = self.first(name)?;
        Some(self.buf.slice(h.value.start as usize..h.value.end as usize))
    }

    /// How many header lines there are.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        self.body.of(&self.buf)
    }

    /// The body as an owned, zero-copy slice of the buffer.
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.body.start as usize..self.body.end as usize)
    }

    /// The Content-Length the message declared, if any (the framing checked it).
    pub fn content_length(&self) -> Option<u32> {
        // A parsed message framed its body by the header (§18.3), a built one wrote the header
        // for its body; an edit moves the body whole.
        self.first(HeaderName::ContentLength).map(|_| self.body.end - self.body.start)
    }
}

impl PartialEq for Message {
    /// Same start line, the same headers in the same order (names compared as headers, values byte for
    /// byte), and the same body.
    fn eq(&self, other: &Message) -> bool {
        let start_eq = match (&self.start, &other.start) {
            (StartLine::Request { method: a, uri: ua }, StartLine::Request { method: b, uri: ub }) => {
                a == b && ua.of(&self.buf) == ub.of(&other.buf)
            }
            (StartLine::Response { code: a, reason: ra }, StartLine::Response { code: b, reason: rb }) => {
                a == b && ra.of(&self.buf) == rb.of(&other.buf)
            }
            _ => false,
        };
        start_eq
            && self.headers.len() == other.headers.len()
            && self.headers().zip(other.headers()).all(|(a, b)| {
                a.name == b.name && a.value == b.value && (a.name != HeaderName::Other || a.raw_name.eq_ignore_ascii_case(b.raw_name))
            })
            && self.body() == other.body()
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        match &self.start {
            StartLine::Request { method, .. } => d.field("method", method).field("uri", &self.request_uri_str()),
            StartLine::Response { code, reason } => d.field("status", code).field("reason", &String::from_utf8_lossy(reason.of(&self.buf))),
        };
        let hs: Vec<(String, String)> = self
            .headers()
            .map(|h| (String::from_utf8_lossy(h.raw_name).into_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        d.field("headers", &hs).field("body_len", &self.body().len()).finish()
    }
}

impl fmt::Display for Message {
    /// The wire form, lossily decoded for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.buf))
    }
}
