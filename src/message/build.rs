//! Building and serializing messages (RFC 3261 §7, §8.1.1, §8.2.6).
//!
//! A [`MessageBuilder`] writes the wire form straight into one buffer while recording the same spans
//! the parser records, so a built [`Message`] is indistinguishable from a parsed one and
//! `Message::parse(m.as_bytes().clone()) == m`.

use super::{Header, HeaderIndex, HeaderName, Message, Method, Span, StartLine, TagCache, ViaCache};
use bytes::{BufMut, BytesMut};
use std::fmt::{self, Write as _};

/// Writes a request or response header by header. Finish with [`MessageBuilder::body`] or
/// [`MessageBuilder::finish`], which add Content-Length.
#[derive(Debug)]
pub struct MessageBuilder {
    buf: BytesMut,
    start: StartLine,
    headers: Vec<Header>,
    /// The top Via's kept parts when its line was copied verbatim from a message that kept them.
    via: Option<u64>,
}

/// `fmt::Write` into the message buffer. It never fails, so the `let _ = write!(Writer(..))`
/// below discard nothing.
struct Writer<'a>(&'a mut BytesMut);

/// A header value being written by [`MessageBuilder::push_with`].
#[derive(Debug)]
pub struct ValueOut<'a>(&'a mut BytesMut);

impl ValueOut<'_> {
    /// Appends `s` as is.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.0.put_slice(s.as_bytes());
        self
    }

    /// Appends `n` in decimal, as `Display` writes it.
    pub fn num(&mut self, n: u64) -> &mut Self {
        crate::decimal::push_decimal(&mut Writer(self.0), n);
        self
    }
}

impl fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

impl Message {
    /// Starts a request: `METHOD uri SIP/2.0`. The URI is written as given.
    pub fn request(method: Method, uri: impl fmt::Display) -> MessageBuilder {
        let mut buf = BytesMut::with_capacity(512);
        buf.put_slice(method.as_str().as_bytes());
        buf.put_u8(b' ');
        let u0 = buf.len();
        let _ = write!(Writer(&mut buf), "{uri}");
        let u1 = buf.len();
        buf.put_slice(b" SIP/2.0\r\n");
        MessageBuilder { buf, start: StartLine::Request { method, uri: Span::new(u0, u1) }, headers: Vec::with_capacity(12), via: None }
    }

    /// Starts a response: `SIP/2.0 code reason`.
    pub fn response(code: u16, reason: &str) -> MessageBuilder {
        let mut buf = BytesMut::with_capacity(512);
        let _ = write!(Writer(&mut buf), "SIP/2.0 {code:03} ");
        let r0 = buf.len();
        buf.put_slice(reason.as_bytes());
        let r1 = buf.len();
        buf.put_slice(b"\r\n");
        MessageBuilder { buf, start: StartLine::Response { code, reason: Span::new(r0, r1) }, headers: Vec::with_capacity(12), via: None }
    }

    /// Starts a response to this request per RFC 3261 §8.2.6.2: every Via in order, From, To,
    /// Call-ID and CSeq copied; `to_tag` is added to To when it has no tag yet (give one for every
    /// response but 100, §8.2.6.2).
    pub fn response_to(&self, code: u16, reason: &str, to_tag: Option<&str>) -> MessageBuilder {
        let mut b = Message::response(code, reason);
        for h in &self.headers {
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    if h.name == HeaderName::Via && !b.headers.iter().any(|c| c.name == HeaderName::Via) {
                        // The top Via line, copied byte for byte: its kept parts are where they were.
                        b.via = self.via.get();
                    }
                    b.push_raw(h.name, h.name.as_str(), h.value.of(&self.buf))
                }
                HeaderName::To => {
                    let value = h.value.of(&self.buf);
                    let has_tag = self.to_tag().map(|t| t.is_some()).unwrap_or(true);
                    match to_tag {
                        Some(tag) if !has_tag => {
                            let mut v = Vec::with_capacity(value.len() + tag.len() + 5);
                            v.extend_from_slice(value);
                            v.extend_from_slice(b";tag=");
                            v.extend_from_slice(tag.as_bytes());
                            b.push_raw(h.name, "To", &v);
                        }
                        _ => b.push_raw(h.name, "To", value),
                    }
                }
                _ => {}
            }
        }
        b
    }
}

// ===== impl MessageBuilder =====

impl MessageBuilder {
    /// Adds a header written from anything that displays as its value (typed headers do).
    pub fn header(mut self, name: HeaderName, value: impl fmt::Display) -> Self {
        self.push(name, value);
        self
    }

    /// Adds a header by name, which may be an extension header.
    pub fn header_named(mut self, name: &str, value: impl fmt::Display) -> Self {
        if HeaderName::from_bytes(name.as_bytes()) == HeaderName::ContentLength {
            return self;
        }
        let n0 = self.buf.len();
        self.buf.put_slice(name.as_bytes());
        let n1 = self.buf.len();
        self.buf.put_slice(b": ");
        let v0 = self.buf.len();
        let _ = write!(Writer(&mut self.buf), "{value}");
        let v1 = self.buf.len();
        self.buf.put_slice(b"\r\n");
        self.headers.push(Header { name: HeaderName::from_bytes(name.as_bytes()), name_span: Span::new(n0, n1), value: Span::new(v0, v1) });
        self
    }

    /// Adds a header in place (for loops). Content-Length is ignored here: finishing writes it.
    pub fn push(&mut self, name: HeaderName, value: impl fmt::Display) {
        self.push_with(name, |out| {
            let _ = write!(Writer(out.0), "{value}");
        });
    }

    /// Adds a header whose value `write` puts together from text and numbers: the bytes `push`
    /// would write for the same `format_args!`, without `core::fmt` (the dialog layer's INVITE, ACK
    /// and BYE, thousands a second in a load run; BENCHMARKS.md "softphone load, the UA path").
    /// Content-Length is ignored: finishing writes it.
    pub fn push_with(&mut self, name: HeaderName, write: impl FnOnce(&mut ValueOut<'_>)) {
        if name == HeaderName::ContentLength {
            return;
        }
        let n0 = self.buf.len();
        self.buf.put_slice(name.as_str().as_bytes());
        let n1 = self.buf.len();
        self.buf.put_slice(b": ");
        let v0 = self.buf.len();
        write(&mut ValueOut(&mut self.buf));
        let v1 = self.buf.len();
        self.buf.put_slice(b"\r\n");
        self.headers.push(Header { name, name_span: Span::new(n0, n1), value: Span::new(v0, v1) });
    }

    /// Adds a header with a raw value, byte for byte. Content-Length is ignored: finishing writes it.
    pub fn push_raw(&mut self, name: HeaderName, spelling: &str, value: &[u8]) {
        if name == HeaderName::ContentLength {
            return;
        }
        let n0 = self.buf.len();
        self.buf.put_slice(spelling.as_bytes());
        let n1 = self.buf.len();
        self.buf.put_slice(b": ");
        let v0 = self.buf.len();
        self.buf.put_slice(value);
        let v1 = self.buf.len();
        self.buf.put_slice(b"\r\n");
        self.headers.push(Header { name, name_span: Span::new(n0, n1), value: Span::new(v0, v1) });
    }

    /// Copies every `name` header of `from`, values byte for byte, in order.
    pub fn copy_headers(mut self, from: &Message, name: HeaderName) -> Self {
        for h in from.headers.iter().filter(|h| h.name == name) {
            let spelling =
                if name == HeaderName::Other { std::str::from_utf8(h.name_span.of(&from.buf)).unwrap_or("X") } else { name.as_str() };
            self.push_raw(name, spelling, h.value.of(&from.buf));
        }
        self
    }

    /// Adds Content-Type and the body, writes Content-Length, and finishes.
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Message {
        if !body.is_empty() {
            self.push_with(HeaderName::ContentType, |v| {
                v.str(content_type);
            });
        }
        self.finish_with(body)
    }

    /// Finishes a message without a body (`Content-Length: 0`).
    pub fn finish(self) -> Message {
        self.finish_with(&[])
    }

    fn finish_with(mut self, body: &[u8]) -> Message {
        // Room for Content-Length, the blank line and the body, allocated exactly: growing the
        // buffer in place doubles it, and a message that is kept (our INVITE until its answer,
        // §13.2.2; our 2xx until its ACK, §13.3.1.4) would hold that slack all the while.
        let need = "Content-Length: \r\n\r\n".len() + 10 + body.len();
        if self.buf.capacity() - self.buf.len() < need {
            let mut exact = BytesMut::with_capacity(self.buf.len() + need);
            exact.put_slice(&self.buf);
            self.buf = exact;
        }
        let n0 = self.buf.len();
        self.buf.put_slice(b"Content-Length");
        let n1 = self.buf.len();
        self.buf.put_slice(b": ");
        crate::decimal::push_decimal(&mut Writer(&mut self.buf), body.len() as u64);
        self.buf.put_slice(b"\r\n");
        let v1 = self.buf.len() - 2;
        self.headers.push(Header { name: HeaderName::ContentLength, name_span: Span::new(n0, n1), value: Span::new(n1 + 2, v1) });
        self.buf.put_slice(b"\r\n");
        let b0 = self.buf.len();
        self.buf.put_slice(body);
        let b1 = self.buf.len();
        Message {
            buf: self.buf.freeze(),
            start: self.start,
            index: HeaderIndex::of(&self.headers),
            headers: self.headers,
            body: Span::new(b0, b1),
            tags: TagCache::default(),
            via: ViaCache::of(self.via),
        }
    }
}

// ===== edits =====

impl Message {
    /// Returns a copy with `text` inserted right after the topmost Via value (before a `,` that may
    /// follow it), e.g. `;received=192.0.2.1;rport=5060` (RFC 3261 §18.2.1, RFC 3581 §4). One copy of
    /// the buffer; the header table is shifted, not re-parsed.
    pub fn append_to_top_via(&self, text: &str) -> Message {
        match self.top_via_end() {
            Some(end) => self.splice(&[(end, text.as_bytes())]),
            None => self.clone(),
        }
    }

    /// Buffer offset just after the first value of the first Via header (before a `,` that starts
    /// the next value, and before trailing white space); `None` without a Via.
    pub(crate) fn top_via_end(&self) -> Option<usize> {
        let h = self.headers.iter().find(|h| h.name == HeaderName::Via)?;
        let value = h.value.of(&self.buf);
        // End of the first element: the first ',' outside quotes, else the end of the value.
        let mut end = value.len();
        let mut i = 0;
        while i < value.len() {
            match value[i] {
                b'"' => i += super::lex::quoted_len(&value[i..]).unwrap_or(value.len() - i),
                b',' => {
                    end = i;
                    break;
                }
                _ => i += 1,
            }
        }
        while end > 0 && matches!(value[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
            end -= 1;
        }
        Some(h.value.start as usize + end)
    }

    /// Where `part`, a slice of this message's text (as handed out by the typed accessors, which
    /// borrow from the buffer), starts in the buffer; `None` if it is not borrowed from it.
    pub(crate) fn offset_of(&self, part: &str) -> Option<usize> {
        let base = self.buf.as_ptr() as usize;
        let at = (part.as_ptr() as usize).checked_sub(base)?;
        (at + part.len() <= self.buf.len()).then_some(at)
    }

    /// Inserts each `(at, bytes)` at buffer offset `at` (inside or at the end of a header value;
    /// offsets ascending, several at one offset go in the order given) and shifts every span that
    /// lies after it. One copy of the buffer, however many inserts.
    pub(crate) fn splice(&self, edits: &[(usize, &[u8])]) -> Message {
        self.splice_keeping(edits, None)
    }

    /// [`Message::splice`] for inserts that each go into the top Via's parameters, at a
    /// parameter's end or at the end of the list, and are themselves `*( SEMI via-params )` or a
    /// parameter's `EQUAL value` (the §18.2.1 `received` and the RFC 3581 `rport` value): the
    /// kept top Via, if any, stays kept (its parts before the parameters do not move within the
    /// line, and the parameters still run to its end). An insert elsewhere keeps nothing.
    pub(crate) fn splice_top_via_params(&self, edits: &[(usize, &[u8])]) -> Message {
        let first_via = self.first(HeaderName::Via);
        let via = self.via.get().filter(|&w| {
            // Inside the top Via line's parameters, which run to the end of the line.
            let params = first_via.map(|h| (h.value.start as usize + ((w >> (7 * 7)) & 0x7f) as usize, h.value.end as usize));
            params.is_some_and(|(start, end)| edits.iter().all(|&(at, _)| (start..=end).contains(&at)))
        });
        self.splice_keeping(edits, via)
    }

    fn splice_keeping(&self, edits: &[(usize, &[u8])], via: Option<u64>) -> Message {
        let added: usize = edits.iter().map(|(_, b)| b.len()).sum();
        let mut buf = BytesMut::with_capacity(self.buf.len() + added);
        let mut from = 0;
        for &(at, bytes) in edits {
            let at = at.clamp(from, self.buf.len());
            buf.put_slice(&self.buf[from..at]);
            buf.put_slice(bytes);
            from = at;
        }
        buf.put_slice(&self.buf[from..]);
        // How far an offset moves: the length of every insert at or before it. A span before the
        // first insert does not move and one after the last moves by all of them (every header
        // but the edited one), without a walk of the inserts.
        let moved = |x: u32| -> u32 { edits.iter().filter(|(at, _)| *at as u32 <= x).map(|(_, b)| b.len() as u32).sum() };
        let clamp = |at: usize| at.min(u32::MAX as usize) as u32;
        let first = edits.iter().map(|e| clamp(e.0)).min().unwrap_or(u32::MAX);
        let last = edits.iter().map(|e| clamp(e.0)).max().unwrap_or(0);
        let all = added as u32;
        let shift = |s: Span| {
            if s.end < first {
                s
            } else if s.start > last {
                Span { start: s.start + all, end: s.end + all }
            } else {
                Span { start: s.start + moved(s.start), end: s.end + moved(s.end) }
            }
        };
        let start = match &self.start {
            StartLine::Request { method, uri } => StartLine::Request { method: method.clone(), uri: shift(*uri) },
            StartLine::Response { code, reason } => StartLine::Response { code: *code, reason: shift(*reason) },
        };
        let headers = self.headers.iter().map(|h| Header { name: h.name, name_span: shift(h.name_span), value: shift(h.value) }).collect();
        let n = added as u32;
        let body = Span { start: self.body.start + n, end: self.body.end + n };
        // The same lines in the same order, so the same index.
        Message { buf: buf.freeze(), start, headers, body, index: self.index, tags: TagCache::default(), via: ViaCache::of(via) }
    }
}
