//! Requests outside a dialog that a phone answers itself, and the MESSAGE client (sans-IO).
//!
//! ```text
//!   out-of-dialog request   answer
//!   ---------------------   -------------------------------------------------------------
//!   MESSAGE (RFC 3428)      200, and the text is handed to the application (§7)
//!   OPTIONS                 200 (RFC 3261 §11)
//!   SUBSCRIBE               489 Bad Event: no event package is served (RFC 6665 §4.2.1.2)
//!   UPDATE, INFO, NOTIFY,   481: they only exist inside a dialog (RFC 3311 §5.2,
//!   REFER, PRACK            RFC 6086 §4.2.2, RFC 6665 §4.1.3, RFC 3515 §2.4.2, RFC 3262 §4)
//!   anything else           405 with Allow
//! ```
//!
//! [`MessageSender`] sends one MESSAGE (RFC 3428 §4) and answers a 401/407 challenge once with
//! digest credentials (RFC 3261 §22.2), as [`super::register::Registration`] does for REGISTER.

use crate::auth::DigestClient;
use crate::endpoint::{Endpoint, Owner, ALLOW};
use crate::message::{HeaderName, Message, Method};
use crate::transaction::TransactionId;
use crate::transport::via_value;
use std::net::SocketAddr;
use std::time::Instant;

/// A MESSAGE that arrived (RFC 3428 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The sender: the From URI (or the whole From if it does not parse).
    pub from: String,
    /// `P-Asserted-Identity`, when a trusted service vouched for the sender (RFC 3325).
    pub asserted: Option<String>,
    /// Content-Type of the body (`text/plain` when absent).
    pub content_type: String,
    /// The body, as text (invalid UTF-8 replaced).
    pub text: String,
}

impl ReceivedMessage {
    /// Reads the sender and text of a MESSAGE.
    pub fn of(req: &Message) -> ReceivedMessage {
        let text_of = |h: Option<&[u8]>| h.map(|v| String::from_utf8_lossy(v).trim().to_owned());
        let from = req.from().ok().map(|f| f.uri_text.to_owned()).or_else(|| text_of(req.header(HeaderName::From))).unwrap_or_default();
        let asserted = text_of(req.other_header("P-Asserted-Identity").next());
        ReceivedMessage {
            from,
            asserted,
            content_type: text_of(req.header(HeaderName::ContentType)).unwrap_or_else(|| "text/plain".into()),
            text: String::from_utf8_lossy(req.body()).into_owned(),
        }
    }
}

/// The answer a phone gives an out-of-dialog request it does not start a call for (see the table
/// above), and the message it carried, if it was a MESSAGE.
pub fn answer_out_of_dialog(req: &Message, tag: &str) -> (Message, Option<ReceivedMessage>) {
    let answer = |code, reason| req.response_to(code, reason, Some(tag));
    match req.method() {
        Some(Method::Message) => (answer(200, "OK").finish(), Some(ReceivedMessage::of(req))),
        Some(Method::Options) => {
            (answer(200, "OK").header(HeaderName::Allow, ALLOW).header(HeaderName::Accept, "application/sdp").finish(), None)
        }
        Some(Method::Subscribe) => (answer(489, "Bad Event").header(HeaderName::AllowEvents, "refer").finish(), None),
        Some(m) if is_dialog_only(m) => (answer(481, "Call/Transaction Does Not Exist").finish(), None),
        _ => (answer(405, "Method Not Allowed").header(HeaderName::Allow, ALLOW).finish(), None),
    }
}

/// Methods that only exist inside a dialog: out of one they get 481, not 405.
pub fn is_dialog_only(m: &Method) -> bool {
    matches!(m, Method::Update | Method::Info | Method::Notify | Method::Refer | Method::Prack)
}

/// Settings of one MESSAGE.
#[derive(Debug, Clone)]
pub struct MessageConfig {
    /// Request-URI and To: the recipient.
    pub to: String,
    /// Our From URI.
    pub from: String,
    /// Where the request goes (the recipient, or an outbound proxy).
    pub dest: SocketAddr,
    /// Our SIP address (Via).
    pub local: SocketAddr,
    /// The body.
    pub text: String,
    /// Its Content-Type.
    pub content_type: String,
}

/// Where a sent MESSAGE is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageState {
    /// Not answered yet.
    Pending,
    /// A 2xx came (202 too: accepted for later delivery, RFC 3428 §7).
    Delivered(u16),
    /// A final failure, with its reason phrase (`timeout` when no answer came, §17.1.2.2).
    Failed(u16, String),
}

/// One MESSAGE on its way.
#[derive(Debug)]
pub struct MessageSender {
    config: MessageConfig,
    digest: Option<DigestClient>,
    call_id: String,
    tag: String,
    cseq: u32,
    challenged: u32,
    pending: Option<(TransactionId, Message)>,
    state: MessageState,
    ids: crate::dialog::IdGen,
}

impl MessageSender {
    /// A sender; `digest` answers challenges.
    pub fn new(config: MessageConfig, digest: Option<DigestClient>, seed: u64) -> MessageSender {
        let mut ids = crate::dialog::IdGen::new(seed);
        let host = config.local.ip().to_string();
        MessageSender {
            call_id: ids.call_id(&host),
            tag: ids.tag(),
            config,
            digest,
            cseq: 0,
            challenged: 0,
            pending: None,
            state: MessageState::Pending,
            ids,
        }
    }

    /// Where it is.
    pub fn state(&self) -> &MessageState {
        &self.state
    }

    /// Whether `tx` is our transaction.
    pub fn owns(&self, tx: TransactionId) -> bool {
        self.pending.as_ref().is_some_and(|(t, _)| *t == tx)
    }

    /// Sends the MESSAGE (again with credentials after a challenge, with the next CSeq, §22.2).
    pub fn send(&mut self, ep: &mut Endpoint, now: Instant) {
        self.cseq += 1;
        let token = format!("{:016x}", self.ids.next_u64());
        let c = &self.config;
        let mut b = Message::request(Method::Message, &c.to);
        b.push(HeaderName::Via, via_value(c.local, &format!("z9hG4bK{token}")));
        b.push(HeaderName::MaxForwards, 70);
        b.push(HeaderName::From, format_args!("<{}>;tag={}", c.from, self.tag));
        b.push(HeaderName::To, format_args!("<{}>", c.to));
        b.push(HeaderName::CallId, &self.call_id);
        b.push(HeaderName::CSeq, format_args!("{} MESSAGE", self.cseq));
        if let Some((name, value)) = self.digest.as_mut().and_then(|d| d.authorization("MESSAGE", &c.to, &token)) {
            b.push(name, value);
        }
        let req = b.body(&c.content_type, c.text.as_bytes());
        match ep.send_request(req.clone(), c.dest, Owner::Phone, now) {
            Ok(tx) => self.pending = Some((tx, req)),
            Err(e) => self.state = MessageState::Failed(500, format!("not sent: {e:?}")),
        }
    }

    /// A response to our MESSAGE.
    pub fn handle_response(&mut self, ep: &mut Endpoint, tx: TransactionId, resp: &Message, now: Instant) {
        let Some((_, req)) = self.pending.clone().filter(|(t, _)| *t == tx) else { return };
        let code = resp.status().unwrap_or(0);
        if code < 200 {
            return;
        }
        self.pending = None;
        let reason = String::from_utf8_lossy(resp.reason().unwrap_or(b"")).into_owned();
        self.state = match code {
            200..=299 => MessageState::Delivered(code),
            401 | 407 if self.challenged < 2 => match self.digest.as_mut().map(|d| d.handle_challenge(&req, resp)) {
                Some(Ok(())) => {
                    self.challenged += 1;
                    self.send(ep, now);
                    return;
                }
                Some(Err(e)) => MessageState::Failed(code, format!("{reason} (credentials refused: {e:?})")),
                None => MessageState::Failed(code, format!("{reason} (no --password-file to answer the challenge)")),
            },
            _ => MessageState::Failed(code, reason),
        };
    }

    /// Timer F fired for `tx` (§17.1.2.2): no answer.
    pub fn handle_timeout_of(&mut self, tx: TransactionId) {
        if self.owns(tx) {
            self.pending = None;
            self.state = MessageState::Failed(408, "timeout: no answer".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn request(method: &str, body: &str) -> Message {
        Message::parse(Bytes::from(format!(
            "{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: \"Alice\" <sip:alice@example.com>;tag=a\r\nTo: <sip:bob@example.com>\r\nCall-ID: m1\r\nCSeq: 1 {method}\r\nP-Asserted-Identity: <sip:alice@example.com>\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )))
        .unwrap()
    }

    #[test]
    fn out_of_dialog_requests_get_the_rfc_answers() {
        let (ok, msg) = answer_out_of_dialog(&request("MESSAGE", "hello bob"), "t");
        assert_eq!(ok.status(), Some(200));
        let msg = msg.expect("the message");
        assert_eq!((msg.from.as_str(), msg.text.as_str()), ("sip:alice@example.com", "hello bob"));
        assert_eq!(msg.asserted.as_deref(), Some("<sip:alice@example.com>"));
        let status = |m| answer_out_of_dialog(&request(m, ""), "t").0.status();
        assert_eq!(status("SUBSCRIBE"), Some(489));
        assert!(answer_out_of_dialog(&request("SUBSCRIBE", ""), "t").0.header(HeaderName::AllowEvents).is_some());
        for m in ["UPDATE", "INFO", "NOTIFY", "REFER"] {
            assert_eq!(status(m), Some(481), "{m}");
        }
        assert_eq!(status("OPTIONS"), Some(200));
        assert_eq!(status("PUBLISH"), Some(405));
    }
}
