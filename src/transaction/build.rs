//! Requests the transaction layer writes itself: the ACK for a non-2xx final response
//! (RFC 3261 §17.1.1.3) and CANCEL (§9.1).
//!
//! Both are "hop" copies of the INVITE: same Request-URI, Call-ID, From and CSeq number, one Via equal
//! to the INVITE's top Via (same branch, so they land in the same server transaction, or next to it
//! for CANCEL), and the INVITE's Route set.

use super::Error;
use crate::message::{CSeq, ErrorKind, HeaderName, Message, Method, ParseError};

/// The raw value of a header that must be there.
fn required(msg: &Message, name: HeaderName) -> Result<&[u8], Error> {
    msg.header(name).ok_or(Error::Malformed(ParseError::in_header(ErrorKind::MissingHeader, name, 0)))
}

/// The shared shape of ACK and CANCEL; `to` is the To value to write.
fn hop_request(invite: &Message, method: Method, to: &[u8]) -> Result<Message, Error> {
    if invite.method() != Some(&Method::Invite) {
        return Err(Error::WrongMethod);
    }
    let uri = invite.request_uri_str().ok_or(Error::NotARequest)?;
    let via = invite.via()?;
    let seq = invite.cseq()?.seq;
    let call_id = invite.call_id()?;
    let from = required(invite, HeaderName::From)?;
    let mut b = Message::request(method.clone(), uri).header(HeaderName::Via, via);
    b.push(HeaderName::MaxForwards, 70);
    let mut b = b.copy_headers(invite, HeaderName::Route);
    b.push_raw(HeaderName::From, "From", from);
    b.push_raw(HeaderName::To, "To", to);
    b.push(HeaderName::CallId, call_id);
    b.push(HeaderName::CSeq, CSeq { seq, method });
    Ok(b.finish())
}

/// Builds the ACK for a 300-699 final `response` to `invite` (§17.1.1.3): the INVITE's
/// Request-URI, Call-ID, From, CSeq number and top Via only, To from the response (it carries the
/// UAS's tag), method ACK, and the INVITE's Route headers. The INVITE client transaction calls this
/// itself; it is public for proxies and tests.
///
/// The ACK for a 2xx is a new transaction built by the dialog layer (§13.2.2.4), so a 1xx/2xx here
/// is refused with [`Error::AckFor2xx`].
pub fn build_ack(invite: &Message, response: &Message) -> Result<Message, Error> {
    match response.status() {
        None => Err(Error::NotAResponse),
        Some(code) if code < 300 => Err(Error::AckFor2xx),
        Some(_) => hop_request(invite, Method::Ack, required(response, HeaderName::To)?),
    }
}

/// Builds a CANCEL for `invite` (§9.1): same Request-URI, Call-ID, To, From and CSeq number with
/// method CANCEL, a single Via equal to the INVITE's top Via (same branch), and the INVITE's Route
/// headers. Send it as an ordinary non-INVITE client transaction.
///
/// This does not check the state of the INVITE transaction; [`super::ClientInvite::cancel`] does
/// (§9.1: only after a provisional response and before a final one).
pub fn build_cancel(invite: &Message) -> Result<Message, Error> {
    hop_request(invite, Method::Cancel, required(invite, HeaderName::To)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8, SIP/2.0/UDP other;branch=z9hG4bKx\r\n\
        Via: SIP/2.0/UDP third;branch=z9hG4bKy\r\n\
        Max-Forwards: 69\r\nRoute: <sip:p1.example.com;lr>\r\nRoute: <sip:p2.example.com;lr>\r\n\
        To: Bob <sip:bob@biloxi.example.com>\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com>\r\n\
        Content-Length: 0\r\n\r\n";

    fn invite() -> Message {
        Message::parse(Bytes::from_static(INVITE.as_bytes())).expect("fixture parses")
    }

    #[test]
    fn cancel_copies_the_right_headers() {
        let inv = invite();
        let c = build_cancel(&inv).unwrap();
        assert_eq!(c.method(), Some(&Method::Cancel));
        assert_eq!(c.request_uri_str(), inv.request_uri_str());
        assert_eq!(c.vias().count(), 1);
        assert_eq!(c.via().unwrap(), inv.via().unwrap());
        assert_eq!(c.header_values(HeaderName::Route).collect::<Vec<_>>(), inv.header_values(HeaderName::Route).collect::<Vec<_>>());
        assert_eq!(c.header(HeaderName::To), inv.header(HeaderName::To));
        assert_eq!(c.header(HeaderName::From), inv.header(HeaderName::From));
        assert_eq!(c.call_id().unwrap(), "a84b4c76e66710");
        assert_eq!(c.cseq().unwrap(), CSeq { seq: 314159, method: Method::Cancel });
        assert!(c.header(HeaderName::Contact).is_none());
        c.validate().unwrap();
    }

    #[test]
    fn ack_takes_to_from_the_response_and_refuses_2xx() {
        let inv = invite();
        let resp = inv.response_to(486, "Busy Here", Some("8321234356")).finish();
        let ack = build_ack(&inv, &resp).unwrap();
        assert_eq!(ack.to().unwrap().tag(), Some("8321234356"));
        assert_eq!(ack.cseq().unwrap(), CSeq { seq: 314159, method: Method::Ack });
        assert_eq!(ack.vias().count(), 1);
        let ok = inv.response_to(200, "OK", Some("x")).finish();
        assert_eq!(build_ack(&inv, &ok), Err(Error::AckFor2xx));
        assert_eq!(build_ack(&inv, &inv), Err(Error::NotAResponse));
    }
}
