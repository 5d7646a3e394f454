//! The softphone's hang-up before any answer, sans-IO on a virtual clock: a CANCEL may not be
//! sent before a provisional response (RFC 3261 §9.1), so a hang-up that comes first is carried
//! out as soon as the callee rings instead of being lost. The phone talks to a scripted callee
//! whose datagrams the test writes by hand.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::call::MediaConfig;
use switchboard::driver::{Application, Io};
use switchboard::endpoint::{Endpoint, EndpointConfig};
use switchboard::message::Message;
use switchboard::testing::MemoryMedia;
use switchboard::ua::media::CallMediaConfig;
use switchboard::ua::phone::{EndState, Phone, PhoneConfig, SourceSpec};

const PHONE: &str = "127.0.0.1:5071";
const CALLEE: &str = "127.0.0.1:5072";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct World {
    now: Instant,
    ep: Endpoint,
    media: MemoryMedia,
    phone: Phone,
    /// Requests the phone sent to the callee.
    sent: Vec<Message>,
}

impl World {
    fn new() -> World {
        let config = PhoneConfig {
            user: "alice".into(),
            domain: None,
            realm: None,
            local: addr(PHONE),
            media: CallMediaConfig {
                ip: "127.0.0.1".parse().expect("ip"),
                ports: 40000..=40999,
                prefs: Default::default(),
                session: MediaConfig::default(),
            },
            source: SourceSpec::Silence,
            duration: None,
            auto_answer: None,
            max_calls: Some(1),
            dtmf: None,
            seed: 7,
            register: None,
            credentials: None,
        };
        let mut phone = Phone::new(config, None);
        phone.dial(&format!("sip:bob@{CALLEE}"), addr(CALLEE));
        World { now: Instant::now(), ep: Endpoint::new(EndpointConfig::default()), media: MemoryMedia::default(), phone, sent: Vec::new() }
    }

    fn io<'a>(ep: &'a mut Endpoint, media: &'a mut MemoryMedia) -> Io<'a> {
        Io { endpoint: ep, media, wall_clock: Duration::from_secs(1_800_000_000) }
    }

    /// Delivers the phone's endpoint events and collects what it sent.
    fn settle(&mut self) {
        while let Some(ev) = self.ep.poll_event() {
            let mut io = Self::io(&mut self.ep, &mut self.media);
            self.phone.handle_event(&mut io, ev, self.now);
        }
        while let Some(t) = self.ep.poll_transmit() {
            if let Ok(m) = Message::parse(t.payload) {
                self.sent.push(m);
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.ep.handle_timeout(self.now);
        let mut io = Self::io(&mut self.ep, &mut self.media);
        self.phone.handle_timeout(&mut io, self.now);
        self.settle();
    }

    fn sent_methods(&self) -> Vec<String> {
        self.sent.iter().filter_map(|m| m.method().map(|m| m.to_string())).collect()
    }

    /// The callee answers the phone's INVITE with `code`.
    fn callee_answers(&mut self, code: u16, reason: &str) {
        let invite = self.sent.iter().find(|m| m.method().is_some_and(|m| m.to_string() == "INVITE")).expect("INVITE").clone();
        let response = invite.response_to(code, reason, Some("bob1")).finish();
        self.ep.handle_datagram(addr(CALLEE), Bytes::copy_from_slice(response.as_bytes()), self.now);
        self.settle();
    }
}

#[test]
fn a_hangup_before_the_callee_rings_is_sent_once_it_rings() {
    let mut w = World::new();
    let mut io = World::io(&mut w.ep, &mut w.media);
    w.phone.start(&mut io, w.now);
    w.settle();
    assert_eq!(w.sent_methods(), ["INVITE"]);
    // Hang up at once: no provisional response yet, so no CANCEL may go out (§9.1).
    let mut io = World::io(&mut w.ep, &mut w.media);
    w.phone.hangup(&mut io, w.now).expect("a call to hang up");
    w.settle();
    assert!(!w.sent_methods().contains(&"CANCEL".to_string()), "no CANCEL before a provisional: {:?}", w.sent_methods());
    w.callee_answers(180, "Ringing");
    w.advance(Duration::from_secs(1));
    assert!(w.sent_methods().contains(&"CANCEL".to_string()), "the hang-up went out once the callee rang: {:?}", w.sent_methods());
    w.callee_answers(487, "Request Terminated");
    w.advance(Duration::from_secs(1));
    let report = w.phone.reports.last().expect("the call ended");
    assert_eq!((report.state, report.reason.as_str()), (EndState::Cancelled, "cancel"));
}
