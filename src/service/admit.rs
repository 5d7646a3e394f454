//! Admission: who owns an incoming request, or what the service answers it, decided in one place.
//! Every trust rule of the service lives here (RFC 3261 §12.2.2, §16.3, §16.4, §16.11;
//! RFC 3325 for trusted peers); the owners ([`super::app::Service`]'s registrar, echo, B2BUA and
//! proxy) do what they are handed and never decide whether to trust the sender.
//!
//! ```text
//!   request ─┬─ our Via in it already (a loop, §16.3) ─────────────────► 482
//!            ├─ REGISTER ───────────────────────────────────────────► Register
//!            ├─ in a dialog of echo (Call-ID) ─────────────────────────► Echo
//!            ├─ in a B2BUA leg (Call-ID) ─┬─ from the leg's phone, or trusted ► B2bua
//!            │                            └─ from another address ─────► Challenge (point 7)
//!            ├─ To tag ─┬─ top Route us, token valid ─┬─ next hop us ─► 482 (never sent to ourselves)
//!            │          │   (we record-routed it)     └─────────────────► Forward { next }
//!            │          ├─ top Route us, no valid token ───────────────► 403
//!            │          └─ anything else ──────────────────────────────► 481
//!            ├─ to echo ───────────────────────────────────────────────► Echo
//!            └─ new ─── trusted peer, or OPTIONS to the service ───────► New { authenticate: false }
//!                       otherwise (INVITE, OPTIONS, INFO, UPDATE, ...) ─► New { authenticate: true }
//!
//!   ACK (no transaction) ─┬─ in a dialog of echo / a B2BUA leg ────────► Echo / B2bua
//!                         │   (a leg's, from another address: only for our 2xx awaiting it)
//!                         ├─ top Route us, token valid, next hop not us ► Relay { next }
//!                         └─ anything else ────────────────────────────► Drop (counted)
//!   response (no transaction) ── not echo's or a B2BUA leg's ──────────► Drop (counted), never
//!                                                                          relayed by its Via
//! ```
//!
//! A CANCEL never gets here: the endpoint matches it to a live server transaction or answers 481
//! (§9.2).
//!
//! The verdict names the owner of the request's transaction ([`Admit::owner`]: Register is the
//! registrar's, Echo the echo user's, B2bua the B2BUA's, Forward the proxy's), which the service
//! records on the endpoint at once; for New, the routing that follows names it (the B2BUA or the
//! proxy). The endpoint then hands a CANCEL, a timeout or the end of the transaction to that owner
//! alone.

use crate::endpoint::Owner;
use crate::message::{Message, Method, SipUri, Uri};
use crate::proxy::forward::is_us;
use crate::proxy::token::{RouteKey, PARAM};
use std::net::{IpAddr, SocketAddr};

/// What the owners already know about a message (each answers by its own tables).
#[derive(Debug, Clone, Copy, Default)]
pub struct Known {
    /// It belongs to a dialog of the echo user.
    pub echo: bool,
    /// It belongs to a leg of a B2BUA call (by Call-ID).
    pub b2bua: bool,
    /// The address of that leg's phone, while the call is live.
    pub peer: Option<SocketAddr>,
    /// An ACK that our 2xx in its B2BUA dialog waits for.
    pub awaited_ack: bool,
}

/// Who gets a request, or the answer it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// The registrar (it authenticates REGISTER itself).
    Register,
    /// The echo user.
    Echo,
    /// The B2BUA (a request in one of its dialogs).
    B2bua,
    /// A request in a B2BUA dialog from another address than the leg's phone (issue 14 point 7):
    /// challenge it (407, RFC 3261 §22.1), and only if it authenticates as the leg's user move the
    /// leg there and hand it to the B2BUA (a phone that changed network); else refuse it.
    Challenge,
    /// An in-dialog request along our Record-Route: forward it to `next`, the URI of the next hop
    /// (the next Route, else the Request-URI).
    Forward {
        /// URI of the next hop.
        next: String,
    },
    /// A new (out-of-dialog) request for the service's routing; `authenticate` says whether the
    /// caller must prove who it is first (RFC 3261 §22.3).
    New {
        /// Challenge unless credentials check.
        authenticate: bool,
    },
    /// Answer with this status.
    Reject(u16, &'static str),
}

impl Admit {
    /// The owner this verdict hands the request's transaction to; `None` for a new request, whose
    /// owner its routing names (the B2BUA or the proxy for a user, echo for an OPTIONS to the
    /// service), and for a refusal, which the service answers itself.
    pub fn owner(&self) -> Option<Owner> {
        match self {
            Admit::Register => Some(Owner::Registrar),
            Admit::Echo => Some(Owner::Echo),
            Admit::B2bua => Some(Owner::B2bua),
            Admit::Forward { .. } => Some(Owner::Proxy { upstream: None }),
            // A challenge becomes the B2BUA's only once the sender proves it is the leg's user.
            Admit::Challenge | Admit::New { .. } | Admit::Reject(..) => None,
        }
    }
}

/// What becomes of an ACK that no transaction took (an ACK for a 2xx, §13.2.2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitAck {
    /// The echo user's dialog.
    Echo,
    /// A B2BUA leg's dialog.
    B2bua,
    /// Along our Record-Route to `next` (§16.11).
    Relay {
        /// URI of the next hop.
        next: String,
    },
    /// Not ours to pass on.
    Drop(&'static str),
}

/// Counters of what admission refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmitStats {
    /// In-dialog requests with a forged or missing Record-Route token (403).
    pub bad_route_token: u64,
    /// Requests whose next hop was the service itself (482).
    pub self_loops: u64,
    /// In-dialog requests for no dialog of ours (481).
    pub unknown_dialog: u64,
    /// ACKs not relayed (no dialog, no valid token, or a next hop that is us).
    pub acks_dropped: u64,
    /// Responses that matched no transaction and no dialog, dropped instead of relayed by Via.
    pub strays_dropped: u64,
    /// In-dialog requests of a B2BUA leg from another address than its phone, challenged.
    pub foreign_in_dialog: u64,
}

/// An IPv4 or IPv6 network `ADDR/BITS` (a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("trusted peer must be IP or IP/BITS, got {s:?}");
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip.trim(), Some(bits.trim())),
            None => (s.trim(), None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, bits })
    }
}

impl Cidr {
    /// Whether `ip` is inside this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// The admission rules of one service instance.
#[derive(Debug, Clone)]
pub struct Admission {
    local: SocketAddr,
    key: RouteKey,
    trusted: Vec<Cidr>,
    stats: AdmitStats,
    /// The other instances of the cluster: a Route naming one, with a token of the cluster's key,
    /// is ours too (issue 17 point 4, `--mode proxy` adoption; see [`Admission::add_peers`]).
    peers: Vec<SocketAddr>,
}

// ===== impl Admission =====

impl Admission {
    /// Rules for the service at `local`, checking Record-Route tokens with `key` and skipping
    /// authentication for sources in `trusted` (gateways and static-route targets).
    pub fn new(local: SocketAddr, key: RouteKey, trusted: Vec<Cidr>) -> Admission {
        Admission { local, key, trusted, stats: AdmitStats::default(), peers: Vec::new() }
    }

    /// Adds cluster members whose Record-Route (with a valid token: all instances share the key)
    /// this instance accepts as its own, so it serves the in-dialog requests of a dead member's
    /// proxied calls that the dispatcher now sends here.
    pub fn add_peers(&mut self, peers: &[SocketAddr]) {
        for p in peers {
            if !self.peers.contains(p) && *p != self.local {
                self.peers.push(*p);
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> AdmitStats {
        self.stats
    }

    /// Whether requests from `source` come from a configured trusted peer.
    pub fn is_trusted(&self, source: SocketAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(source.ip()))
    }

    /// The `P-Asserted-Identity` a trusted peer (a gateway inside the trust domain, RFC 3325 §2.3)
    /// put on its new request, for the callee leg to carry on (RFC 3325 §5, §9.1); `None` for any
    /// other source (their PAI is not believed: the B2BUA's legs are built afresh and carry only
    /// the identity the service asserts itself), or when the header is not one readable
    /// name-addr.
    pub fn trusted_identity(&self, req: &Message, source: SocketAddr) -> Option<String> {
        if !self.is_trusted(source) {
            return None;
        }
        let mut values = req.other_header("P-Asserted-Identity");
        let value = std::str::from_utf8(values.next()?).ok()?.trim();
        let readable = crate::message::NameAddr::parse(value).is_ok_and(|na| na.tag().is_none());
        readable.then(|| value.to_owned())
    }

    /// Decides who owns `req` (received from `source`), or the answer it gets.
    pub fn admit(&mut self, req: &Message, source: SocketAddr, known: Known) -> Admit {
        let method = req.method();
        // Parsed only when the rules above it have not decided (a To tag means an in-dialog request);
        // the tag is kept for the token check.
        let to_tag = std::cell::Cell::new(None);
        let in_dialog = || {
            to_tag.set(req.to_tag().ok().flatten());
            to_tag.get().is_some()
        };
        let verdict = match method {
            // §16.3 step 4, for every method and mode (issue 14 point 9): a request that already
            // carries our Via went through us before; a loop, answered before it creates any state.
            _ if crate::proxy::is_loop(req, self.local) => {
                self.stats.self_loops += 1;
                Admit::Reject(482, "Loop Detected")
            }
            Some(Method::Register) => Admit::Register,
            _ if known.echo => Admit::Echo,
            _ if known.b2bua => self.b2bua_leg(source, known),
            _ if in_dialog() => self.in_dialog(req, to_tag.get()),
            _ if is_echo(req) => Admit::Echo,
            _ => {
                // An OPTIONS with no user part is for the service itself (a keep-alive or capability
                // query, §11.2). One naming a user is challenged whether or not the user exists, so
                // the answer tells a prober nothing about who is configured or registered.
                let to_service = method == Some(&Method::Options) && !names_a_user(req);
                Admit::New { authenticate: !to_service && !self.is_trusted(source) }
            }
        };
        if let Admit::Reject(code, _) = verdict {
            tracing::debug!(peer = %source, code, method = ?method, "request refused by admission");
        }
        verdict
    }

    /// Issue 14 point 7: a request in a B2BUA leg from another address than the leg's phone (or a
    /// trusted peer) may be a phone that changed network or a stranger's hijack; it is challenged
    /// (§22.1 allows it for every method but ACK and CANCEL) before it can end or move the call.
    fn b2bua_leg(&mut self, source: SocketAddr, known: Known) -> Admit {
        match known.peer {
            Some(peer) if peer != source && !self.is_trusted(source) => {
                self.stats.foreign_in_dialog += 1;
                Admit::Challenge
            }
            _ => Admit::B2bua,
        }
    }

    /// §16.4 and §12.2.2: an in-dialog request for no dialog of ours travels on only along a
    /// Record-Route we inserted, proven by its token, and never to ourselves.
    fn in_dialog(&mut self, req: &Message, to_tag: Option<&str>) -> Admit {
        match self.record_routed(req, to_tag) {
            Routed::NotUs => {
                self.stats.unknown_dialog += 1;
                Admit::Reject(481, "Call/Transaction Does Not Exist")
            }
            Routed::BadToken => {
                self.stats.bad_route_token += 1;
                Admit::Reject(403, "Forbidden")
            }
            Routed::Loop => {
                self.stats.self_loops += 1;
                Admit::Reject(482, "Loop Detected")
            }
            Routed::Next(next) => Admit::Forward { next },
        }
    }

    /// An ACK no transaction took (for a 2xx): its dialog's, or relayed along our Record-Route.
    pub fn admit_ack(&mut self, ack: &Message, source: SocketAddr, known: Known) -> AdmitAck {
        let verdict = if crate::proxy::is_loop(ack, self.local) {
            AdmitAck::Drop("carries our Via: a loop")
        } else if known.echo {
            AdmitAck::Echo
        } else if known.b2bua {
            // An ACK cannot be challenged (§22.1): from another address than the leg's phone it
            // passes only when it is the one our 2xx waits for (issue 14 point 7).
            match known.peer {
                Some(peer) if peer != source && !known.awaited_ack && !self.is_trusted(source) => {
                    AdmitAck::Drop("from another address than the leg's phone, for no 2xx of ours")
                }
                _ => AdmitAck::B2bua,
            }
        } else {
            match self.record_routed(ack, None) {
                Routed::Next(next) => AdmitAck::Relay { next },
                Routed::NotUs => AdmitAck::Drop("no dialog of ours"),
                Routed::BadToken => AdmitAck::Drop("no valid Record-Route token"),
                Routed::Loop => AdmitAck::Drop("next hop is the service itself"),
            }
        };
        if let AdmitAck::Drop(why) = verdict {
            self.stats.acks_dropped += 1;
            tracing::debug!(peer = %source, why, "ACK dropped");
        }
        verdict
    }

    /// Counts a response that matched no transaction and no dialog: it is dropped, never relayed
    /// by its Via (with the INVITE client transaction's Accepted state, every legitimate 2xx
    /// reaches its transaction, RFC 6026 §7.2).
    pub fn stray_response(&mut self, response: &Message, source: SocketAddr) {
        self.stats.strays_dropped += 1;
        tracing::debug!(peer = %source, status = ?response.status(), "stray response dropped");
    }

    /// `to_tag`: the request's To tag when the caller has parsed it already.
    fn record_routed(&self, req: &Message, to_tag: Option<&str>) -> Routed {
        // Parsed once, lazily: the top Route names us and carries the token, the next one (if
        // any) is the next hop.
        let mut routes = req.routes().filter_map(Result::ok);
        let Some(top) = routes.next() else { return Routed::NotUs };
        let Uri::Sip(uri) = &top.uri else { return Routed::NotUs };
        let names = |a: &SocketAddr| uri.host.ip() == Some(a.ip()) && uri.port.unwrap_or(crate::transport::DEFAULT_PORT) == a.port();
        if !names(&self.local) && !self.peers.iter().any(names) {
            return Routed::NotUs;
        }
        if !self.token_valid(req, uri, to_tag) {
            return Routed::BadToken;
        }
        let next = routes.next().map(|r| r.uri_text).or_else(|| req.request_uri_str()).unwrap_or_default();
        if is_us(next, self.local) {
            return Routed::Loop;
        }
        Routed::Next(next.to_owned())
    }

    fn token_valid(&self, req: &Message, route: &SipUri<'_>, to_tag: Option<&str>) -> bool {
        let Some(token) = route.params.value(PARAM) else { return false };
        let Ok(call_id) = req.call_id() else { return false };
        let from = req.from_tag().ok().flatten().unwrap_or_default();
        let to = to_tag.or_else(|| req.to_tag().ok().flatten()).unwrap_or_default();
        self.key.verify(call_id, &[from, to], token)
    }

    /// Whether `dest` is the service itself (a next hop that would loop, §16.3 step 4).
    pub fn is_local(&self, dest: SocketAddr) -> bool {
        dest == self.local
    }
}

enum Routed {
    NotUs,
    BadToken,
    Loop,
    Next(String),
}

/// Whether the Request-URI names the public `echo` user.
pub fn is_echo(req: &Message) -> bool {
    matches!(req.request_uri(), Some(Uri::Sip(u)) if u.user == Some("echo"))
}

/// Whether the From user of `req` is `user` (the identity an authenticated caller may use).
pub fn from_is(req: &Message, user: &str) -> bool {
    req.from().ok().is_some_and(|f| matches!(f.uri, Uri::Sip(u) if u.user == Some(user)))
}

/// Whether the Request-URI has a user part (`sip:bob@host`, not `sip:host`).
fn names_a_user(req: &Message) -> bool {
    matches!(req.request_uri(), Some(Uri::Sip(u)) if u.user.is_some_and(|u| !u.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const LOCAL: &str = "127.0.0.1:5060";

    fn admission() -> Admission {
        Admission::new(LOCAL.parse().unwrap(), RouteKey::derive(&[1u8; 32]), vec!["192.0.2.0/24".parse().unwrap()])
    }

    /// A request with `to_tag` (in-dialog when set) and `routes`, Call-ID c1, From tag ft.
    fn request(method: &str, uri: &str, to_tag: Option<&str>, routes: &[&str]) -> Message {
        let mut m = format!("{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\n");
        for r in routes {
            m.push_str(&format!("Route: <{r}>\r\n"));
        }
        let to = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        m.push_str(&format!(
            "From: <sip:alice@example.com>;tag=ft\r\nTo: <sip:bob@example.com>{to}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        ));
        Message::parse(Bytes::from(m)).unwrap()
    }

    #[test]
    fn in_dialog_requests_travel_only_along_our_tokened_record_route() {
        let mut a = admission();
        let stranger: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        let token = RouteKey::derive(&[1u8; 32]).mint("c1", "ft");
        let ours = format!("sip:{LOCAL};lr;sbt={token}");
        let gw = "sip:+1555@203.0.113.9:5060";
        let known = Known::default();
        let verdict = |a: &mut Admission, routes: &[&str], to_tag| a.admit(&request("INVITE", gw, to_tag, routes), stranger, known);
        assert_eq!(verdict(&mut a, &[&ours], Some("tt")), Admit::Forward { next: gw.into() });
        // The callee's requests carry the caller's tag in To: the same token checks.
        let from_callee = Message::parse(Bytes::from(
            String::from_utf8_lossy(request("BYE", gw, Some("ft"), &[&ours]).as_bytes()).replace("tag=ft\r\nTo", "tag=tt\r\nTo"),
        ))
        .unwrap();
        assert_eq!(a.admit(&from_callee, stranger, known), Admit::Forward { next: gw.into() });
        assert_eq!(verdict(&mut a, &[&format!("sip:{LOCAL};lr")], Some("tt")), Admit::Reject(403, "Forbidden"));
        let other_dialog = format!("sip:{LOCAL};lr;sbt={}", RouteKey::derive(&[1u8; 32]).mint("c2", "ft"));
        assert_eq!(verdict(&mut a, &[&other_dialog], Some("tt")), Admit::Reject(403, "Forbidden"));
        assert_eq!(verdict(&mut a, &[], Some("tt")), Admit::Reject(481, "Call/Transaction Does Not Exist"));
        assert_eq!(verdict(&mut a, &["sip:203.0.113.1;lr"], Some("tt")), Admit::Reject(481, "Call/Transaction Does Not Exist"));
        let us = format!("sip:{LOCAL};lr");
        assert_eq!(verdict(&mut a, &[&ours, &us, &us], Some("tt")), Admit::Reject(482, "Loop Detected"));
        // A dialog an owner knows is that owner's, whatever the routes say.
        let b2bua = Known { b2bua: true, ..Known::default() };
        assert_eq!(a.admit(&request("BYE", gw, Some("tt"), &[]), stranger, b2bua), Admit::B2bua);
        let s = a.stats();
        assert_eq!((s.bad_route_token, s.unknown_dialog, s.self_loops), (2, 2, 1));
    }

    #[test]
    fn a_cluster_peers_tokened_route_is_ours_once_it_is_a_known_member() {
        // Issue 17 point 4, proxy mode: instance 127.0.0.2:5060 died; the dispatcher sends its
        // dialog's BYE here. Its Record-Route token was minted with the cluster's shared key.
        let mut a = admission();
        let peer = "127.0.0.2:5060";
        let token = RouteKey::derive(&[1u8; 32]).mint("c1", "ft");
        let theirs = format!("sip:{peer};lr;sbt={token}");
        let phone = "sip:bob@198.51.100.8:5062";
        let source: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        let bye = request("BYE", phone, Some("tt"), &[&theirs]);
        assert_eq!(a.admit(&bye, source, Known::default()), Admit::Reject(481, "Call/Transaction Does Not Exist"));
        a.add_peers(&[peer.parse().unwrap(), LOCAL.parse().unwrap()]);
        assert_eq!(a.admit(&bye, source, Known::default()), Admit::Forward { next: phone.into() });
        // The token still has to be the cluster's, for this dialog.
        let forged = request("BYE", phone, Some("tt"), &[&format!("sip:{peer};lr;sbt=AAAA")]);
        assert_eq!(a.admit(&forged, source, Known::default()), Admit::Reject(403, "Forbidden"));
    }

    #[test]
    fn new_requests_are_authenticated_unless_trusted_echo_or_options_to_us() {
        let mut a = admission();
        let stranger: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        let gateway: SocketAddr = "192.0.2.10:5060".parse().unwrap();
        let known = Known::default();
        for method in ["INVITE", "OPTIONS", "INFO", "UPDATE", "MESSAGE", "SUBSCRIBE", "REFER"] {
            let for_bob = known;
            let req = request(method, "sip:bob@example.com", None, &[]);
            assert_eq!(a.admit(&req, stranger, for_bob), Admit::New { authenticate: true }, "{method}");
            assert_eq!(a.admit(&req, gateway, for_bob), Admit::New { authenticate: false }, "{method} from a trusted peer");
        }
        assert_eq!(a.admit(&request("OPTIONS", "sip:example.com", None, &[]), stranger, known), Admit::New { authenticate: false });
        assert_eq!(a.admit(&request("INVITE", "sip:echo@example.com", None, &[]), stranger, known), Admit::Echo);
        assert_eq!(a.admit(&request("REGISTER", "sip:example.com", None, &[]), stranger, known), Admit::Register);
    }

    #[test]
    fn acks_are_relayed_only_along_our_tokened_route() {
        let mut a = admission();
        let peer: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        let token = RouteKey::derive(&[1u8; 32]).mint("c1", "ft");
        let ours = format!("sip:{LOCAL};lr;sbt={token}");
        let bob = "sip:bob@198.51.100.8:5062";
        let known = Known::default();
        assert_eq!(a.admit_ack(&request("ACK", bob, Some("tt"), &[&ours]), peer, known), AdmitAck::Relay { next: bob.into() });
        assert!(matches!(a.admit_ack(&request("ACK", bob, Some("tt"), &[&format!("sip:{LOCAL};lr")]), peer, known), AdmitAck::Drop(_)));
        assert!(matches!(a.admit_ack(&request("ACK", bob, Some("tt"), &[]), peer, known), AdmitAck::Drop(_)));
        assert!(matches!(a.admit_ack(&request("ACK", &format!("sip:{LOCAL}"), Some("tt"), &[&ours]), peer, known), AdmitAck::Drop(_)));
        let echo = Known { echo: true, ..known };
        assert_eq!(a.admit_ack(&request("ACK", bob, Some("tt"), &[]), peer, echo), AdmitAck::Echo);
        assert_eq!(a.stats().acks_dropped, 3);
    }

    #[test]
    fn a_b2bua_legs_requests_from_another_address_are_challenged_and_its_acks_dropped() {
        let mut a = admission();
        let phone: SocketAddr = "198.51.100.7:5060".parse().unwrap();
        let moved: SocketAddr = "198.51.100.7:5062".parse().unwrap();
        let gateway: SocketAddr = "192.0.2.10:5060".parse().unwrap();
        let leg = Known { b2bua: true, peer: Some(phone), ..Known::default() };
        for method in ["INVITE", "BYE", "UPDATE", "REFER", "INFO"] {
            let req = request(method, "sip:sb@127.0.0.1:5060", Some("tt"), &[]);
            assert_eq!(a.admit(&req, phone, leg), Admit::B2bua, "{method} from the leg's phone");
            assert_eq!(a.admit(&req, moved, leg), Admit::Challenge, "{method} from another port");
            assert_eq!(a.admit(&req, gateway, leg), Admit::B2bua, "{method} from a trusted peer");
            // A call that is over has no peer: its dialogs answer (481) as before.
            assert_eq!(a.admit(&req, moved, Known { peer: None, ..leg }), Admit::B2bua, "{method} after the call");
        }
        assert_eq!(a.stats().foreign_in_dialog, 5);
        let ack = request("ACK", "sip:sb@127.0.0.1:5060", Some("tt"), &[]);
        assert_eq!(a.admit_ack(&ack, phone, leg), AdmitAck::B2bua);
        assert!(matches!(a.admit_ack(&ack, moved, leg), AdmitAck::Drop(_)), "an ACK cannot be challenged");
        assert_eq!(a.admit_ack(&ack, moved, Known { awaited_ack: true, ..leg }), AdmitAck::B2bua, "the ACK our 2xx waits for");
        assert_eq!(a.stats().acks_dropped, 1);
    }

    #[test]
    fn cidr_matching() {
        let net: Cidr = "127.0.0.0/8".parse().unwrap();
        assert!(net.contains("127.0.0.3".parse().unwrap()));
        assert!(net.contains("::ffff:127.0.0.9".parse().unwrap()));
        assert!(!net.contains("10.0.0.1".parse().unwrap()));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert!(host.contains("192.0.2.7".parse().unwrap()) && !host.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::/33".parse().unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()) && !v6.contains("2001:db8:8000::1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("203.0.113.1".parse().unwrap()));
        for bad in ["127.0.0.1/33", "host/8", "1.2.3.4/", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
