//! Owners recorded, not guessed (issue 13 point 1), on two sans-IO endpoints with datagrams
//! carried in memory and a virtual clock.
//!
//! Asserts: a client transaction's events carry the owner it was started with, and the CANCEL of
//! an INVITE inherits it; a server transaction is `Unassigned` until the application names its
//! owner, and then its Cancelled and Terminated events carry that owner; a new request's event
//! carries its source address, which the endpoint keeps beside the transaction; a stateless
//! answer's Terminated carries the owner too. Nothing is left in the endpoint's table after.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Owner, STATELESS_TAG};
use switchboard::message::Message;
use switchboard::transaction::TransactionId;

struct Pair {
    uac: Endpoint,
    uas: Endpoint,
    now: Instant,
}

const UAC: &str = "127.0.0.1:5070";
const UAS: &str = "127.0.0.1:5080";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn request(method: &str, branch: &str) -> Message {
    let text = format!(
        "{method} sip:bob@{UAS} SIP/2.0\r\nVia: SIP/2.0/UDP {UAC};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@{UAC}>;tag=a1\r\nTo: <sip:bob@{UAS}>\r\nCall-ID: owners-{branch}\r\nCSeq: 1 {method}\r\n\
         Contact: <sip:alice@{UAC}>\r\nContent-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).expect("request")
}

impl Pair {
    fn new() -> Pair {
        Pair { uac: Endpoint::new(EndpointConfig::default()), uas: Endpoint::new(EndpointConfig::default()), now: Instant::now() }
    }

    /// Carries every pending datagram across, both ways, until none is left.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.uac.poll_transmit() {
                self.uas.handle_datagram(addr(UAC), t.payload, self.now);
                moved = true;
            }
            while let Some(t) = self.uas.poll_transmit() {
                self.uac.handle_datagram(addr(UAS), t.payload, self.now);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs both endpoints' timers for `secs` virtual seconds.
    fn run_for(&mut self, secs: u64) {
        let end = self.now + Duration::from_secs(secs);
        while self.now < end {
            self.now += Duration::from_millis(100);
            self.uac.handle_timeout(self.now);
            self.uas.handle_timeout(self.now);
            self.pump();
        }
    }
}

fn events(ep: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn terminated(events: &[EndpointEvent]) -> Vec<(TransactionId, Owner)> {
    events.iter().filter_map(|e| if let EndpointEvent::Terminated { tx, owner } = e { Some((*tx, *owner)) } else { None }).collect()
}

#[test]
fn every_transaction_event_carries_the_owner_recorded_for_it() {
    let mut p = Pair::new();
    let invite = p.uac.send_request(request("INVITE", "inv"), addr(UAS), Owner::B2bua, p.now).expect("INVITE sent");
    assert_eq!(p.uac.owner(invite), Some(Owner::B2bua));
    assert_eq!(p.uac.peer(invite), Some(addr(UAS)));
    p.pump();

    // The server transaction: no owner until the application names one; its source is kept.
    let server = match events(&mut p.uas).as_slice() {
        [EndpointEvent::Request { tx, source, .. }] => {
            assert_eq!(*source, addr(UAC), "the event carries where the request came from");
            *tx
        }
        other => panic!("expected one Request, got {other:?}"),
    };
    assert_eq!(p.uas.owner(server), Some(Owner::Unassigned));
    assert_eq!(p.uas.peer(server), Some(addr(UAC)));
    assert!(p.uas.set_owner(server, Owner::Echo));
    let ringing = p.uas.transaction_request(server).expect("live").response_to(180, "Ringing", Some("b1")).finish();
    p.uas.respond(server, ringing, p.now).expect("180");
    p.pump();
    match events(&mut p.uac).as_slice() {
        [EndpointEvent::Response { tx, owner, response }] => {
            assert_eq!((*tx, *owner, response.status()), (invite, Owner::B2bua, Some(180)));
        }
        other => panic!("expected the 180, got {other:?}"),
    }

    // The CANCEL inherits its INVITE's owner; on the far side it reaches the INVITE's owner.
    let cancel = p.uac.cancel(invite, p.now).expect("CANCEL");
    assert_eq!(p.uac.owner(cancel), Some(Owner::B2bua));
    p.pump();
    let uas_events = events(&mut p.uas);
    assert!(
        uas_events.iter().any(|e| matches!(e, EndpointEvent::Cancelled { tx, owner: Owner::Echo, .. } if *tx == server)),
        "Cancelled carries the INVITE's owner: {uas_events:?}"
    );
    let uac_events = events(&mut p.uac);
    let statuses: Vec<(TransactionId, Option<u16>)> = uac_events
        .iter()
        .filter_map(|e| match e {
            EndpointEvent::Response { tx, response, owner: Owner::B2bua } => Some((*tx, response.status())),
            _ => None,
        })
        .collect();
    assert!(statuses.contains(&(cancel, Some(200))) && statuses.contains(&(invite, Some(487))), "{uac_events:?}");

    // Every transaction ends with its owner on the Terminated event, and leaves nothing behind.
    p.run_for(40);
    let mut ended = terminated(&uac_events);
    ended.extend(terminated(&events(&mut p.uac)));
    assert!(ended.contains(&(invite, Owner::B2bua)) && ended.contains(&(cancel, Owner::B2bua)), "{ended:?}");
    let mut ended = terminated(&uas_events);
    ended.extend(terminated(&events(&mut p.uas)));
    assert!(ended.contains(&(server, Owner::Echo)), "{ended:?}");
    assert_eq!((p.uac.transaction_count(), p.uas.transaction_count()), (0, 0));
    assert_eq!((p.uac.owner(invite), p.uas.owner(server)), (None, None), "the owner goes with the transaction");
}

#[test]
fn a_stateless_answer_ends_the_transaction_with_its_owner() {
    let mut p = Pair::new();
    p.uac.send_request(request("OPTIONS", "opt"), addr(UAS), Owner::Phone, p.now).expect("OPTIONS sent");
    p.pump();
    let Some(EndpointEvent::Request { tx, request, .. }) = p.uas.poll_event() else { panic!("expected the OPTIONS") };
    assert!(p.uas.set_owner(tx, Owner::Registrar));
    p.uas.respond_stateless(tx, request.response_to(401, "Unauthorized", Some(STATELESS_TAG)).finish(), p.now).expect("401");
    assert_eq!(terminated(&events(&mut p.uas)), vec![(tx, Owner::Registrar)]);
    assert!(!p.uas.set_owner(tx, Owner::Echo), "a transaction that is gone takes no owner");
    p.pump();
    match events(&mut p.uac).as_slice() {
        [EndpointEvent::Response { owner: Owner::Phone, response, .. }, ..] => assert_eq!(response.status(), Some(401)),
        other => panic!("expected the 401, got {other:?}"),
    }
}
