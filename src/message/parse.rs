//! Framing a datagram into a [`Message`]: start line (RFC 3261 §7.1, §7.2), header lines with
//! folding (§7.3.1), and the body framed by Content-Length (§7.5, §18.3).
//!
//! Only the start line and the framing are checked here; header values are parsed when a caller
//! asks for them (see the typed accessors on [`Message`]). A UDP datagram is always complete, so an
//! unfinished message is an error, never "need more bytes".

use super::error::{ErrorKind, ParseError};
use super::lex::{find_byte, is_token_char, trim_lws};
use super::method::Method;
use super::uri::Uri;
use super::{Header, HeaderIndex, HeaderName, Lookup, Message, Span, StartLine};
use bytes::Bytes;
use nom::bytes::complete::{tag, tag_no_case, take_while1, take_while_m_n};
use nom::character::complete::digit1;
use nom::combinator::all_consuming;
use nom::sequence::separated_pair;
use nom::{IResult, Parser};

/// How many headers to make room for up front; typical INVITEs carry 10 to 15.
const HEADER_CAPACITY: usize = 16;

/// `SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT` (case-insensitive literal).
fn sip_version(i: &[u8]) -> IResult<&[u8], (&[u8], &[u8]), ()> {
    let (i, _) = tag_no_case(&b"SIP/"[..]).parse(i)?;
    separated_pair(digit1, tag(&b"."[..]), digit1).parse(i)
}

fn check_version(v: (&[u8], &[u8]), at: usize) -> Result<(), ParseError> {
    if v == (&b"2"[..], &b"0"[..]) {
        Ok(())
    } else {
        Err(ParseError::new(ErrorKind::VersionNotSupported, at))
    }
}

/// `Status-Line = SIP-Version SP Status-Code SP Reason-Phrase`. A missing final SP with no reason
/// is tolerated.
fn status_line(line: &[u8]) -> Result<(u16, Span), ParseError> {
    // Fast path for the one version in use; the SP after it ends `1*DIGIT` as the grammar would.
    let (r, v) = match line.strip_prefix(b"SIP/2.0 ") {
        Some(_) => (&line[7..], (&b"2"[..], &b"0"[..])),
        None => sip_version(line).map_err(|_| ParseError::new(ErrorKind::Version, 0))?,
    };
    let at = line.len() - r.len();
    let Some(r) = r.strip_prefix(b" ") else {
        return Err(ParseError::new(ErrorKind::StartLine, at));
    };
    let code_at = line.len() - r.len();
    let res: IResult<&[u8], &[u8], ()> = take_while_m_n(3, 3, |c: u8| c.is_ascii_digit()).parse(r);
    let (r, code) = res.map_err(|_| ParseError::new(ErrorKind::StatusCode, code_at))?;
    let reason_at = line.len() - r.len();
    let reason = match r.first() {
        None => Span::new(reason_at, reason_at),
        Some(b' ') => Span::new(reason_at + 1, line.len()),
        Some(_) => return Err(ParseError::new(ErrorKind::StatusCode, code_at)),
    };
    check_version(v, 0)?;
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if code < 100 {
        return Err(ParseError::new(ErrorKind::StatusCode, code_at));
    }
    Ok((code, reason))
}

/// `Request-Line = Method SP Request-URI SP SIP-Version`, single SPs only (RFC 4475 §3.1.2.9/10).
fn request_line(line: &[u8]) -> Result<(Method, Span), ParseError> {
    let res: IResult<&[u8], &[u8], ()> = take_while1(is_token_char).parse(line);
    let (r, m) = res.map_err(|_| ParseError::new(ErrorKind::Method, 0))?;
    let Some(r) = r.strip_prefix(b" ") else {
        return Err(ParseError::new(ErrorKind::StartLine, m.len()));
    };
    let uri_at = line.len() - r.len();
    let sp = find_byte(r, 0, b' ').ok_or(ParseError::new(ErrorKind::StartLine, uri_at))?;
    let uri = &r[..sp];
    let ver = &r[sp + 1..];
    let ver_at = uri_at + sp + 1;
    let v = if ver == b"SIP/2.0" {
        (&b"2"[..], &b"0"[..])
    } else {
        all_consuming(sip_version)
            .parse(ver)
            .map(|(_, v)| v)
            .map_err(|_| ParseError::new(if ver.contains(&b' ') { ErrorKind::StartLine } else { ErrorKind::Version }, ver_at))?
    };
    // The Request-URI: any URI but without LWS, <>, or ?headers (RFC 4475 §3.1.2.7, §3.1.2.8, §3.1.2.11).
    let bad_uri = || ParseError::new(ErrorKind::RequestUri, uri_at);
    let uri_str = std::str::from_utf8(uri).map_err(|_| bad_uri())?;
    match Uri::parse(uri_str).map_err(|_| bad_uri())? {
        Uri::Sip(u) if u.headers.is_some() => return Err(bad_uri()),
        _ => {}
    }
    check_version(v, ver_at)?;
    // Token validity checked above, so the method is known or an extension.
    let method = match Method::from_known_bytes(m) {
        Some(known) => known,
        None => Method::from_token(std::str::from_utf8(m).map_err(|_| ParseError::new(ErrorKind::Method, 0))?)
            .ok_or(ParseError::new(ErrorKind::Method, 0))?,
    };
    Ok((method, Span::new(uri_at, uri_at + sp)))
}

/// Returns (end of line content, start of next line) for the line holding `from`, where `line`
/// is where that line starts. Accepts CRLF and bare LF; a last line with no terminator ends at the
/// end of the buffer.
#[inline]
fn line_end(buf: &[u8], line: usize, from: usize) -> (usize, usize) {
    match find_byte(buf, from, b'\n') {
        Some(nl) => {
            let end = if nl > line && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
            (end, nl + 1)
        }
        None => (buf.len(), buf.len()),
    }
}

#[inline]
fn trim_end_ws(buf: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(buf[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    end
}

/// `WSP = SP / HTAB`.
#[inline]
fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Parses one datagram. See [`Message::parse`].
pub(super) fn parse(mut buf: Bytes) -> Result<Message, ParseError> {
    let b: &[u8] = &buf;
    // §7.5: CRLFs before the start line are ignored.
    let pos = b.iter().position(|&c| c != b'\r' && c != b'\n').ok_or(ParseError::new(ErrorKind::Empty, 0))?;
    let (sl_end, next) = line_end(b, pos, pos);
    let line = &b[pos..sl_end];
    let start = if line.starts_with(b"SIP/") || line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let (code, reason) = status_line(line).map_err(|e| shift(e, pos))?;
        StartLine::Response { code, reason: reason.shift(pos) }
    } else {
        let (method, uri) = request_line(line).map_err(|e| shift(e, pos))?;
        StartLine::Request { method, uri: uri.shift(pos) }
    };
    let mut headers: Vec<Header> = Vec::with_capacity(HEADER_CAPACITY);
    let mut index = HeaderIndex::EMPTY;
    let body_start = header_lines(b, next, &mut headers, &mut index)?;
    let content_length = content_length(b, &headers, index)?;
    let body_end = match content_length {
        Some((n, at)) => {
            let end = body_start.checked_add(n as usize).filter(|&e| e <= b.len());
            end.ok_or(ParseError::in_header(ErrorKind::BodyTooShort, HeaderName::ContentLength, at))?
        }
        // §18.3: over UDP, with no Content-Length the body runs to the end of the datagram.
        None => b.len(),
    };
    // Bytes after the body are not part of this message (§18.3); truncating never allocates.
    buf.truncate(body_end);
    Ok(Message { buf, start, headers, body: Span::new(body_start, body_end), index, tags: Default::default(), via: Default::default() })
}

/// Frames the header lines from `pos` (§7.3.1): `header-name HCOLON value CRLF`, where a line that
/// starts with SP or HTAB continues the previous value. Returns where the body starts: after the
/// empty line, or the end of the datagram when there is none (RFC 4475 baddn, RFC 5118 §4.10: a
/// message without a body).
#[inline(never)]
fn header_lines(b: &[u8], mut pos: usize, headers: &mut Vec<Header>, index: &mut HeaderIndex) -> Result<usize, ParseError> {
    loop {
        let Some(&first) = b.get(pos) else {
            return Ok(b.len());
        };
        if is_token_char(first) {
            // `header-name HCOLON` = token *WSP ":". Find the first ':' and check that what comes
            // before it is exactly that: the same verdict as scanning the token and then the WSP.
            // `b[pos]` is a token character, so the ':' is after it and the WSP run before the ':'
            // stops at `pos + 1` at the latest.
            let (name, name_end, colon) = match b.get(pos..).and_then(|w| w.first_chunk::<24>()).and_then(HeaderName::at_line_start) {
                Some((name, colon)) => (name, pos + colon, pos + colon),
                None => {
                    let Some(colon) = find_byte(b, pos + 1, b':') else {
                        return Err(ParseError::new(ErrorKind::HeaderLine, pos));
                    };
                    let mut name_end = colon;
                    while is_wsp(b[name_end - 1]) {
                        name_end -= 1;
                    }
                    (HeaderName::from_bytes_in(b, pos, name_end), name_end, colon)
                }
            };
            // A known name matched byte for byte, so it is a token; anything else is checked here
            // (this also rejects a line end before the ':').
            if name == HeaderName::Other && !b[pos..name_end].iter().all(|&c| is_token_char(c)) {
                return Err(ParseError::new(ErrorKind::HeaderLine, pos));
            }
            let mut vs = colon + 1;
            while vs < b.len() && is_wsp(b[vs]) {
                vs += 1;
            }
            let (end, after) = line_end(b, pos, vs);
            let ve = trim_end_ws(b, vs, end);
            index.note(name, headers.len());
            headers.push(Header { name, name_span: Span::new(pos, name_end), value: Span::new(vs, ve) });
            pos = after;
            continue;
        }
        let (end, after) = line_end(b, pos, pos);
        if end == pos {
            return Ok(after);
        }
        if first != b' ' && first != b'\t' {
            return Err(ParseError::new(ErrorKind::HeaderLine, pos));
        }
        let last = headers.last_mut().ok_or(ParseError::new(ErrorKind::HeaderLine, pos))?;
        fold(b, last, pos, end);
        pos = after;
    }
}

/// A fold: the line `b[pos..end]` (starting with WSP) continues `last`'s value (§7.3.1).
fn fold(b: &[u8], last: &mut Header, pos: usize, end: usize) {
    let new_end = trim_end_ws(b, pos, end);
    if new_end > pos {
        if last.value.start == last.value.end {
            // Value was empty so far: it starts on this line.
            let s = pos + b[pos..new_end].iter().position(|&c| !is_wsp(c)).unwrap_or(0);
            last.value = Span::new(s, new_end);
        } else {
            last.value.end = new_end as u32;
        }
    }
}

/// The Content-Length, once all lines (and folds) are in: `(value, offset of its value)`. Every
/// Content-Length line must agree (RFC 4475 §3.3.9).
fn content_length(b: &[u8], headers: &[Header], index: HeaderIndex) -> Result<Option<(u32, usize)>, ParseError> {
    let read = |h: &Header| {
        let v = h.value.of(b);
        // Digits are ASCII, so anything else (non-UTF-8 included) is rejected without a UTF-8 check.
        super::lex::parse_u32_bytes(trim_lws(v)).ok_or(ParseError::in_header(
            ErrorKind::ContentLength,
            HeaderName::ContentLength,
            h.value.start as usize,
        ))
    };
    match index.get(HeaderName::ContentLength) {
        Lookup::Absent => return Ok(None),
        Lookup::Once(at) => return headers.get(at).map(|h| Ok((read(h)?, h.value.start as usize))).transpose(),
        Lookup::Repeated(_) | Lookup::Scan => {}
    }
    let mut content_length: Option<(u32, usize)> = None;
    for h in headers.iter().filter(|h| h.name == HeaderName::ContentLength) {
        let n = read(h)?;
        match content_length {
            Some((m, _)) if m != n => {
                return Err(ParseError::in_header(ErrorKind::ConflictingContentLength, HeaderName::ContentLength, h.value.start as usize))
            }
            _ => content_length = Some((n, h.value.start as usize)),
        }
    }
    Ok(content_length)
}

fn shift(e: ParseError, by: usize) -> ParseError {
    ParseError::new(e.kind(), e.offset() + by)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `request_uri_is_sip` answers as a second parse of the Request-URI would, on every
    /// Request-URI the parser takes (and a response is no request).
    #[test]
    fn request_uri_is_sip_matches_a_parse() {
        let uris = [
            "sip:bob@example.com",
            "SIP:bob@example.com",
            "sIpS:bob@example.com:5061;transport=tcp",
            "sips:[2001:db8::1]",
            "sip:example.com",
            "sipx:bob@example.com",
            "si:bob",
            "tel:+1-201-555-0123",
            "http:sip:bob@example.com",
            "urn:service:sos",
            "sip+x:bob@example.com",
        ];
        let mut parsed = 0;
        for uri in uris {
            let text = format!(
                "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\nFrom: <sip:a@x>;tag=1\r\n\
                 To: <sip:b@x>\r\nCall-ID: c1@x\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let Ok(m) = Message::parse(Bytes::from(text)) else { continue };
            parsed += 1;
            assert_eq!(m.request_uri_is_sip(), matches!(m.request_uri(), Some(Uri::Sip(_))), "{uri}");
        }
        assert!(parsed >= 9, "most of them parse: {parsed}");
        let response = Message::parse(Bytes::from_static(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c1@x\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        assert!(!response.request_uri_is_sip());
    }

    fn msg(extra_before: &str, fill: usize, extra_after: &str) -> Result<Message, ParseError> {
        let mut m = String::from("OPTIONS sip:bob@example.com SIP/2.0\r\n");
        m.push_str(extra_before);
        for i in 0..fill {
            m.push_str(&format!("X-Fill-{i}: {i}\r\n"));
        }
        m.push_str("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\n");
        m.push_str("Call-ID: c1@x\r\nCSeq: 7 OPTIONS\r\n");
        m.push_str(extra_after);
        m.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(Bytes::from(m))
    }

    /// The accessors read through the index; past line 253 they fall back to a scan. Both must give
    /// the same answers, repeated single-valued headers included.
    #[test]
    fn header_index_matches_a_table_scan() {
        for fill in [0, 1, 200, 252, 253, 254, 255, 400] {
            let m = msg("", fill, "").unwrap();
            assert_eq!(m.call_id().unwrap(), "c1@x", "{fill}");
            assert_eq!(m.cseq().unwrap().seq, 7);
            assert_eq!(m.via().unwrap().branch(), Some("z9hG4bKa"));
            assert_eq!(m.from().unwrap().tag(), Some("1"));
            assert!(m.to().unwrap().tag().is_none());
            assert_eq!(m.content_length(), Some(0));
            assert!(m.check_required().is_ok() && m.validate().is_ok());

            let m = msg("Call-ID: first@x\r\n", fill, "CSeq: 8 OPTIONS\r\n").unwrap();
            assert_eq!(m.header(HeaderName::CallId), Some(&b"first@x"[..]));
            let e = m.call_id().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DuplicateHeader);
            assert_eq!(&m.as_bytes()[e.offset()..e.offset() + 7], b"Call-ID");
            assert!(m.as_bytes()[..e.offset()].ends_with(b"\r\n") && e.offset() > 60);
            assert_eq!(m.cseq().unwrap_err().kind(), ErrorKind::DuplicateHeader);

            let e = msg("", fill, "l: 5\r\n").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConflictingContentLength);
        }
    }

    /// `via()` skips the list split when the whole line is one Via; with several values on the line
    /// it must still return the first, and report errors where the list split puts them.
    #[test]
    fn top_via_with_one_or_several_values_per_line() {
        let m = msg("", 0, "").unwrap();
        let one = m.via().unwrap();
        let mut wire = m.as_bytes().to_vec();
        let at = wire.windows(8).position(|w| w == b"branch=z").unwrap() + 17;
        wire.splice(at..at, b" , SIP/2.0/TCP h2;branch=z9hG4bKb".iter().copied());
        let two = Message::parse(Bytes::from(wire)).unwrap();
        assert_eq!(two.via().unwrap(), one);
        assert_eq!(two.vias().count(), 2);
        for bad in ["Via: SIP/2.0/UDP h;x=\"a,b\" junk\r\n", "Via: SIP/2.0/UDP h junk, SIP/2.0/UDP h2\r\n", "Via: ,SIP/2.0/UDP h\r\n"] {
            let m = Message::parse(Bytes::from(format!("OPTIONS sip:b@x SIP/2.0\r\n{bad}Content-Length: 0\r\n\r\n"))).unwrap();
            assert_eq!(m.via().unwrap_err().kind(), ErrorKind::HeaderValue, "{bad}");
        }
        // Only the top value is parsed: a bad later one is `vias()`'s business.
        let m = Message::parse(Bytes::from_static(b"OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h, ,x\r\n\r\n")).unwrap();
        assert_eq!(m.via().unwrap().host, crate::message::Host::Domain("h"));
        assert!(m.vias().any(|v| v.is_err()));
    }

    /// Header lines the name fast path hands to the general one: WSP before the colon, a name
    /// longer than the 24-byte window, a buffer that ends inside the window.
    #[test]
    fn header_names_off_the_fast_path() {
        let m = Message::parse(Bytes::from_static(
            b"OPTIONS sip:b@x SIP/2.0\r\nVia \t: SIP/2.0/UDP h;branch=z9hG4bKq\r\nX-A-Very-Long-Extension-Header-Name: 1\r\nl:0",
        ))
        .unwrap();
        assert_eq!(m.via().unwrap().branch(), Some("z9hG4bKq"));
        assert_eq!(m.other_header("x-a-very-long-extension-header-name").next(), Some(&b"1"[..]));
        assert_eq!(m.content_length(), Some(0));
        let e = Message::parse(Bytes::from_static(b"OPTIONS sip:b@x SIP/2.0\r\nVia\r\n: x\r\n\r\n")).unwrap_err();
        assert_eq!((e.kind(), e.offset()), (ErrorKind::HeaderLine, 25));
        let e = Message::parse(Bytes::from_static(b"OPTIONS sip:b@x SIP/2.0\r\nV\xc3\xa9a: x\r\n\r\n")).unwrap_err();
        assert_eq!((e.kind(), e.offset()), (ErrorKind::HeaderLine, 25));
    }

    /// `from_tag`/`to_tag` give what `from()?.tag()`/`to()?.tag()` give, before and after
    /// `validate` kept the tags, on a spliced copy (which must not reuse the old spans), and the
    /// same error for a malformed or repeated header however often they are asked.
    #[test]
    fn kept_tags_match_a_fresh_parse() {
        let wire = "OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
                    From: \"A\" <sip:a@x>;x=1;tag=f1\r\nTo: <sip:b@x>;tag=t2\r\nCall-ID: c1@x\r\nCSeq: 7 OPTIONS\r\n\
                    Content-Length: 0\r\n\r\n";
        let m = Message::parse(Bytes::from(wire)).unwrap();
        assert_eq!(m.from_tag().unwrap(), Some("f1"));
        assert_eq!(m.to_tag().unwrap(), Some("t2"));
        assert_eq!(m.to_tag().unwrap(), m.to().unwrap().tag());
        let m = Message::parse(Bytes::from(wire)).unwrap();
        assert!(m.validate().is_ok());
        assert_eq!((m.from_tag().unwrap(), m.to_tag().unwrap()), (Some("f1"), Some("t2")));
        let at = wire.find(";tag=t2").unwrap();
        let spliced = m.splice(&[(at, b";a=b".as_slice())]);
        assert_eq!(spliced.to_tag().unwrap(), Some("t2"));
        assert_eq!(spliced.from_tag().unwrap(), Some("f1"));

        let untagged = Message::parse(Bytes::from(wire.replace(";tag=t2", ""))).unwrap();
        assert!(untagged.validate().is_ok());
        assert_eq!(untagged.to_tag().unwrap(), None);

        for bad in [wire.replace("To: <sip:b@x>;tag=t2", "To: <sip:b@x> junk"), wire.replace("To:", "To: <sip:c@x>\r\nTo:")] {
            let m = Message::parse(Bytes::from(bad)).unwrap();
            let first = m.to_tag().unwrap_err();
            assert!(m.validate().is_err());
            assert_eq!(m.to_tag().unwrap_err(), first);
            assert_eq!(m.to().unwrap_err(), first);
            assert_eq!(m.from_tag().unwrap(), Some("f1"));
        }
    }

    /// `via()` gives what a fresh parse gives, before and after `validate` or an earlier `via()`
    /// kept it, on a copy, on a response built from the request (the Via copied verbatim) and on a
    /// spliced copy; `validate` still checks every other Via value when the top one is kept, and
    /// an error is found again each time.
    #[test]
    fn kept_via_matches_a_fresh_parse() {
        let line = |via: &str| {
            format!("OPTIONS sip:b@x SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        };
        let fresh = |wire: &str| Message::parse(Bytes::from(wire.to_owned())).unwrap();
        for via in [
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport",
            "SIP / 2.0 / UDP host.example.com;branch=z9hG4bKb",
            "SIP/2.0/TCP [2001:db8::1]:5070",
            "SIP/2.0/UDP h;branch=z9hG4bKc , SIP/2.0/UDP o;branch=z9hG4bKd",
            "SIP/2.0/UDP h;x=\"a,b\";branch=z9hG4bKe",
        ] {
            let wire = line(via);
            let want = fresh(&wire).via().unwrap().to_string();
            for validate_first in [false, true] {
                let m = fresh(&wire);
                if validate_first {
                    m.validate().unwrap();
                }
                assert_eq!(m.via().unwrap(), fresh(&wire).via().unwrap(), "{via}");
                assert_eq!(m.via().unwrap().to_string(), want, "{via}");
                m.validate().unwrap();
                assert_eq!(m.clone().via().unwrap().to_string(), want);
                let answer = m.response_to(200, "OK", None).finish();
                assert_eq!(answer.via().unwrap().to_string(), want, "{via}");
                let at = wire.find("\r\nFrom").unwrap();
                assert_eq!(m.splice(&[(at, b", SIP/2.0/UDP z".as_slice())]).via().unwrap().to_string(), want, "{via}");
            }
        }
        // A bad second value is found with the top one kept; a bad top value every time.
        let m = fresh(&line("SIP/2.0/UDP h;branch=z9hG4bKa , SIP/2.0/UDP"));
        m.via().unwrap();
        assert!(m.validate().is_err());
        let m = fresh(&line("SIP/2.0/UDP h;branch=z9hG4bKa\r\nVia: SIP/2.0"));
        m.via().unwrap();
        assert!(m.validate().is_err());
        let m = fresh(&line("SIP/2.0 h;branch=z9hG4bKa"));
        let first = m.via().unwrap_err();
        assert!(m.validate().is_err());
        assert_eq!(m.via().unwrap_err(), first);
    }

    /// `validate` checks the header block's UTF-8 once: a bad byte in an unknown header (not
    /// checked) still passes, one in a known header is the same `NotUtf8` error at the same
    /// offset as a check of that value alone gives, and a bad Call-ID or a CSeq of another
    /// method are refused as before.
    #[test]
    fn validate_reads_the_header_block_once() {
        let wire = |extra: &[u8], subject: &[u8]| {
            let mut w = b"OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nX-Odd: ".to_vec();
            w.extend_from_slice(extra);
            w.extend_from_slice(b"\r\nSubject: ");
            w.extend_from_slice(subject);
            w.extend_from_slice(
                b"\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            );
            Message::parse(Bytes::from(w)).unwrap()
        };
        assert!(wire(b"ok", b"hi").validate().is_ok());
        assert!(wire(b"\xff\xfe", b"hi").validate().is_ok());
        let m = wire(b"\xff", b"h\xc3");
        let e = m.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotUtf8);
        assert_eq!(Some(e), m.text(HeaderName::Subject).err());
        let bad_call_id = Message::parse(Bytes::from(
            "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: a b\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(bad_call_id.validate().unwrap_err(), bad_call_id.call_id().unwrap_err());
        let other = Message::parse(Bytes::from(
            "OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID: c\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(other.validate().unwrap_err().kind(), ErrorKind::CSeqMethodMismatch);
    }
}
