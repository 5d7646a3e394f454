//! Shared harness for the `dialog_*` tests: two [`Dialogs`] (Alice calls, Bob answers) on a virtual
//! clock, joined by an in-memory wire that re-parses every message, logs it with its send time, and
//! can drop or rewrite messages in flight. It plays the endpoint's part where the dialog layer
//! leaves it one: a request for an unknown dialog is answered with `reject_unknown` (481).
#![allow(dead_code)]

use bytes::Bytes;
use std::time::{Duration, Instant};
use switchboard::dialog::{reject_unknown, CallParams, DialogConfig, DialogId, Dialogs, Event, InputError};
use switchboard::message::{Message, Method};

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Alice,
    Bob,
}

/// One message on the wire.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Duration,
    pub from: Who,
    pub msg: Message,
    pub dropped: bool,
}

type Filter = Box<dyn FnMut(Who, &Message) -> bool>;
type Rewrite = Box<dyn FnMut(Who, Message) -> Message>;

pub struct Pair {
    pub alice: Dialogs,
    pub bob: Dialogs,
    pub base: Instant,
    pub now: Instant,
    pub sent: Vec<Sent>,
    pub alice_events: Vec<Event>,
    pub bob_events: Vec<Event>,
    /// Returns true for a message to lose.
    pub drop: Filter,
    /// Changes a message in flight (a proxy adding Record-Route, say).
    pub rewrite: Rewrite,
}

pub fn alice_config() -> DialogConfig {
    DialogConfig { contact: "sip:alice@192.0.2.1:5060".into(), sent_by: "192.0.2.1:5060".into(), rng_seed: 1, ..DialogConfig::default() }
}

pub fn bob_config() -> DialogConfig {
    DialogConfig { contact: "sip:bob@192.0.2.2:5060".into(), sent_by: "192.0.2.2:5060".into(), rng_seed: 2, ..DialogConfig::default() }
}

/// A small SDP body with the given origin version and direction attribute.
pub fn sdp(who: Who, version: u32, direction: &str) -> Bytes {
    let (name, ip, port) = match who {
        Who::Alice => ("alice", "192.0.2.1", 4000),
        Who::Bob => ("bob", "192.0.2.2", 5000),
    };
    Bytes::from(format!(
        "v=0\r\no={name} 1 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na={direction}\r\n"
    ))
}

/// Alice's call to Bob.
pub fn call_params() -> CallParams {
    CallParams {
        from: "\"Alice\" <sip:alice@example.com>".into(),
        to: "<sip:bob@example.com>".into(),
        target: Some("sip:bob@192.0.2.2:5060".into()),
        routes: Vec::new(),
        sdp: Some(sdp(Who::Alice, 1, "sendrecv")),
        max_forwards: None,
        asserted_identity: None,
        referred_by: None,
    }
}

/// Parses wire text (with `\n` line ends turned into CRLF).
pub fn wire(text: &str) -> Message {
    let t = text.replace("\r\n", "\n").replace('\n', "\r\n");
    Message::parse(Bytes::from(t)).expect("test message parses")
}

impl Pair {
    pub fn new(alice: DialogConfig, bob: DialogConfig) -> Pair {
        let base = Instant::now();
        Pair {
            alice: Dialogs::new(alice),
            bob: Dialogs::new(bob),
            base,
            now: base,
            sent: Vec::new(),
            alice_events: Vec::new(),
            bob_events: Vec::new(),
            drop: Box::new(|_, _| false),
            rewrite: Box::new(|_, m| m),
        }
    }

    pub fn default_pair() -> Pair {
        Pair::new(alice_config(), bob_config())
    }

    /// Seconds since the start.
    pub fn at(&self, secs: f64) -> Instant {
        self.base + Duration::from_secs_f64(secs)
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    fn side(&mut self, who: Who) -> &mut Dialogs {
        match who {
            Who::Alice => &mut self.alice,
            Who::Bob => &mut self.bob,
        }
    }

    /// Puts one message on the wire from `from` and hands it to the other side.
    pub fn deliver(&mut self, from: Who, msg: Message) {
        let msg = Message::parse(msg.as_bytes().clone()).expect("what the dialog layer writes parses");
        let dropped = (self.drop)(from, &msg);
        self.sent.push(Sent { at: self.elapsed(), from, msg: msg.clone(), dropped });
        if dropped {
            return;
        }
        let msg = (self.rewrite)(from, msg);
        let to = match from {
            Who::Alice => Who::Bob,
            Who::Bob => Who::Alice,
        };
        let now = self.now;
        if msg.is_request() {
            let r = self.side(to).handle_request(&msg, now);
            if r == Err(InputError::UnknownDialog) && msg.method() != Some(&Method::Ack) {
                self.deliver(to, reject_unknown(&msg));
            }
        } else {
            let _ = self.side(to).handle_response(&msg, now);
        }
    }

    /// Delivers everything queued on both sides until both are quiet; collects events.
    pub fn flush(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(m) = self.alice.poll_transmit() {
                self.deliver(Who::Alice, m);
                moved = true;
            }
            while let Some(m) = self.bob.poll_transmit() {
                self.deliver(Who::Bob, m);
                moved = true;
            }
            while let Some(e) = self.alice.poll_event() {
                self.alice_events.push(e);
            }
            while let Some(e) = self.bob.poll_event() {
                self.bob_events.push(e);
            }
            if !moved {
                return;
            }
        }
        panic!("the wire never went quiet");
    }

    /// Runs timers and the wire until `secs` after the start; the clock jumps timer to timer.
    pub fn run_until(&mut self, secs: f64) {
        let end = self.at(secs);
        for _ in 0..100_000 {
            self.flush();
            let next = [self.alice.poll_timeout(), self.bob.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.alice.handle_timeout(now);
                    self.bob.handle_timeout(now);
                }
                _ => {
                    self.now = self.now.max(end);
                    return;
                }
            }
        }
        panic!("timers never settled");
    }

    /// Alice calls, Bob answers 200, Alice ACKs. Returns (Alice's id, Bob's id).
    pub fn establish(&mut self) -> (DialogId, DialogId) {
        self.alice.invite(call_params(), self.now).expect("invite");
        self.flush();
        let bob_id = self.incoming().expect("Bob sees the INVITE");
        self.bob.accept(&bob_id, Some(sdp(Who::Bob, 1, "sendrecv")), self.now).expect("accept");
        self.flush();
        let alice_id = self
            .alice_events
            .iter()
            .find_map(|e| match e {
                Event::Established { id } => Some(id.clone()),
                _ => None,
            })
            .expect("Alice's dialog is established");
        (alice_id, bob_id)
    }

    /// The id of the last `Incoming` event Bob got.
    pub fn incoming(&self) -> Option<DialogId> {
        self.bob_events.iter().rev().find_map(|e| match e {
            Event::Incoming { id, .. } => Some(id.clone()),
            _ => None,
        })
    }

    /// Messages sent (delivered or not) by `from` whose start line begins with `start`
    /// (`"INVITE"`, `"SIP/2.0 200"`, `"ACK"`).
    pub fn sent_by(&self, from: Who, start: &str) -> Vec<&Sent> {
        self.sent.iter().filter(|s| s.from == from && s.msg.as_bytes().starts_with(start.as_bytes())).collect()
    }

    /// The `Terminated` reasons `who` saw, in order.
    pub fn terminations(&self, who: Who) -> Vec<switchboard::dialog::EndReason> {
        let events = match who {
            Who::Alice => &self.alice_events,
            Who::Bob => &self.bob_events,
        };
        events
            .iter()
            .filter_map(|e| match e {
                Event::Terminated { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect()
    }
}

/// Seconds as f64, for readable asserts.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
