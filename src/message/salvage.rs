//! Answers to requests that fail to parse (RFC 3261 §8.2, §16.3, §21.4.1, §21.5.6).
//!
//! A request that does not parse still deserves an answer when its Via can be read: the UAS builds
//! a stateless `400` (or `505`) whose reason phrase names the bad part. This module reads the
//! datagram leniently, line by line, and copies Via, From, To, Call-ID and CSeq into that answer.

use super::{HeaderName, Message, ParseError, Via};

/// Builds the stateless answer to a request that failed with `err`, or `None` when the datagram is a
/// response (responses are dropped, §18.1.2) or no Via can be read (nowhere to send an answer).
pub fn error_response(datagram: &[u8], err: &ParseError) -> Option<Message> {
    let mut lines = datagram.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.by_ref().find(|l| !l.is_empty())?;
    if start.len() >= 4 && start[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    // An ACK is never answered (RFC 3261 §17.1.1.3, §17.2.3), however broken.
    if start.len() >= 4 && start[..4].eq_ignore_ascii_case(b"ACK ") {
        return None;
    }
    // Collect header lines, joining folds, up to the empty line.
    let mut headers: Vec<(HeaderName, Vec<u8>)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, v)) = headers.last_mut() {
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = HeaderName::from_bytes(line[..colon].trim_ascii());
        if matches!(name, HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq) {
            headers.push((name, line[colon + 1..].trim_ascii().to_vec()));
        }
    }
    let top_via = headers.iter().find(|(n, _)| *n == HeaderName::Via)?;
    let via_text = std::str::from_utf8(&top_via.1).ok()?;
    let first = via_text.split(',').next()?;
    Via::parse(first).ok()?;
    let mut b = Message::response(err.status_code(), &err.reason_phrase());
    for (name, value) in &headers {
        b.push_raw(*name, name.as_str(), value);
    }
    Some(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn bad_cseq_gets_400_naming_it() {
        let wire = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: nope INVITE\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse(Bytes::from_static(wire)).unwrap();
        let err = m.validate().unwrap_err();
        let r = error_response(wire, &err).unwrap();
        assert_eq!(r.status(), Some(400));
        assert_eq!(r.reason(), Some(&b"Bad CSeq Header"[..]));
        assert_eq!(r.via().unwrap().branch(), Some("z9hG4bKx"));
        assert_eq!(r.call_id().unwrap(), "x");
    }

    #[test]
    fn version_gets_505_and_responses_or_no_via_get_nothing() {
        let wire = b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/7.0/UDP h;branch=z9hG4bKy\r\nCall-ID: y\r\n\r\n";
        let err = Message::parse(Bytes::from_static(wire)).unwrap_err();
        assert_eq!(error_response(wire, &err).unwrap().status(), Some(505));
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKy\r\nCSeq: x\r\n\r\n";
        assert!(error_response(resp, &err).is_none());
        let no_via = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: y\r\n\r\n";
        assert!(error_response(no_via, &err).is_none());
        assert!(error_response(b"", &err).is_none());
    }
}
