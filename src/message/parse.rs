//! Framing a datagram into a [`Message`]: start line (RFC 3261 §7.1, §7.2), header lines with
//! folding (§7.3.1), and the body framed by Content-Length (§7.5, §18.3).
//!
//! Only the start line and the framing are checked here; header values are parsed when a caller
//! asks for them (see the typed accessors on [`Message`]). A UDP datagram is always complete, so an
//! unfinished message is an error, never "need more bytes".

use super::error::{ErrorKind, ParseError};
use super::lex::is_token_char;
use super::method::Method;
use super::uri::Uri;
use super::{Header, HeaderName, Message, Span, StartLine};
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
    let (r, v) = sip_version(line).map_err(|_| ParseError::new(ErrorKind::Version, 0))?;
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
    let sp = memchr::memchr(b' ', r).ok_or(ParseError::new(ErrorKind::StartLine, uri_at))?;
    let uri = &r[..sp];
    let ver = &r[sp + 1..];
    let ver_at = uri_at + sp + 1;
    let v = all_consuming(sip_version)
        .parse(ver)
        .map(|(_, v)| v)
        .map_err(|_| ParseError::new(if ver.contains(&b' ') { ErrorKind::StartLine } else { ErrorKind::Version }, ver_at))?;
    // The Request-URI: any URI but without LWS, <>, or ?headers (RFC 4475 §3.1.2.7, §3.1.2.8, §3.1.2.11).
    let bad_uri = || ParseError::new(ErrorKind::RequestUri, uri_at);
    let uri_str = std::str::from_utf8(uri).map_err(|_| bad_uri())?;
    match Uri::parse(uri_str).map_err(|_| bad_uri())? {
        Uri::Sip(u) if u.headers.is_some() => return Err(bad_uri()),
        _ => {}
    }
    check_version(v, ver_at)?;
    // Token validity checked above, so the method is known or an extension.
    let method = Method::from_token(std::str::from_utf8(m).map_err(|_| ParseError::new(ErrorKind::Method, 0))?)
        .ok_or(ParseError::new(ErrorKind::Method, 0))?;
    Ok((method, Span::new(uri_at, uri_at + sp)))
}

fn line_end(buf: &[u8], from: usize) -> (usize, usize) {
    // Returns (end of line content, start of next line). Accepts CRLF and bare LF; a last line with no
    // terminator ends at the end of the buffer.
    match memchr::memchr(b'\n', &buf[from..]) {
        Some(p) => {
            let nl = from + p;
            let end = if nl > from && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
            (end, nl + 1)
        }
        None => (buf.len(), buf.len()),
    }
}

fn trim_end_ws(buf: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(buf[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    end
}

/// Parses one datagram. See [`Message::parse`].
pub(super) fn parse(mut buf: Bytes) -> Result<Message, ParseError> {
    let b: &[u8] = &buf;
    // §7.5: CRLFs before the start line are ignored.
    let mut pos = b.iter().position(|&c| c != b'\r' && c != b'\n').ok_or(ParseError::new(ErrorKind::Empty, 0))?;
    let (sl_end, mut next) = line_end(b, pos);
    let line = &b[pos..sl_end];
    let start = if line.starts_with(b"SIP/") || line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let (code, reason) = status_line(line).map_err(|e| shift(e, pos))?;
        StartLine::Response { code, reason: reason.shift(pos) }
    } else {
        let (method, uri) = request_line(line).map_err(|e| shift(e, pos))?;
        StartLine::Request { method, uri: uri.shift(pos) }
    };

    let mut headers: Vec<Header> = Vec::with_capacity(HEADER_CAPACITY);
    let mut content_length: Option<(u32, usize)> = None;
    let body_start;
    loop {
        pos = next;
        if pos >= b.len() {
            // Headers ran to the end of the datagram with no empty line (RFC 4475 baddn, RFC 5118
            // §4.10): accept it as a message without a body.
            body_start = b.len();
            break;
        }
        let (end, after) = line_end(b, pos);
        next = after;
        if end == pos {
            body_start = after;
            break;
        }
        let first = b[pos];
        if first == b' ' || first == b'\t' {
            // A fold: the line continues the previous header's value (§7.3.1).
            let last = headers.last_mut().ok_or(ParseError::new(ErrorKind::HeaderLine, pos))?;
            let new_end = trim_end_ws(b, pos, end);
            if new_end > pos {
                if last.value.start == last.value.end {
                    // Value was empty so far: it starts on this line.
                    let s = pos + b[pos..new_end].iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(0);
                    last.value = Span::new(s, new_end);
                } else {
                    last.value.end = new_end as u32;
                }
            }
            continue;
        }
        // `header-name HCOLON`: a token, optional WSP, then ':' (one pass, no search).
        let mut name_end = pos;
        while name_end < end && is_token_char(b[name_end]) {
            name_end += 1;
        }
        let mut colon = name_end;
        while colon < end && (b[colon] == b' ' || b[colon] == b'\t') {
            colon += 1;
        }
        if name_end == pos || colon >= end || b[colon] != b':' {
            return Err(ParseError::new(ErrorKind::HeaderLine, pos));
        }
        let name = HeaderName::from_bytes(&b[pos..name_end]);
        let mut vs = colon + 1;
        while vs < end && (b[vs] == b' ' || b[vs] == b'\t') {
            vs += 1;
        }
        let ve = trim_end_ws(b, vs, end);
        headers.push(Header { name, name_span: Span::new(pos, name_end), value: Span::new(vs, ve) });
    }
    // Content-Length may be folded, so read it once all lines are in.
    for h in headers.iter().filter(|h| h.name == HeaderName::ContentLength) {
        let v = h.value.of(b);
        let bad = || ParseError::in_header(ErrorKind::ContentLength, HeaderName::ContentLength, h.value.start as usize);
        let s = std::str::from_utf8(v).map_err(|_| bad())?;
        let n = super::lex::parse_u32(super::lex::trim(s)).ok_or_else(bad)?;
        match content_length {
            Some((m, _)) if m != n => {
                return Err(ParseError::in_header(ErrorKind::ConflictingContentLength, HeaderName::ContentLength, h.value.start as usize))
            }
            _ => content_length = Some((n, h.value.start as usize)),
        }
    }
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
    Ok(Message { buf, start, headers, body: Span::new(body_start, body_end), content_length: content_length.map(|c| c.0) })
}

fn shift(e: ParseError, by: usize) -> ParseError {
    ParseError::new(e.kind(), e.offset() + by)
}
