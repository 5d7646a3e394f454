//! Issue 13, "nothing per call outlives the call": the real sans-IO [`Service`] (echo user, B2BUA,
//! proxy) and two phones built from the crate's own layers (Endpoint + UaCore + Dialogs) exchange
//! datagrams in memory on a virtual clock, so Timers J/K/D, the 64*T1 dialog purge and the
//! B2BUA's Call-ID linger run in no time. Calls are answered, refused, cancelled and timed out
//! (a peer that goes silent); then the clock runs past every timer and every table of the service
//! (endpoint, UA cores and dialogs, B2BUA, relay, proxy, echo user) and of the phones must be back
//! to the size it had before the first call, and every media port closed. Sizes, not RSS.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::application::{Application, Io};
use switchboard::b2bua::{B2bua, B2buaConfig};
use switchboard::call::{MediaConfig, MediaPrefs};
use switchboard::dialog::{CallParams, DialogConfig, DialogId, Dialogs, EndReason, Event};
use switchboard::endpoint::{Endpoint, EndpointConfig};
use switchboard::proxy::{Proxy, ProxyConfig};
use switchboard::registrar::{Registrar, RegistrarConfig};
use switchboard::relay::RelayConfig;
use switchboard::service::app::{Service, ServiceParts};
use switchboard::service::config::RouteConfig;
use switchboard::service::routes::StaticRoutes;
use switchboard::testing::MemoryMedia;
use switchboard::ua::core::{UaCore, UaEvent};
use switchboard::ua::echo::{EchoConfig, EchoUas};
use switchboard::ua::media::CallMediaConfig;

const CALLER: &str = "127.0.0.1:5061";
const CALLEE: &str = "127.0.0.1:5062";
const SB: &str = "127.0.0.1:5060";
const T1: Duration = Duration::from_millis(500);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn offer(port: u16) -> Bytes {
    Bytes::from(format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    ))
}

/// A phone: its own endpoint, UA core and dialogs.
struct Phone {
    ep: Endpoint,
    ua: UaCore,
    events: Vec<Event>,
}

impl Phone {
    fn new(me: &str, seed: u64) -> Phone {
        let cfg =
            DialogConfig { t1: T1, contact: format!("sip:phone@{me}"), sent_by: me.into(), rng_seed: seed, ..DialogConfig::default() };
        Phone::with(cfg)
    }

    fn with(cfg: DialogConfig) -> Phone {
        let timers = switchboard::transaction::Config { t1: T1, ..Default::default() };
        let ep = Endpoint::new(EndpointConfig { timers, ..EndpointConfig::default() });
        Phone { ep, ua: UaCore::new(Dialogs::new(cfg), None), events: Vec::new() }
    }

    fn incoming(&self) -> Option<DialogId> {
        self.events.iter().rev().find_map(|e| if let Event::Incoming { id, .. } = e { Some(id.clone()) } else { None })
    }

    fn established(&self) -> Option<DialogId> {
        self.events.iter().rev().find_map(|e| if let Event::Established { id } = e { Some(id.clone()) } else { None })
    }

    fn last_end(&self) -> Option<EndReason> {
        self.events.iter().rev().find_map(|e| if let Event::Terminated { reason, .. } = e { Some(*reason) } else { None })
    }
}

/// The service and two phones on one virtual clock.
struct World {
    now: Instant,
    caller: Phone,
    callee: Phone,
    ep: Endpoint,
    svc: Service,
    media: MemoryMedia,
    /// Datagrams to or from this address are lost (a phone that went away).
    dead: Option<&'static str>,
    /// ACKs are lost.
    lose_acks: bool,
}

fn service(b2bua: bool) -> (Endpoint, Service) {
    let local = addr(SB);
    let timers = switchboard::transaction::Config { t1: T1, ..Default::default() };
    let allow = format!("{}, REGISTER", switchboard::endpoint::ALLOW);
    let ep = Endpoint::new(EndpointConfig { timers, allow, ..EndpointConfig::default() });
    let media = CallMediaConfig {
        ip: local.ip(),
        ports: 40000..=40999,
        prefs: MediaPrefs::default(),
        session: MediaConfig { inactivity_timeout: None, cname: "echo@127.0.0.1".into(), seed: 7, ..MediaConfig::default() },
    };
    let echo = EchoUas::new(
        EchoConfig { local, answer_delay: Duration::from_secs(1), t1: T1, t2: timers.t2, media, max_calls_per_source: 0, port_share: 100 },
        7,
    );
    let route_key = switchboard::proxy::token::RouteKey::derive(&[7; 32]);
    let proxy = Proxy::new(ProxyConfig {
        local,
        branch_timeout: Duration::from_secs(8),
        ringing_timeout: Duration::from_secs(181),
        seed: 8,
        realm: None,
        route_key: route_key.clone(),
    });
    let b2bua = b2bua.then(|| {
        B2bua::new(B2buaConfig {
            local,
            t1: T1,
            t2: timers.t2,
            media_ip: local.ip(),
            rtp_ports: 30000..=30999,
            relay: RelayConfig { inactivity: None, ..RelayConfig::default() },
            no_answer: Duration::from_secs(8),
            relay_media: true,
            seed: 9,
        })
    });
    let route = RouteConfig { user: "bob".into(), target: format!("sip:{CALLEE}"), rewrite_host: Some(true), overrides: None };
    let routes = StaticRoutes::from_config(&[route]).expect("route");
    let parts = ServiceParts {
        local,
        echo,
        registrar: Registrar::new(RegistrarConfig::default()),
        auth: None,
        users: Vec::new(),
        proxy,
        store: None,
        b2bua,
        recovered: Vec::new(),
        routes,
        guard: switchboard::service::guard::GuardConfig::default(),
        admission: switchboard::service::admit::Admission::new(local, route_key, Vec::new()),
    };
    (ep, Service::new(parts))
}

impl World {
    fn new(b2bua: bool) -> World {
        let (ep, svc) = service(b2bua);
        let mut w = World {
            now: Instant::now(),
            caller: Phone::new(CALLER, 1),
            callee: Phone::new(CALLEE, 2),
            ep,
            svc,
            media: MemoryMedia::default(),
            dead: None,
            lose_acks: false,
        };
        let now = w.now;
        w.svc.start(&mut Io { endpoint: &mut w.ep, media: &mut w.media, wall_clock: Duration::from_secs(1_800_000_000) }, now);
        assert!(w.media.apply().is_empty());
        w
    }

    /// Every table of the service and of the phones, as one line per part (for a readable diff).
    fn tables(&self) -> Vec<String> {
        vec![
            format!("service endpoint {:?}", self.ep.table_sizes()),
            format!("service {:?}", self.svc.table_sizes()),
            format!("media ports open {}", self.media.open.len()),
            format!("caller endpoint {:?}", self.caller.ep.table_sizes()),
            format!("caller ua {:?}", self.caller.ua.table_sizes()),
            format!("callee endpoint {:?}", self.callee.ep.table_sizes()),
            format!("callee ua {:?}", self.callee.ua.table_sizes()),
        ]
    }

    /// Delivers every datagram and event until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for who in 0..3 {
                let (src, ep) = match who {
                    0 => (CALLER, &mut self.caller.ep),
                    1 => (CALLEE, &mut self.callee.ep),
                    _ => (SB, &mut self.ep),
                };
                let mut out = Vec::new();
                while let Some(t) = ep.poll_transmit() {
                    out.push(t);
                }
                for t in out {
                    moved = true;
                    let dest = t.dest.to_string();
                    if self.dead.is_some_and(|d| d == dest || d == src) || self.lose_acks && t.payload.starts_with(b"ACK ") {
                        continue;
                    }
                    let target = match dest.as_str() {
                        CALLER => &mut self.caller.ep,
                        CALLEE => &mut self.callee.ep,
                        SB => &mut self.ep,
                        other => panic!("datagram to {other}"),
                    };
                    target.handle_datagram(addr(src), t.payload, self.now);
                }
            }
            for phone in [&mut self.caller, &mut self.callee] {
                while let Some(ev) = phone.ep.poll_event() {
                    moved = true;
                    phone.ua.handle_endpoint_event(&mut phone.ep, ev, self.now);
                }
                while let Some(ev) = phone.ua.poll_event() {
                    if let UaEvent::Dialog(ev) = ev {
                        phone.events.push(ev);
                    }
                }
            }
            while let Some(ev) = self.ep.poll_event() {
                moved = true;
                let mut io = Io { endpoint: &mut self.ep, media: &mut self.media, wall_clock: Duration::from_secs(1_800_000_000) };
                self.svc.handle_event(&mut io, ev, self.now);
                // What the driver does after each input: bind, send, close.
                assert!(self.media.apply().is_empty(), "no port is taken here");
            }
            if !moved {
                return;
            }
        }
        panic!("the world never settles");
    }

    /// Moves the virtual clock forward by `secs`, firing every timer on the way.
    fn run(&mut self, secs: f64) {
        let end = self.now + Duration::from_secs_f64(secs);
        loop {
            self.settle();
            let next = [
                self.caller.ep.poll_timeout(),
                self.caller.ua.poll_timeout(),
                self.callee.ep.poll_timeout(),
                self.callee.ua.poll_timeout(),
                self.ep.poll_timeout(),
                self.svc.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for p in [&mut self.caller, &mut self.callee] {
                        p.ep.handle_timeout(now);
                        p.ua.handle_timeout(&mut p.ep, now);
                    }
                    self.ep.handle_timeout(now);
                    let mut io = Io { endpoint: &mut self.ep, media: &mut self.media, wall_clock: Duration::from_secs(1_800_000_000) };
                    self.svc.handle_timeout(&mut io, now);
                    assert!(self.media.apply().is_empty(), "no port is taken here");
                }
                _ => {
                    self.now = end;
                    self.settle();
                    return;
                }
            }
        }
    }

    /// The caller dials `user` at the service; `sdp` is the offer (none: an INVITE without one).
    fn dial(&mut self, user: &str, sdp: Option<Bytes>) -> DialogId {
        let params = CallParams {
            from: "<sip:alice@example.com>".into(),
            to: format!("<sip:{user}@example.com>"),
            target: Some(format!("sip:{user}@{SB}")),
            routes: Vec::new(),
            sdp,
            max_forwards: None,
            asserted_identity: None,
            referred_by: None,
        };
        let id = self.caller.ua.dialogs().invite(params, self.now).expect("invite");
        self.caller.ua.flush(&mut self.caller.ep, self.now);
        self.run(0.1);
        id
    }

    fn callee_incoming(&self) -> DialogId {
        self.callee.incoming().expect("the callee got the INVITE")
    }

    fn callee_does(&mut self, f: impl FnOnce(&mut Dialogs, &DialogId, Instant)) {
        let id = self.callee_incoming();
        f(self.callee.ua.dialogs(), &id, self.now);
        self.callee.ua.flush(&mut self.callee.ep, self.now);
        self.run(0.2);
    }

    fn caller_hangs_up(&mut self) {
        let id = self.caller.established().expect("the caller's call is up");
        self.caller.ua.dialogs().send_bye(&id, self.now).expect("bye");
        self.caller.ua.flush(&mut self.caller.ep, self.now);
        self.run(0.5);
    }

    fn caller_cancels(&mut self, pending: &DialogId) {
        self.caller.ua.cancel(&mut self.caller.ep, pending, self.now).expect("cancel");
        self.run(0.5);
    }

    /// Lets every timer run (transactions, 64*T1 purges and lingers, merge windows).
    fn drain_timers(&mut self) {
        self.run(300.0);
    }

    fn clear_events(&mut self) {
        self.callee.events.clear();
        self.caller.events.clear();
    }
}

/// Calls to the echo user, which both worlds serve the same way.
fn echo_calls(w: &mut World) {
    // Answered (after 180, the answer delay), then hung up by the caller.
    w.dial("echo", Some(offer(4000)));
    w.run(1.5);
    w.caller_hangs_up();
    assert!(matches!(w.caller.last_end(), Some(EndReason::Bye(_))), "echo call ended by BYE: {:?}", w.caller.last_end());
    // Refused: an offer without audio.
    w.clear_events();
    let video = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n";
    w.dial("echo", Some(Bytes::from_static(video.as_bytes())));
    w.run(1.5);
    assert!(matches!(w.caller.last_end(), Some(EndReason::Rejected(488))), "echo call without audio refused: {:?}", w.caller.last_end());
    // A late offer (no SDP in the INVITE, the offer in the 200) whose ACK brings no answer: the
    // echo user hangs up (RFC 3264 §4) and its ports and tables go.
    w.clear_events();
    w.dial("echo", None);
    w.run(1.5);
    let id = w.caller.established().expect("the late offer is answered with an offer");
    w.caller.ua.dialogs().send_late_ack(&id, None, w.now).expect("ACK without answer");
    w.caller.ua.flush(&mut w.caller.ep, w.now);
    w.run(1.0);
    assert_eq!(w.caller.last_end(), Some(EndReason::Bye(switchboard::dialog::Side::Remote)), "the echo user hung up");
    // Cancelled while ringing.
    w.clear_events();
    let pending = w.dial("echo", Some(offer(4000)));
    w.caller_cancels(&pending);
    w.run(1.0);
    assert_eq!(w.caller.last_end(), Some(EndReason::Cancelled), "echo call cancelled");
    // Timed out: the caller's ACKs are lost; the echo user retransmits its 2xx, then gives up
    // after 64*T1 and ends the call with a BYE (§13.3.1.4).
    w.clear_events();
    w.lose_acks = true;
    w.dial("echo", Some(offer(4000)));
    w.run(40.0);
    w.lose_acks = false;
    assert!(
        matches!(w.caller.last_end(), Some(EndReason::Bye(_))),
        "the echo user hung up the unacknowledged call: {:?}",
        w.caller.last_end()
    );
    // Out-of-dialog OPTIONS, which no dialog keeps.
    let options = format!(
        "OPTIONS sip:echo@{SB} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKopt1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=o1\r\nTo: <sip:echo@example.com>\r\nCall-ID: opt-1@example.com\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    w.ep.handle_datagram(addr(CALLER), Bytes::from(options), w.now);
    w.run(0.1);
}

/// Calls to bob, a static route to the callee phone: through the B2BUA or the proxy.
fn routed_calls(w: &mut World) {
    // Answered, then hung up by the caller.
    w.clear_events();
    w.dial("bob", Some(offer(4000)));
    w.callee_does(|d, id, now| d.accept(id, Some(offer(6000)), now).expect("accept"));
    w.caller_hangs_up();
    assert!(matches!(w.caller.last_end(), Some(EndReason::Bye(_))), "routed call ended by BYE: {:?}", w.caller.last_end());
    // Answered, then hung up by the callee.
    w.clear_events();
    w.dial("bob", Some(offer(4000)));
    w.callee_does(|d, id, now| d.accept(id, Some(offer(6000)), now).expect("accept"));
    w.callee_does(|d, id, now| d.send_bye(id, now).expect("bye"));
    // Refused by the callee.
    w.clear_events();
    w.dial("bob", Some(offer(4000)));
    w.callee_does(|d, id, now| d.reject(id, 486, now).expect("reject"));
    assert_eq!(w.caller.last_end(), Some(EndReason::Rejected(486)), "busy reaches the caller");
    // Cancelled while ringing.
    w.clear_events();
    let pending = w.dial("bob", Some(offer(4000)));
    w.callee_does(|d, id, now| d.ring(id, now).expect("ring"));
    w.caller_cancels(&pending);
    assert_eq!(w.caller.last_end(), Some(EndReason::Cancelled), "routed call cancelled");
    // Timed out: the callee is gone.
    w.clear_events();
    w.dead = Some(CALLEE);
    w.dial("bob", Some(offer(4000)));
    w.run(40.0);
    w.dead = None;
    assert!(w.caller.last_end().is_some(), "the caller's INVITE ended");
}

fn assert_back_to(w: &World, before: &[String], what: &str) {
    let after = w.tables();
    let grown: Vec<String> = before.iter().zip(&after).filter(|(b, a)| b != a).map(|(b, a)| format!("before: {b}\nafter:  {a}")).collect();
    assert!(
        grown.is_empty(),
        "{what}: tables did not shrink back once the calls were over and their timers had run:\n{}",
        grown.join("\n")
    );
}

#[test]
fn b2bua_mode_leaves_no_per_call_state() {
    let mut w = World::new(true);
    let before = w.tables();
    echo_calls(&mut w);
    routed_calls(&mut w);
    w.drain_timers();
    assert_back_to(&w, &before, "b2bua mode");
}

#[test]
fn proxy_mode_leaves_no_per_call_state() {
    let mut w = World::new(false);
    let before = w.tables();
    echo_calls(&mut w);
    routed_calls(&mut w);
    w.drain_timers();
    assert_back_to(&w, &before, "proxy mode");
}

/// Issue 13 point 2: when the dialog layer refuses the INVITE itself (422: Session-Expires below
/// our Min-SE, RFC 4028 §6), the B2BUA's pending entry and its relay ports go with it, and the
/// caller's retry on the same Call-ID does not orphan them.
#[test]
fn an_invite_the_dialog_layer_refuses_leaves_no_pending_call_or_ports() {
    let mut w = World::new(true);
    let cfg = DialogConfig {
        t1: T1,
        contact: format!("sip:phone@{CALLER}"),
        sent_by: CALLER.into(),
        rng_seed: 11,
        session_expires: Some(Duration::from_secs(30)),
        min_se: Duration::from_secs(30),
        ..DialogConfig::default()
    };
    w.caller = Phone::with(cfg);
    let before = w.tables();
    w.dial("bob", Some(offer(4000)));
    // The service answered 422; the caller retried with the Min-SE asked for.
    w.callee_does(|d, id, now| d.accept(id, Some(offer(6000)), now).expect("accept"));
    w.caller_hangs_up();
    w.drain_timers();
    assert_back_to(&w, &before, "after a 422 and its retry");
}

/// A response given to a server transaction that is already gone (a proxy relaying a forked 2xx
/// that comes after the INVITE server transaction ended) leaves nothing behind.
#[test]
fn a_response_to_an_ended_transaction_keeps_no_to_tag() {
    let now = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::default());
    let invite = format!(
        "INVITE sip:bob@{SB} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: fork-1@example.com\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{CALLER}>\r\nContent-Length: 0\r\n\r\n"
    );
    ep.handle_datagram(addr(CALLER), Bytes::from(invite), now);
    let Some(switchboard::endpoint::EndpointEvent::Request { tx, request, .. }) = ep.poll_event() else { panic!("no request event") };
    let before = ep.table_sizes();
    assert_eq!(before.transactions, 1);
    ep.respond(tx, request.response_to(200, "OK", Some("fork-a")).finish(), now).expect("first 2xx");
    // Timer L (RFC 6026) ends the accepted transaction; a late 2xx from another fork finds it gone.
    let later = now + Duration::from_secs(64);
    ep.handle_timeout(later);
    assert_eq!(ep.table_sizes().transactions, 0);
    assert!(ep.respond(tx, request.response_to(200, "OK", Some("fork-b")).finish(), later).is_err(), "the transaction is gone");
    while ep.poll_event().is_some() {}
    assert_eq!(ep.table_sizes(), switchboard::endpoint::TableSizes::default(), "nothing is kept for the ended transaction");
}
