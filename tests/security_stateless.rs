//! Stateless challenges (issue 14 point 3), on the sans-IO core: the real [`Service`] on an
//! [`Endpoint`], datagrams in memory, a virtual clock.
//!
//! Asserts: thousands of unauthenticated REGISTERs and INVITEs leave no transaction behind (the
//! endpoint's transaction count stays at 0 after each one, as with Kamailio's `sl_send_reply`);
//! a retransmitted request is simply challenged again; the ACK for a stateless 407 is absorbed
//! (nothing relayed, nothing answered); existing and unknown users get the same challenge and the
//! same 403; and a REGISTER with good credentials still gets 200. Also the per-source rate limit on
//! the bare endpoint: one source's flood is dropped unparsed and counted, another source passes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::{Application, Io, Media};
use switchboard::auth::{DigestClient, DigestServer, UserRecord};
use switchboard::call::{MediaConfig, MediaPrefs};
use switchboard::endpoint::{Endpoint, EndpointConfig, STATELESS_TAG};
use switchboard::message::{HeaderName, Message, Method};
use switchboard::proxy::{Proxy, ProxyConfig};
use switchboard::registrar::{Registrar, RegistrarConfig};
use switchboard::service::app::{Service, ServiceParts};
use switchboard::service::guard::GuardConfig;
use switchboard::service::routes::StaticRoutes;
use switchboard::transport::rate_limit::RateLimit;
use switchboard::ua::echo::{EchoConfig, EchoUas};
use switchboard::ua::media::CallMediaConfig;

const REALM: &str = "switchboard";
const WALL: Duration = Duration::from_secs(1_800_000_000);

struct Harness {
    ep: Endpoint,
    /// No media is ever bound here (nothing gets past the challenge but REGISTER).
    media: Media,
    svc: Service,
    now: Instant,
}

fn local() -> SocketAddr {
    "127.0.0.1:5060".parse().expect("address")
}

impl Harness {
    fn new() -> Harness {
        let local = local();
        let media = CallMediaConfig { ip: local.ip(), ports: 40000..=40100, prefs: MediaPrefs::default(), session: MediaConfig::default() };
        let echo = EchoUas::new(
            EchoConfig {
                local,
                answer_delay: Duration::ZERO,
                t1: Duration::from_millis(500),
                t2: Duration::from_secs(4),
                media,
                max_calls_per_source: 10,
                port_share: 25,
            },
            7,
        );
        let route_key = switchboard::proxy::token::RouteKey::derive(&[9; 32]);
        let parts = ServiceParts {
            local,
            echo,
            registrar: Registrar::new(RegistrarConfig::default()),
            auth: Some(DigestServer::new(REALM, [9; 32], Duration::from_secs(300))),
            users: vec![{
                let u = UserRecord::new("alice", REALM, "alice-secret");
                switchboard::store::UserRecord { name: u.name, realm: u.realm, ha1_md5: u.ha1_md5, ha1_sha256: u.ha1_sha256 }
            }],
            proxy: Proxy::new(ProxyConfig {
                local,
                branch_timeout: Duration::from_secs(10),
                ringing_timeout: Duration::from_secs(181),
                seed: 3,
                realm: Some(REALM.into()),
                route_key: route_key.clone(),
            }),
            store: None,
            b2bua: None,
            recovered: Vec::new(),
            routes: StaticRoutes::default(),
            guard: GuardConfig::default(),
            admission: switchboard::service::admit::Admission::new(local, route_key, Vec::new()),
        };
        let allow = format!("{}, REGISTER", switchboard::endpoint::ALLOW);
        Harness {
            ep: Endpoint::new(EndpointConfig { allow, ..EndpointConfig::default() }),
            media: Media::disabled(),
            svc: Service::new(parts),
            now: Instant::now(),
        }
    }

    /// Feeds one datagram from `src`, runs the service, returns what was sent.
    fn feed(&mut self, msg: &Message, src: SocketAddr) -> Vec<Message> {
        self.now += Duration::from_millis(1);
        self.ep.handle_datagram(src, msg.as_bytes().clone(), self.now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let mut progressed = false;
            while let Some(ev) = self.ep.poll_event() {
                let mut io = Io { endpoint: &mut self.ep, media: &mut self.media, wall_clock: WALL };
                self.svc.handle_event(&mut io, ev, self.now);
                progressed = true;
            }
            while let Some(t) = self.ep.poll_transmit() {
                out.push(Message::parse(t.payload).expect("we send what we parse"));
                progressed = true;
            }
            if !progressed {
                return out;
            }
        }
    }
}

fn phone(n: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 10], 5000 + n))
}

fn register(user: &str, branch: &str, cseq: u32, auth: Option<(HeaderName, String)>) -> Message {
    let mut b = Message::request(Method::Register, "sip:127.0.0.1:5060")
        .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.10:5000;branch=z9hG4bK{branch}"))
        .header(HeaderName::MaxForwards, "70")
        .header(HeaderName::From, format!("<sip:{user}@127.0.0.1>;tag=f{branch}"))
        .header(HeaderName::To, format!("<sip:{user}@127.0.0.1>"))
        .header(HeaderName::CallId, format!("reg-{user}@192.0.2.10"))
        .header(HeaderName::CSeq, format!("{cseq} REGISTER"))
        .header(HeaderName::Contact, format!("<sip:{user}@192.0.2.10:5000>"))
        .header(HeaderName::Expires, "600");
    if let Some((name, value)) = auth {
        b.push(name, value);
    }
    b.finish()
}

fn invite(branch: &str) -> Message {
    Message::request(Method::Invite, "sip:bob@127.0.0.1:5060")
        .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.10:5000;branch=z9hG4bK{branch}"))
        .header(HeaderName::MaxForwards, "70")
        .header(HeaderName::From, format!("<sip:mallory@127.0.0.1>;tag=f{branch}"))
        .header(HeaderName::To, "<sip:bob@127.0.0.1>")
        .header(HeaderName::CallId, format!("inv-{branch}@192.0.2.10"))
        .header(HeaderName::CSeq, "1 INVITE")
        .header(HeaderName::Contact, "<sip:mallory@192.0.2.10:5000>")
        .finish()
}

/// The ACK for a non-2xx answer to `invite` (§17.1.1.3): same branch, the answer's To.
fn ack_for(invite: &Message, answer: &Message) -> Message {
    let text = |m: &Message, name| String::from_utf8_lossy(m.header(name).expect("header")).into_owned();
    let (via, to) = (text(invite, HeaderName::Via), text(answer, HeaderName::To));
    Message::request(Method::Ack, "sip:bob@127.0.0.1:5060")
        .header(HeaderName::Via, via)
        .header(HeaderName::MaxForwards, "70")
        .header(HeaderName::From, text(invite, HeaderName::From))
        .header(HeaderName::To, to)
        .header(HeaderName::CallId, text(invite, HeaderName::CallId))
        .header(HeaderName::CSeq, "1 ACK")
        .finish()
}

/// Status and header names (in order) of a response, with challenge values reduced to their
/// parameter names: the shape a scanner could compare.
fn shape(m: &Message) -> (Option<u16>, Vec<String>) {
    let names = m
        .headers()
        .map(|h| {
            let name = String::from_utf8_lossy(h.raw_name).to_ascii_lowercase();
            let value = String::from_utf8_lossy(h.value);
            if matches!(h.name, HeaderName::WwwAuthenticate | HeaderName::ProxyAuthenticate) {
                let params: Vec<&str> = value.split(',').map(|p| p.split('=').next().unwrap_or("").trim()).collect();
                format!("{name}: {}", params.join(","))
            } else {
                name
            }
        })
        .collect();
    (m.status(), names)
}

#[test]
fn unauthenticated_requests_keep_no_transaction_and_credentials_still_register() {
    let mut h = Harness::new();
    for i in 0..5_000u32 {
        let req = if i % 2 == 0 {
            register(if i % 4 == 0 { "alice" } else { "nobody" }, &format!("r{i}"), 1, None)
        } else {
            invite(&format!("i{i}"))
        };
        let out = h.feed(&req, phone((i % 50) as u16));
        assert_eq!(out.len(), 1, "one answer to request {i}");
        assert!(matches!(out[0].status(), Some(401 | 407)), "request {i}: {:?}", out[0].status());
        assert_eq!(h.ep.transaction_count(), 0, "nothing kept after request {i}");
    }
    assert_eq!(h.ep.stats().stateless_answers, 5_000);
    assert_eq!(h.ep.poll_timeout(), None, "no timer armed for any of them");

    // A retransmission is a new request: challenged again, still nothing kept.
    let req = register("alice", "again", 1, None);
    let first = h.feed(&req, phone(1));
    let second = h.feed(&req, phone(1));
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_eq!((first[0].status(), second[0].status()), (Some(401), Some(401)));
    assert_eq!(h.ep.transaction_count(), 0);

    // The real user answers the challenge and registers.
    let mut client = DigestClient::new("alice", "alice-secret");
    client.handle_challenge(&req, &second[0]).expect("answerable challenge");
    let (name, value) = client.authorization("REGISTER", "sip:127.0.0.1:5060", "c1").expect("credentials");
    let out = h.feed(&register("alice", "auth", 2, Some((name, value))), phone(1));
    assert_eq!(out.iter().map(Message::status).collect::<Vec<_>>(), [Some(200)]);
}

#[test]
fn ack_for_a_stateless_407_is_absorbed() {
    let mut h = Harness::new();
    let inv = invite("x1");
    let out = h.feed(&inv, phone(2));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status(), Some(407));
    assert_eq!(out[0].to().ok().and_then(|t| t.tag().map(str::to_owned)).as_deref(), Some(STATELESS_TAG));
    let sent = h.feed(&ack_for(&inv, &out[0]), phone(2));
    assert!(sent.is_empty(), "the ACK is neither answered nor relayed: {sent:?}");
    assert_eq!(h.ep.stats().absorbed_acks, 1);
    assert_eq!(h.ep.transaction_count(), 0);
}

#[test]
fn existing_and_unknown_users_get_the_same_answers() {
    let mut h = Harness::new();
    let a = h.feed(&register("alice", "e1", 1, None), phone(3));
    let n = h.feed(&register("nobody", "e2", 1, None), phone(3));
    assert_eq!(shape(&a[0]), shape(&n[0]), "same challenge");
    // Wrong credentials: the same 403 for both.
    let mut answers = Vec::new();
    for (user, challenge) in [("alice", &a[0]), ("nobody", &n[0])] {
        let mut client = DigestClient::new(user, "guess");
        let req = register(user, &format!("w{user}"), 1, None);
        client.handle_challenge(&req, challenge).expect("answerable challenge");
        let creds = client.authorization("REGISTER", "sip:127.0.0.1:5060", "c2").expect("credentials");
        let out = h.feed(&register(user, &format!("w2{user}"), 2, Some(creds)), phone(3));
        assert_eq!(out.len(), 1);
        answers.push(shape(&out[0]));
    }
    assert_eq!(answers[0].0, Some(403));
    assert_eq!(answers[0], answers[1], "same refusal");
    assert_eq!(h.ep.transaction_count(), 0);
}

#[test]
fn rate_limit_drops_one_source_and_lets_another_through() {
    let limit = RateLimit::per_second(10).expect("a limit");
    let mut ep = Endpoint::new(EndpointConfig { rate_limit: Some(limit), ..EndpointConfig::default() });
    let now = Instant::now();
    let options = |i: u32| {
        Message::request(Method::Options, "sip:127.0.0.1:5060")
            .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.66:5000;branch=z9hG4bKo{i}"))
            .header(HeaderName::MaxForwards, "70")
            .header(HeaderName::From, format!("<sip:x@192.0.2.66>;tag=o{i}"))
            .header(HeaderName::To, "<sip:127.0.0.1>")
            .header(HeaderName::CallId, format!("o{i}@192.0.2.66"))
            .header(HeaderName::CSeq, "1 OPTIONS")
            .finish()
    };
    let flooder = SocketAddr::from(([192, 0, 2, 66], 5000));
    let mut passed = 0;
    for i in 0..1_000 {
        ep.handle_datagram(flooder, options(i).as_bytes().clone(), now);
        while let Some(ev) = ep.poll_event() {
            passed += u32::from(matches!(ev, switchboard::endpoint::EndpointEvent::Request { .. }));
        }
    }
    assert_eq!(passed, 20, "the burst (twice the rate) and nothing more at one instant");
    assert_eq!(ep.stats().rate_limited, 980);
    // Another source is not touched by the first one's flood.
    ep.handle_datagram(phone(9), options(5_000).as_bytes().clone(), now);
    assert!(matches!(ep.poll_event(), Some(switchboard::endpoint::EndpointEvent::Request { .. })));
    // A second later the flooder has ten more.
    let later = now + Duration::from_secs(1);
    let mut more = 0;
    for i in 0..100 {
        ep.handle_datagram(flooder, options(10_000 + i).as_bytes().clone(), later);
        while let Some(ev) = ep.poll_event() {
            more += u32::from(matches!(ev, switchboard::endpoint::EndpointEvent::Request { .. }));
        }
    }
    assert_eq!(more, 10);
}

/// Issue 16: the 200 to an authenticated REGISTER is answered again for a retransmission while
/// its transaction is in Completed (RFC 3261 §17.2.2), never refused as a replay of its nonce
/// count, though the transaction keeps no copy of the 200 (the registrar builds it again from the
/// request: same To tag, the AOR's bindings as they are now, §10.3 step 8). After Timer J the same
/// datagram is a new request, and its nonce count is then refused.
#[test]
fn a_retransmitted_register_gets_its_200_again_not_a_replay_refusal() {
    let mut h = Harness::new();
    let challenge = h.feed(&register("alice", "c", 1, None), phone(4));
    assert_eq!(challenge[0].status(), Some(401));
    let mut client = DigestClient::new("alice", "alice-secret");
    client.handle_challenge(&register("alice", "c", 1, None), &challenge[0]).expect("answerable challenge");
    let creds = client.authorization("REGISTER", "sip:127.0.0.1:5060", "c3").expect("credentials");
    let req = register("alice", "ok1", 2, Some(creds));
    let first = h.feed(&req, phone(4));
    assert_eq!(first.iter().map(Message::status).collect::<Vec<_>>(), [Some(200)]);
    assert_eq!(h.ep.transaction_count(), 1, "the REGISTER's transaction waits out Timer J");
    assert_eq!(h.ep.table_sizes().peers, 0, "in the compact form: nothing kept beside it");

    // Retransmitted: the same 200 (the wall clock has not moved, so even Date is the same).
    let again = h.feed(&req, phone(4));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].as_bytes(), first[0].as_bytes(), "the same 200, byte for byte");
    assert_eq!(h.ep.stats().retransmitted_requests, 1);

    // The attack: the captured REGISTER replayed from another address within Timer J gets
    // nothing (its top Via is stamped otherwise, so it is not the request answered); alice's own
    // retransmission beside it still gets her 200.
    let stranger = SocketAddr::from(([198, 51, 100, 7], 6000));
    assert!(h.feed(&req, stranger).is_empty(), "no 200 reflected to a replaying stranger");
    let still = h.feed(&req, phone(4));
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].as_bytes(), first[0].as_bytes(), "alice's retransmission still answered");

    // Timer J (64*T1 = 32 s): the transaction ends; the same datagram is then a new request, and
    // its nonce count was used.
    h.now += Duration::from_secs(33);
    h.ep.handle_timeout(h.now);
    assert!(h.drain().is_empty(), "Timer J sends nothing");
    assert_eq!(h.ep.transaction_count(), 0);
    let late = h.feed(&req, phone(4));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].status(), Some(401), "after Timer J: a replayed nonce count, challenged afresh");
}
