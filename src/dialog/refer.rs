//! REFER (RFC 3515) inside an INVITE dialog, and the NOTIFYs of its implicit subscription.
//!
//! ```text
//!   referrer                                   referee
//!      │── REFER  Refer-To, Referred-By ─────────►│  202 Accepted (§2.4.2), Event::Refer
//!      │◄─ NOTIFY Event: refer, sipfrag 100 ──────│  200, Event::Notify (§2.4.4)
//!      │◄─ NOTIFY sipfrag 200, terminated ────────│  the referee's call to the target got its
//!      │                                          │  final answer: the subscription ends (§2.4.7)
//! ```
//!
//! The implicit subscription lives in the INVITE dialog (§2.4.4: NOTIFYs go in the dialog of the
//! REFER), so this layer keeps no state of its own for it: the application decides what to call
//! and what each NOTIFY says. A REFER without exactly one Refer-To gets 400 (§2.4.1); a NOTIFY for
//! another event package than `refer` gets 489 (RFC 6665 §4.1.3).

use super::set::Dialogs;
use super::state::{DialogState, Purpose};
use super::{DialogError, DialogId, Event};
use crate::message::{HeaderName, Message, Method};
use bytes::Bytes;
use std::time::Instant;

/// The status code of a `message/sipfrag` body (RFC 3420): `SIP/2.0 200 OK` gives 200.
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    let first = text.lines().next()?.trim();
    let rest = first.strip_prefix("SIP/2.0 ")?;
    rest.split_whitespace().next()?.parse().ok().filter(|c| (100..700).contains(c))
}

/// The URI a REFER asks the referee to call (its Refer-To, without URI headers); `Err` with the
/// status for the final NOTIFY when it cannot be called: no SIP URI (400, 416), or `?Replaces=`
/// (attended transfer, RFC 3891, not carried out here: 501).
pub fn refer_target(req: &Message) -> Result<String, (u16, &'static str)> {
    let raw = req.header(HeaderName::ReferTo).ok_or((400, "Bad Request"))?;
    let text = std::str::from_utf8(raw).map_err(|_| (400, "Bad Request"))?;
    let addr = crate::message::NameAddr::parse(text).map_err(|_| (400, "Bad Request"))?;
    let (uri, headers) = addr.uri_text.split_once('?').unwrap_or((addr.uri_text, ""));
    if headers.to_ascii_lowercase().contains("replaces=") {
        return Err((501, "Not Implemented"));
    }
    if !uri.to_ascii_lowercase().starts_with("sip:") {
        return Err((416, "Unsupported URI Scheme"));
    }
    Ok(uri.to_owned())
}

/// Whether a NOTIFY's Subscription-State says the subscription ended (RFC 6665 §8.2.3).
pub fn subscription_terminated(req: &Message) -> bool {
    req.other_header("Subscription-State")
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("terminated"))
}

impl Dialogs {
    /// A REFER or NOTIFY from the peer in dialog `slot` (answered here; the application hears of
    /// an accepted one as [`Event::Refer`] or [`Event::Notify`]).
    pub(crate) fn on_refer_or_notify(&mut self, slot: usize, req: &Message, id: DialogId) {
        let refer = req.method() == Some(&Method::Refer);
        let (d, _) = self.dm_cfg(slot);
        let tag = d.id.local_tag.clone();
        let (code, reason) = if refer {
            match req.headers().filter(|h| h.name == HeaderName::ReferTo).count() {
                1 => (202, "Accepted"),
                _ => (400, "Bad Request (one Refer-To expected)"),
            }
        } else {
            let event = req.header(HeaderName::Event).and_then(|v| std::str::from_utf8(v).ok()).unwrap_or("");
            match event.split(';').next().map(str::trim) {
                Some(e) if e.eq_ignore_ascii_case("refer") => (200, "OK"),
                _ => (489, "Bad Event"),
            }
        };
        let mut answer = req.response_to(code, reason, Some(&tag));
        if code == 489 {
            answer = answer.header(HeaderName::AllowEvents, "refer");
        }
        self.push_transmit(answer.finish());
        if code < 300 {
            let request = req.clone();
            self.push_event(if refer { Event::Refer { id, request } } else { Event::Notify { id, request } });
        }
    }

    /// Sends a REFER (RFC 3515 §2.4.1) asking the peer to call `refer_to` (a URI), naming us in
    /// `Referred-By` (RFC 3892) when given. Its answer reaches the application as a response seen
    /// (202 accepted; a failure means no transfer); progress comes as [`Event::Notify`].
    pub fn send_refer(&mut self, id: &DialogId, refer_to: &str, referred_by: Option<&str>, _now: Instant) -> Result<(), DialogError> {
        let slot = self.confirmed_slot(id)?;
        self.send_request(slot, Method::Refer, Purpose::Other, None, |b| {
            b.push(HeaderName::ReferTo, format_args!("<{refer_to}>"));
            if let Some(by) = referred_by {
                b.push(HeaderName::ReferredBy, format_args!("<{by}>"));
            }
        });
        Ok(())
    }

    /// Sends a NOTIFY of the implicit `refer` subscription (RFC 3515 §2.4.4) whose
    /// `message/sipfrag` body is the status line `SIP/2.0 CODE REASON` of the referee's call to the
    /// target; `final_answer` ends the subscription (`terminated;reason=noresource`, §2.4.7).
    pub fn send_refer_notify(
        &mut self,
        id: &DialogId,
        code: u16,
        reason: &str,
        final_answer: bool,
        _now: Instant,
    ) -> Result<(), DialogError> {
        let slot = self.confirmed_slot(id)?;
        let body = Bytes::from(format!("SIP/2.0 {code} {reason}\r\n"));
        let state = if final_answer { "terminated;reason=noresource" } else { "active;expires=60" };
        self.send_request(slot, Method::Notify, Purpose::Other, Some(("message/sipfrag;version=2.0", body)), |b| {
            b.push(HeaderName::Event, "refer");
            b.push_raw(HeaderName::Other, "Subscription-State", state.as_bytes());
        });
        Ok(())
    }

    fn confirmed_slot(&mut self, id: &DialogId) -> Result<usize, DialogError> {
        let slot = self.slot_of(id).ok_or(DialogError::UnknownDialog)?;
        if self.dm(slot).state != DialogState::Confirmed {
            return Err(DialogError::WrongState);
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n"), Some(486));
        for bad in [&b""[..], b"INVITE sip:x SIP/2.0", b"SIP/2.0 abc", b"SIP/2.0 99 x", b"\xff\xfe"] {
            assert_eq!(sipfrag_status(bad), None);
        }
    }
}
