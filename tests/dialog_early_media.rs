//! Early media in the dialog layer (RFC 3261 §13.2.1, RFC 3960): every 1xx with a To tag and an
//! SDP body to our INVITE is reported as `Event::EarlyMedia` after its early dialog's
//! `Event::Early`, per branch (To tag), and the early dialog keeps that SDP as the peer's.

#[path = "dialog_support/mod.rs"]
mod support;

use bytes::Bytes;
use support::call_params;
use switchboard::dialog::{DialogId, Dialogs, Event};
use switchboard::message::HeaderName;

const SDP1: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.11\r\ns=-\r\nc=IN IP4 192.0.2.11\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
const SDP2: &str = "v=0\r\no=- 2 1 IN IP4 192.0.2.12\r\ns=-\r\nc=IN IP4 192.0.2.12\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";

#[test]
fn each_1xx_with_sdp_is_early_media_of_its_branch() {
    let mut alice = Dialogs::new(support::alice_config());
    let now = std::time::Instant::now();
    let pending = alice.invite(call_params(), now).unwrap();
    let invite = alice.poll_transmit().unwrap();
    let answer = |code: u16, tag: &str, body: Option<&str>| {
        let b = invite.response_to(code, "x", Some(tag)).header(HeaderName::Contact, format!("<sip:bob@{tag}.example.com>"));
        match body {
            Some(s) => b.body("application/sdp", s.as_bytes()),
            None => b.finish(),
        }
    };
    let ids: Vec<DialogId> = ["fork1", "fork2"].map(|t| DialogId { remote_tag: t.into(), ..pending.clone() }).to_vec();
    alice.handle_response(&answer(180, "fork1", None), now).unwrap();
    alice.handle_response(&answer(183, "fork1", Some(SDP1)), now).unwrap();
    assert_eq!(alice.get(&ids[0]).and_then(|d| d.remote_sdp().cloned()), Some(Bytes::from_static(SDP1.as_bytes())));
    alice.handle_response(&answer(183, "fork2", Some(SDP2)), now).unwrap();
    // The 200 of the second branch carries no SDP: its early answer stays the peer's.
    alice.handle_response(&answer(200, "fork2", None), now).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| alice.poll_event()).collect();
    let media = |i: usize, sdp: &'static str| Event::EarlyMedia { id: ids[i].clone(), code: 183, sdp: Bytes::from_static(sdp.as_bytes()) };
    assert_eq!(
        events[..5],
        [
            Event::Early { id: ids[0].clone() },
            media(0, SDP1),
            Event::Early { id: ids[1].clone() },
            media(1, SDP2),
            Event::Established { id: ids[1].clone() },
        ]
    );
    assert_eq!(alice.get(&ids[1]).and_then(|d| d.remote_sdp().cloned()), Some(Bytes::from_static(SDP2.as_bytes())));
}
