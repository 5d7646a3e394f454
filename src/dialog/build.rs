//! Messages a dialog writes: in-dialog requests (RFC 3261 §12.2.1.1), the ACK for a 2xx
//! (§13.2.2.4) and answers to the peer's requests (§12.1.1, §12.2.2).

use super::state::Dialog;
use super::{reason_phrase, DialogConfig};
use crate::message::{HeaderName, Message, MessageBuilder, Method, NameAddr, ValueOut};
use std::fmt;

/// The methods a dialog of ours handles (Allow, §20.5).
pub(crate) const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, SUBSCRIBE, NOTIFY, REFER";

/// Our Via value with a fresh branch (§8.1.1.7); `rport` asks for symmetric responses (RFC 3581).
pub(crate) struct OurVia<'a>(pub(crate) &'a DialogConfig, pub(crate) &'a str);

impl fmt::Display for OurVia<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {};branch={};rport", self.0.transport, self.0.sent_by, self.1)
    }
}

impl OurVia<'_> {
    /// Writes the value as `Display` does, without `core::fmt` (every request of ours has one).
    pub(crate) fn write(&self, v: &mut ValueOut<'_>) {
        v.str("SIP/2.0/").str(&self.0.transport).str(" ").str(&self.0.sent_by).str(";branch=").str(self.1).str(";rport");
    }
}

/// Whether a Route value names a loose router (`;lr`, §16.12). An unreadable value counts as loose:
/// then it is simply sent on as a Route header.
fn is_loose(route: &str) -> bool {
    NameAddr::parse_name_addr(route).map_or(true, |na| na.uri.as_sip().is_none_or(|u| u.is_loose_route()))
}

/// The URI inside a Route value.
fn route_uri(route: &str) -> &str {
    NameAddr::parse_name_addr(route).map_or(route, |na| na.uri_text)
}

// ===== impl Dialog =====

impl Dialog {
    /// Request-URI and Route values per §12.2.1.1. Loose routing (the first route has `lr`, or there
    /// is no route): Request-URI = remote target, Route = the route set. Strict routing: Request-URI
    /// = the first route's URI, Route = the rest of the route set, then the remote target.
    pub(crate) fn request_target(&self) -> (&str, Vec<String>) {
        match self.route_set.first() {
            Some(first) if !is_loose(first) => {
                let mut routes: Vec<String> = self.route_set[1..].iter().map(|r| r.to_string()).collect();
                routes.push(format!("<{}>", self.remote_target));
                (route_uri(first), routes)
            }
            _ => (&self.remote_target, self.route_set.iter().map(|r| r.to_string()).collect()),
        }
    }

    /// Starts an in-dialog request (§12.2.1.1): Request-URI and Route from the route set, From and
    /// To with both tags, the Call-ID, CSeq `seq method`, and Contact for target refresh requests
    /// (INVITE, UPDATE). The caller adds session-timer headers and the body. Max-Forwards is
    /// `max_forwards` (70 for a request of our own, §8.1.1.6).
    pub(crate) fn request(&self, method: Method, seq: u32, branch: &str, cfg: &DialogConfig, max_forwards: u32) -> MessageBuilder {
        let (ruri, routes) = self.request_target();
        let contact = matches!(method, Method::Invite | Method::Update);
        let mut b = Message::request(method.clone(), ruri);
        b.push_with(HeaderName::Via, |v| OurVia(cfg, branch).write(v));
        b.push_with(HeaderName::MaxForwards, |v| {
            v.num(max_forwards.into());
        });
        for r in &routes {
            b.push_with(HeaderName::Route, |v| {
                v.str(r);
            });
        }
        b.push_with(HeaderName::From, |v| {
            v.str(&self.local_uri).str(";tag=").str(&self.id.local_tag);
        });
        if self.id.remote_tag.is_empty() {
            b.push_with(HeaderName::To, |v| {
                v.str(&self.remote_uri);
            });
        } else {
            b.push_with(HeaderName::To, |v| {
                v.str(&self.remote_uri).str(";tag=").str(&self.id.remote_tag);
            });
        }
        b.push_with(HeaderName::CallId, |v| {
            v.str(&self.id.call_id);
        });
        b.push_with(HeaderName::CSeq, |v| {
            v.num(seq.into()).str(" ").str(method.as_str());
        });
        if contact {
            b.push_with(HeaderName::Contact, |v| {
                v.str("<").str(&cfg.contact).str(">");
            });
        }
        b
    }

    /// The ACK for a 2xx to INVITE number `seq` (§13.2.2.4): built like an in-dialog request, with
    /// the INVITE's CSeq number, method ACK, the same route set and a new branch.
    /// After a late offer the ACK carries our answer (RFC 3264 §4).
    pub(crate) fn ack(&self, seq: u32, branch: &str, cfg: &DialogConfig) -> Message {
        let b = self.request(Method::Ack, seq, branch, cfg, 70);
        match self.local_sdp.as_ref().filter(|_| self.late_offer == Some(super::state::LateOffer::Acked(seq))) {
            Some(sdp) => b.body("application/sdp", sdp),
            None => b.finish(),
        }
    }

    /// Starts our response to the peer's `req`, with our tag in To (§8.2.6.2). A 101-299 to an
    /// INVITE or UPDATE carries our Contact (§12.1.1, §13.3.1); a dialog-creating one also copies
    /// the request's Record-Route (§12.1.1).
    pub(crate) fn answer(&self, req: &Message, code: u16, cfg: &DialogConfig) -> MessageBuilder {
        let b = req.response_to(code, reason_phrase(code), Some(&self.id.local_tag));
        let method = req.method();
        if !(101..300).contains(&code) || !matches!(method, Some(Method::Invite | Method::Update)) {
            return b;
        }
        let creating = req.to_tag().is_ok_and(|t| t.is_none());
        let mut b = if creating { b.copy_headers(req, HeaderName::RecordRoute) } else { b };
        b.push(HeaderName::Contact, format_args!("<{}>", cfg.contact));
        if code >= 200 && method == Some(&Method::Invite) {
            b.push(HeaderName::Allow, ALLOW);
        }
        b
    }
}
