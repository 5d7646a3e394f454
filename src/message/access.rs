//! Typed, lazy header accessors on [`Message`], and whole-message checks.
//!
//! Each accessor parses on demand from the raw bytes and borrows from the message. Errors carry the
//! header name and the byte offset, ready for a `400 Bad <Header> Header` answer.

use super::error::{ErrorKind, ParseError, ValueError};
use super::header::{check_date, parse_number, AddrForm, AuthHeader, CSeq, DeltaWithParams, MediaType, NameAddr, Reason, TokenList, Via};
use super::lex::{has_space_or_ctl, trim, ListIter};
use super::params::Params;
use super::uri::Host;
use super::{Header, HeaderName, Lookup, Message, Span, StartLine};

impl Message {
    fn value_str<'a>(&'a self, h: &Header) -> Result<&'a str, ParseError> {
        std::str::from_utf8(h.value.of(&self.buf))
            .map_err(|e| ParseError::in_header(ErrorKind::NotUtf8, h.name, h.value.start as usize + e.valid_up_to()))
    }

    fn value_err(h: &Header, e: ValueError) -> ParseError {
        ParseError::in_header(ErrorKind::HeaderValue, h.name, h.value.start as usize + e.offset)
    }

    /// The one header `name` (error if missing or repeated).
    fn single(&self, name: HeaderName) -> Result<&Header, ParseError> {
        self.optional(name)?.ok_or(ParseError::in_header(ErrorKind::MissingHeader, name, 0))
    }

    /// The header `name` if present once, `None` if absent, an error if repeated.
    fn optional(&self, name: HeaderName) -> Result<Option<&Header>, ParseError> {
        match self.index.get(name) {
            Lookup::Absent => return Ok(None),
            Lookup::Once(at) => return Ok(self.headers.get(at)),
            // The error names the second line: find it.
            Lookup::Repeated(_) | Lookup::Scan => {}
        }
        let mut found = None;
        for h in self.headers.iter().filter(|h| h.name == name) {
            if found.is_some() {
                return Err(ParseError::in_header(ErrorKind::DuplicateHeader, name, h.name_span.start as usize));
            }
            found = Some(h);
        }
        Ok(found)
    }

    fn parse_optional<'a, T>(
        &'a self,
        name: HeaderName,
        f: impl FnOnce(&'a str) -> Result<T, ValueError>,
    ) -> Result<Option<T>, ParseError> {
        match self.optional(name)? {
            None => Ok(None),
            Some(h) => f(self.value_str(h)?).map(Some).map_err(|e| Self::value_err(h, e)),
        }
    }

    /// Every element of the comma-separated list header `name`, across all its lines.
    fn list<'a, T>(&'a self, name: HeaderName, parse: fn(&'a str) -> Result<T, ValueError>) -> ListValues<'a, T> {
        ListValues { msg: self, name, next_header: 0, current: None, parse }
    }

    /// The topmost Via value (RFC 3261 §18.2.2 answers go where it says). Parsed once per message:
    /// a successful parse is kept (see [`super::ViaCache`]) and later calls read it back.
    pub fn via(&self) -> Result<Via<'_>, ParseError> {
        let h = self.first(HeaderName::Via).ok_or(ParseError::in_header(ErrorKind::MissingHeader, HeaderName::Via, 0))?;
        let s = self.value_str(h)?;
        if let Some(via) = self.via.get().and_then(|w| kept_via(s, w)) {
            return Ok(via);
        }
        // One value on the line (the usual case): if the whole line is a `via-parm`, it holds no
        // ',' or '<' outside a quoted parameter value, so the list split below would hand exactly this
        // text to `Via::parse`; skip the split.
        if let Ok(via) = Via::parse(s) {
            self.keep_via(s, &via);
            return Ok(via);
        }
        let (first, at) = ListIter::new(s).next().unwrap_or(Err(ValueError::at(0))).map_err(|e| Self::value_err(h, e))?;
        Via::parse(first).map_err(|e| Self::value_err(h, ValueError::at(at + e.offset)))
    }

    /// Keeps `via`, parsed from `line`, the whole value of this message's first Via line (see
    /// [`super::ViaCache`]), if the kept word reads back as `via`.
    fn keep_via(&self, line: &str, via: &Via<'_>) {
        if let Some(w) = via_word(line, via).filter(|&w| kept_via(line, w).is_some_and(|k| same_text(&k, via))) {
            self.via.set(w);
        }
    }

    /// Every Via value, top first: several values per line and several lines.
    pub fn vias(&self) -> ListValues<'_, Via<'_>> {
        self.list(HeaderName::Via, Via::parse)
    }

    /// The From header (RFC 3261 §20.20).
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        let h = self.single(HeaderName::From)?;
        NameAddr::parse(self.value_str(h)?).map_err(|e| Self::value_err(h, e))
    }

    /// The To header (RFC 3261 §20.39).
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        let h = self.single(HeaderName::To)?;
        NameAddr::parse(self.value_str(h)?).map_err(|e| Self::value_err(h, e))
    }

    /// The From tag (RFC 3261 §19.3): `to_tag`'s counterpart, `from()?.tag()` read once.
    pub fn from_tag(&self) -> Result<Option<&str>, ParseError> {
        self.cached_tag(HeaderName::From, false)
    }

    /// The To tag (RFC 3261 §19.3), `None` without one: the same result as `to()?.tag()`, with the
    /// header parsed at most once per message (by this or by [`Message::validate`]).
    pub fn to_tag(&self) -> Result<Option<&str>, ParseError> {
        self.cached_tag(HeaderName::To, true)
    }

    fn cached_tag(&self, name: HeaderName, to: bool) -> Result<Option<&str>, ParseError> {
        if let Some(tag) = self.tags.get(to) {
            // Kept from a successful parse: the span is inside the buffer and on char boundaries.
            return Ok(tag.and_then(|t| self.buf.get(t.start as usize..t.end as usize)).and_then(|b| std::str::from_utf8(b).ok()));
        }
        let h = self.single(name)?;
        let addr = NameAddr::parse(self.value_str(h)?).map_err(|e| Self::value_err(h, e))?;
        let tag = addr.tag();
        self.keep_tag(to, tag);
        Ok(tag)
    }

    /// Records a tag read from this message's own buffer (see [`super::TagCache`]).
    fn keep_tag(&self, to: bool, tag: Option<&str>) {
        let span = match tag {
            None => None,
            Some(t) => {
                let at = (t.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
                if at > self.buf.len() || t.len() > self.buf.len() - at {
                    return; // not a slice of the buffer: nothing to keep
                }
                Some(Span::new(at, at + t.len()))
            }
        };
        self.tags.set(to, span);
    }

    /// The Call-ID (RFC 3261 §20.8): `word [ "@" word ]`, no whitespace.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let h = self.single(HeaderName::CallId)?;
        let s = self.value_str(h)?;
        // LWS is all below 0x21.
        if s.is_empty() || has_space_or_ctl(s.as_bytes()) {
            return Err(Self::value_err(h, ValueError::at(0)));
        }
        Ok(s)
    }

    /// The CSeq (RFC 3261 §20.16).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let h = self.single(HeaderName::CSeq)?;
        if let Some(cseq) = CSeq::parse_known(h.value.of(&self.buf)) {
            return Ok(cseq);
        }
        CSeq::parse(self.value_str(h)?).map_err(|e| Self::value_err(h, e))
    }

    /// Whether the Contact is the wildcard `*` (REGISTER removal, RFC 3261 §10.2.2).
    pub fn contact_is_star(&self) -> bool {
        self.header_values(HeaderName::Contact).any(|v| v == b"*")
    }

    /// Every Contact address (RFC 3261 §20.10). A `*` value is reported by [`Message::contact_is_star`]
    /// and yields an error here.
    pub fn contacts(&self) -> ListValues<'_, NameAddr<'_>> {
        self.list(HeaderName::Contact, NameAddr::parse)
    }

    /// Every Route value (RFC 3261 §20.34), top first.
    pub fn routes(&self) -> ListValues<'_, NameAddr<'_>> {
        self.list(HeaderName::Route, NameAddr::parse_name_addr)
    }

    /// Every Record-Route value (RFC 3261 §20.30), top first.
    pub fn record_routes(&self) -> ListValues<'_, NameAddr<'_>> {
        self.list(HeaderName::RecordRoute, NameAddr::parse_name_addr)
    }

    /// Max-Forwards (RFC 3261 §20.22), if present.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.parse_optional(HeaderName::MaxForwards, parse_number)
    }

    /// Expires (RFC 3261 §20.19), if present.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.parse_optional(HeaderName::Expires, parse_number)
    }

    /// Min-Expires (RFC 3261 §20.23), if present.
    pub fn min_expires(&self) -> Result<Option<u32>, ParseError> {
        self.parse_optional(HeaderName::MinExpires, parse_number)
    }

    /// Content-Type (RFC 3261 §20.15), if present.
    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, ParseError> {
        self.parse_optional(HeaderName::ContentType, MediaType::parse)
    }

    /// The tokens of a token-list header (Allow, Supported, Require, Proxy-Require, Unsupported) across
    /// all its lines.
    pub fn tokens(&self, name: HeaderName) -> impl Iterator<Item = Result<&str, ParseError>> + '_ {
        self.headers.iter().filter(move |h| h.name == name).flat_map(move |h| {
            let parsed = self.value_str(h).and_then(|s| TokenList::parse(s).map_err(|e| Self::value_err(h, e)));
            let (ok, err) = match parsed {
                Ok(t) => (Some(t.iter()), None),
                Err(e) => (None, Some(Err(e))),
            };
            ok.into_iter().flatten().map(Ok).chain(err)
        })
    }

    /// Session-Expires (RFC 4028 §4), if present.
    pub fn session_expires(&self) -> Result<Option<DeltaWithParams<'_>>, ParseError> {
        self.parse_optional(HeaderName::SessionExpires, DeltaWithParams::parse)
    }

    /// Min-SE (RFC 4028 §5), if present.
    pub fn min_se(&self) -> Result<Option<DeltaWithParams<'_>>, ParseError> {
        self.parse_optional(HeaderName::MinSe, DeltaWithParams::parse)
    }

    /// Every Reason value (RFC 3326).
    pub fn reasons(&self) -> ListValues<'_, Reason<'_>> {
        self.list(HeaderName::Reason, Reason::parse)
    }

    /// Every header line of an authentication header (Authorization, Proxy-Authorization,
    /// WWW-Authenticate, Proxy-Authenticate); each line holds one challenge or credentials.
    pub fn auth_headers(&self, name: HeaderName) -> impl Iterator<Item = Result<AuthHeader<'_>, ParseError>> + '_ {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(move |h| AuthHeader::parse(self.value_str(h)?).map_err(|e| Self::value_err(h, e)))
    }

    /// The values of the `name` lines (Authorization and the like) as text, for a reader that
    /// parses them itself ([`AuthHeader::parse_each`]); `Err` for a value that is not UTF-8.
    pub(crate) fn auth_values(&self, name: HeaderName) -> impl Iterator<Item = Result<&str, ParseError>> + '_ {
        self.headers.iter().filter(move |h| h.name == name).map(move |h| self.value_str(h))
    }

    /// A free-text header (User-Agent, Server, Subject, ...) as text.
    pub fn text(&self, name: HeaderName) -> Result<Option<&str>, ParseError> {
        self.parse_optional(name, |s| Ok(trim(s)))
    }

    /// Checks every header this stack knows against its grammar, that single-valued headers appear
    /// once, and that a request's CSeq method matches its method (RFC 3261 §8.1.1.5). Unknown headers
    /// are not checked. Returns the first problem.
    pub fn validate(&self) -> Result<(), ParseError> {
        let mut top_via = true;
        // The method of the CSeq line, as the loop parses it (a repeated CSeq is an error).
        let mut cseq_method = None;
        // The header lines as one text, checked for UTF-8 once (issue 16: a check per value cost
        // more, each call its own set-up); each value is a slice of it. Should the block not be
        // UTF-8 (an unknown header's value may not be), each value is checked on its own, as
        // before, so the error names the header that has the bad byte.
        let base = self.headers.first().map_or(0, |f| f.value.start as usize);
        let block = self.headers.last().and_then(|l| std::str::from_utf8(self.buf.get(base..l.value.end as usize)?).ok());
        let text = |h: &Header| {
            let at = (h.value.start as usize).checked_sub(base)?;
            block?.get(at..at + (h.value.end - h.value.start) as usize)
        };
        for h in &self.headers {
            if h.name == HeaderName::Other {
                continue;
            }
            if h.name.is_single() {
                self.optional(h.name)?;
            }
            let s = match text(h) {
                Some(s) => s,
                None => self.value_str(h)?,
            };
            let err = |e: ValueError| Self::value_err(h, e);
            match h.name {
                HeaderName::Via => {
                    // The top Via line holds one value, kept by a parse: checked already.
                    let top = std::mem::replace(&mut top_via, false);
                    match top && self.via.get().is_some() {
                        true => Ok(()),
                        false => ListIter::new(s).enumerate().try_for_each(|(k, i)| {
                            i.and_then(|(t, at)| {
                                let via = Via::parse(t).map_err(|e| ValueError::at(at + e.offset))?;
                                if top && k == 0 && t.len() == s.len() {
                                    self.keep_via(s, &via);
                                }
                                Ok(())
                            })
                        }),
                    }
                }
                HeaderName::From | HeaderName::To => NameAddr::parse(s).map(|a| {
                    self.keep_tag(h.name == HeaderName::To, a.tag());
                }),
                HeaderName::Contact if trim(s) == "*" => Ok(()),
                HeaderName::Contact => ListIter::new(s)
                    .try_for_each(|i| i.and_then(|(t, at)| NameAddr::parse(t).map(drop).map_err(|e| ValueError::at(at + e.offset)))),
                HeaderName::Route | HeaderName::RecordRoute => ListIter::new(s).try_for_each(|i| {
                    i.and_then(|(t, at)| {
                        NameAddr::parse_form(t, AddrForm::NameAddrOnly).map(drop).map_err(|e| ValueError::at(at + e.offset))
                    })
                }),
                HeaderName::CSeq => CSeq::parse(s).map(|c| cseq_method = Some(c.method)),
                HeaderName::MaxForwards | HeaderName::Expires | HeaderName::MinExpires | HeaderName::ContentLength => {
                    parse_number(s).map(drop)
                }
                HeaderName::ContentType => MediaType::parse(s).map(drop),
                HeaderName::Allow | HeaderName::Supported | HeaderName::Require | HeaderName::ProxyRequire | HeaderName::Unsupported => {
                    TokenList::parse(s).map(drop)
                }
                HeaderName::Authorization
                | HeaderName::ProxyAuthorization
                | HeaderName::WwwAuthenticate
                | HeaderName::ProxyAuthenticate => AuthHeader::parse(s).map(drop),
                HeaderName::SessionExpires | HeaderName::MinSe => DeltaWithParams::parse(s).map(drop),
                HeaderName::Reason => ListIter::new(s)
                    .try_for_each(|i| i.and_then(|(t, at)| Reason::parse(t).map(drop).map_err(|e| ValueError::at(at + e.offset)))),
                HeaderName::Date => check_date(s),
                _ => Ok(()),
            }
            .map_err(err)?;
        }
        if let Some(h) = self.optional(HeaderName::CallId)? {
            // `call_id`'s check, on the text already in hand.
            let s = match text(h) {
                Some(s) => s,
                None => self.value_str(h)?,
            };
            if s.is_empty() || has_space_or_ctl(s.as_bytes()) {
                return Err(Self::value_err(h, ValueError::at(0)));
            }
        }
        if let StartLine::Request { method, .. } = &self.start {
            if let Some(h) = self.optional(HeaderName::CSeq)? {
                // The loop above parsed this one line already; parse it again only if it did not
                // keep it.
                let cseq = match cseq_method.take() {
                    Some(m) => m,
                    None => CSeq::parse(self.value_str(h)?).map_err(|e| Self::value_err(h, e))?.method,
                };
                if &cseq != method {
                    return Err(ParseError::in_header(ErrorKind::CSeqMethodMismatch, HeaderName::CSeq, h.value.start as usize));
                }
            }
        }
        Ok(())
    }

    /// Checks that a request carries the headers every request must have: To, From, Call-ID, CSeq and
    /// Via (RFC 3261 §8.1.1; Max-Forwards is left out since RFC 2543 peers omit it).
    pub fn check_required(&self) -> Result<(), ParseError> {
        for name in [HeaderName::To, HeaderName::From, HeaderName::CallId, HeaderName::CSeq, HeaderName::Via] {
            if name == HeaderName::Via {
                if self.first(name).is_none() {
                    return Err(ParseError::in_header(ErrorKind::MissingHeader, name, 0));
                }
            } else {
                self.single(name)?;
            }
        }
        Ok(())
    }
}

/// The elements of a comma-separated list header across all its lines, each parsed on demand.
/// Returned by [`Message::vias`], [`Message::contacts`], [`Message::routes`] and friends.
#[allow(missing_debug_implementations)]
pub struct ListValues<'a, T> {
    msg: &'a Message,
    name: HeaderName,
    next_header: usize,
    current: Option<(Header, ListIter<'a>)>,
    parse: fn(&'a str) -> Result<T, ValueError>,
}

impl<'a, T> Iterator for ListValues<'a, T> {
    type Item = Result<T, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((h, items)) = &mut self.current {
                match items.next() {
                    Some(Ok((text, at))) => {
                        let base = h.value.start as usize + at;
                        let name = h.name;
                        return Some((self.parse)(text).map_err(|e| ParseError::in_header(ErrorKind::HeaderValue, name, base + e.offset)));
                    }
                    Some(Err(e)) => return Some(Err(Message::value_err(h, e))),
                    None => self.current = None,
                }
            }
            let idx = self.msg.headers[self.next_header..].iter().position(|h| h.name == self.name)? + self.next_header;
            self.next_header = idx + 1;
            let h = self.msg.headers[idx];
            match self.msg.value_str(&h) {
                Ok(s) => self.current = Some((h, ListIter::new(s))),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The parts of a top Via we write ourselves, `SIP/2.0/TRANSPORT SENT-BY;branch=BRANCH;rport`
/// (the dialog layer's requests), found once by a parse of one such line: only the branch differs
/// from one request to the next, and it comes after every place the kept word records. So a
/// request built with the same transport and sent-by keeps the same word without a parse of its
/// own (the transaction layer reads the top Via of every request it starts: about 1,600
/// instructions each, BENCHMARKS.md "softphone load, the UA path").
#[derive(Debug, Clone)]
pub(crate) struct OwnVia {
    transport: Box<str>,
    sent_by: Box<str>,
    word: u64,
}

impl OwnVia {
    /// The kept word of `SIP/2.0/{transport} {sent_by};branch=...;rport`, if such a line parses
    /// and its word describes it.
    pub(crate) fn new(transport: &str, sent_by: &str) -> Option<OwnVia> {
        let line = format!("SIP/2.0/{transport} {sent_by};branch={}0;rport", super::BRANCH_COOKIE);
        let via = Via::parse(&line).ok()?;
        let word = via_word(&line, &via)?;
        let params_at = ((word >> (7 * 7)) & 0x7f) as usize;
        let same = kept_via(&line, word).is_some_and(|k| same_text(&k, &via));
        (same && params_at == line.len() - via.params.as_str().len() && via.params.as_str().starts_with(";branch=")).then(|| OwnVia {
            transport: transport.into(),
            sent_by: sent_by.into(),
            word,
        })
    }

    /// Whether this was made for `transport` and `sent_by`.
    pub(crate) fn is_for(&self, transport: &str, sent_by: &str) -> bool {
        *self.transport == *transport && *self.sent_by == *sent_by
    }
}

impl Message {
    /// Keeps `own`'s word as the top Via's parts when that Via is exactly our line with a branch
    /// of token characters (so its parameters parse as the sample's did); otherwise nothing
    /// changes and a later read parses the Via as usual.
    pub(crate) fn keep_own_via(&self, own: &OwnVia) {
        let Some(line) = self.first(HeaderName::Via).and_then(|h| self.value_str(h).ok()) else { return };
        let branch = line
            .strip_prefix("SIP/2.0/")
            .and_then(|r| r.strip_prefix(&*own.transport))
            .and_then(|r| r.strip_prefix(' '))
            .and_then(|r| r.strip_prefix(&*own.sent_by))
            .and_then(|r| r.strip_prefix(";branch="))
            .and_then(|r| r.strip_suffix(";rport"));
        if branch.is_some_and(super::lex::is_token) {
            self.via.set(own.word);
        }
    }
}

/// The places of `via`'s parts in `line` (see [`super::ViaCache`]), if `via` was parsed from all
/// of `line` and its parameters start within 128 bytes.
fn via_word(line: &str, via: &Via<'_>) -> Option<u64> {
    let base = line.as_ptr() as usize;
    let at = |t: &str| (t.as_ptr() as usize).checked_sub(base).filter(|&a| a <= line.len());
    let end = |t: &str| at(t).map(|a| a + t.len());
    let (kind, host) = match via.host {
        Host::Domain(h) => (0u64, h),
        Host::Ipv4(h) => (1, h),
        Host::Ipv6(h) => (2, h),
    };
    let params = via.params.as_str();
    if at(via.protocol)? != 0 || end(params)? != line.len() {
        return None;
    }
    let places = [
        end(via.protocol)?,
        at(via.version)?,
        end(via.version)?,
        at(via.transport)?,
        end(via.transport)?,
        at(host)?,
        end(host)?,
        at(params)?,
    ];
    let mut w = kind << 56;
    for (i, p) in places.into_iter().enumerate() {
        if p >= 128 {
            return None;
        }
        w |= (p as u64) << (7 * i);
    }
    Some(w)
}

/// Whether `a` and `b` are the same slices of one text (not only equal values: a kept word
/// must give back exactly what the parse gave).
fn same_text(a: &Via<'_>, b: &Via<'_>) -> bool {
    let same = |x: &str, y: &str| std::ptr::eq(x, y);
    same(a.protocol, b.protocol)
        && same(a.version, b.version)
        && same(a.transport, b.transport)
        && std::mem::discriminant(&a.host) == std::mem::discriminant(&b.host)
        && same(a.host.as_str(), b.host.as_str())
        && a.port == b.port
        && same(a.params.as_str(), b.params.as_str())
}

/// The Via a [`via_word`] of `line` describes; `None` if the places do not fit `line`.
fn kept_via(line: &str, w: u64) -> Option<Via<'_>> {
    let p = |i: usize| ((w >> (7 * i)) & 0x7f) as usize;
    let host = line.get(p(5)..p(6))?;
    // The port: the digits after a `:` between the host (and an IPv6 reference's `]`) and the
    // parameters.
    let between = line.get(p(6)..p(7))?.trim_start_matches(']');
    let port = match between.strip_prefix(':') {
        Some(digits) => Some(digits.parse::<u16>().ok()?),
        None if between.is_empty() => None,
        None => return None,
    };
    Some(Via {
        protocol: line.get(..p(0))?,
        version: line.get(p(1)..p(2))?,
        transport: line.get(p(3)..p(4))?,
        host: match (w >> 56) & 3 {
            0 => Host::Domain(host),
            1 => Host::Ipv4(host),
            _ => Host::Ipv6(host),
        },
        port,
        params: Params::from_checked(line.get(p(7)..)?),
    })
}

#[cfg(test)]
mod own_via_tests {
    use super::*;
    use crate::message::Method;

    fn request(via: &str) -> Message {
        let mut b = Message::request(Method::Bye, "sip:bob@192.0.2.2");
        b.push(HeaderName::Via, via);
        b.push(HeaderName::CallId, "c1");
        b.finish()
    }

    /// The word [`OwnVia`] keeps gives back what a parse of the line gives, for every kind of
    /// host; a line of another shape keeps nothing and is parsed as before.
    #[test]
    fn own_via_keeps_what_a_parse_would_read() {
        for (transport, sent_by) in
            [("UDP", "127.0.0.1:5060"), ("TCP", "pc.example.com"), ("UDP", "[2001:db8::1]:5070"), ("TLS", "h.example:5061")]
        {
            let own = OwnVia::new(transport, sent_by).expect("our Via parses");
            assert!(own.is_for(transport, sent_by) && !own.is_for(transport, "192.0.2.9:5060"));
            let line = format!("SIP/2.0/{transport} {sent_by};branch=z9hG4bK0123456789abcdef;rport");
            let msg = request(&line);
            msg.keep_own_via(&own);
            assert!(msg.via.get().is_some(), "{line}");
            let fresh = Message::parse(msg.as_bytes().clone()).expect("parses");
            assert_eq!(msg.via().expect("kept"), fresh.via().expect("parsed"), "{line}");
            assert_eq!(msg.via().expect("kept").branch(), Some("z9hG4bK0123456789abcdef"));
            for other in [
                format!("SIP/2.0/{transport} {sent_by};branch=z9hG4bKa;rport;x=1"),
                format!("SIP/2.0/{transport} {sent_by};branch=a\"b;rport"),
                format!("SIP/2.0/{transport} {sent_by}0;branch=z9hG4bKa;rport"),
                format!("SIP/2.0/{transport} {sent_by};branch=z9hG4bKa;rport, SIP/2.0/UDP h;branch=z9hG4bKb"),
            ] {
                let msg = request(&other);
                msg.keep_own_via(&own);
                assert!(msg.via.get().is_none(), "{other}");
            }
        }
    }
}
