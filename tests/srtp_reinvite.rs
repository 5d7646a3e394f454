//! SRTP across re-INVITEs (RFC 4568 §7.1.4: a new offer in the dialog carries the key again): two
//! softphones with SRTP required, registered to the real service (B2BUA with relay) on the
//! in-memory network of `switchboard::testing` with a virtual clock. alice puts bob on hold and
//! resumes; each re-offer and answer repeats the keys, the SRTP contexts carry on (same keys), and
//! after the resume each still hears the other's tone. A phone with SRTP off on the same service
//! refuses the SRTP call with 488.

use std::net::SocketAddr;
use std::time::Duration;
use switchboard::call::sdes::SrtpMode;
use switchboard::media::tone::dominant_frequency;
use switchboard::testing::{self, Net, NodeId};
use switchboard::ua::phone::{EndState, LiveState, Phone, SourceSpec};
use switchboard::ua::register::RegState;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct Call {
    net: Net,
    alice: NodeId<Phone>,
    bob: NodeId<Phone>,
    sb: SocketAddr,
}

fn setup(bob_mode: SrtpMode) -> Call {
    let (sb, alice_at, bob_at) = (addr("127.0.0.1:5060"), addr("127.0.0.2:5060"), addr("127.0.0.3:5060"));
    let mut net = Net::new(std::time::Instant::now(), 5);
    let parts = testing::service_parts(sb, &[("alice", "alice-pw"), ("bob", "bob-pw")], 1);
    net.add("switchboard", sb, testing::service_endpoint(), switchboard::service::app::Service::new(parts));
    let mut a = testing::phone_config("alice", "alice-pw", alice_at, sb, 2);
    a.source = SourceSpec::Tone(440.0);
    a.media.session.record = true;
    let mut b = testing::phone_config("bob", "bob-pw", bob_at, sb, 3);
    b.source = SourceSpec::Tone(1000.0);
    b.media.session.record = true;
    b.auto_answer = Some(Duration::from_millis(100));
    let mut alice = Phone::new(a, None);
    alice.set_srtp(SrtpMode::Required);
    let mut bob = Phone::new(b, None);
    bob.set_srtp(bob_mode);
    let alice = net.add("alice", alice_at, switchboard::Endpoint::new(Default::default()), alice);
    let bob = net.add("bob", bob_at, switchboard::Endpoint::new(Default::default()), bob);
    let registered = |n: &Net| [alice, bob].iter().all(|&p| n.app(p).registration() == Some(RegState::Registered));
    assert!(net.run_until(Duration::from_secs(30), registered), "both phones register");
    net.with(alice, |phone, io, now| {
        phone.dial(&format!("sip:bob@{}", sb.ip()), sb);
        switchboard::application::Application::start(phone, io, now);
    });
    Call { net, alice, bob, sb }
}

/// The dominant frequency of the last `secs` seconds of a recording.
fn tail_tone(rec: &[i16], secs: f64) -> Option<f64> {
    let n = (secs * 8000.0) as usize;
    dominant_frequency(&rec[rec.len().saturating_sub(n)..], 8000)
}

#[test]
fn hold_and_resume_keep_srtp_and_the_audio() {
    let Call { mut net, alice, bob, sb } = setup(SrtpMode::Required);
    let _ = sb;
    net.run_for(Duration::from_secs(2));
    let answered = |n: &Net, p: NodeId<Phone>| n.app(p).status(n.now()).iter().any(|(_, s, _, _)| *s == LiveState::Active);
    assert!(answered(&net, alice) && answered(&net, bob), "the call is up: {:?}", net.app(alice).reports);
    net.with(alice, |p, io, now| p.hold(io, true, now)).expect("hold");
    // bob accepted the re-offer (with its key; under SRTP required a keyless one gets 488): his
    // answer is recvonly, so he stops sending.
    net.run_for(Duration::from_millis(300));
    let sent = |n: &Net| n.app(bob).status(n.now()).first().and_then(|c| c.3.as_ref()).map_or(0, |m| m.packets_sent);
    let before = sent(&net);
    net.run_for(Duration::from_secs(1));
    assert!(sent(&net) <= before + 2, "bob is on hold: he sent {} packets in 1 s", sent(&net) - before);
    net.with(alice, |p, io, now| p.hold(io, false, now)).expect("resume");
    net.run_for(Duration::from_secs(2));
    net.with(alice, |p, io, now| p.hangup(io, now)).expect("hang up");
    assert!(net.run_until(Duration::from_secs(30), |n| !n.app(alice).reports.is_empty() && !n.app(bob).reports.is_empty()));
    let (ra, rb) = (&net.app(alice).reports[0], &net.app(bob).reports[0]);
    assert_eq!((ra.state, rb.state), (EndState::Completed, EndState::Completed), "{ra:?}\n{rb:?}");
    // After the resume both hear the other again, through SRTP contexts that survived two
    // re-INVITEs (a context reset or a lost key would leave silence here).
    assert_eq!(tail_tone(&ra.recording, 1.5).map(f64::round), Some(1000.0), "alice after resume");
    assert_eq!(tail_tone(&rb.recording, 1.5).map(f64::round), Some(440.0), "bob after resume");
    let received = |r: &switchboard::ua::phone::CallReport| r.media.as_ref().map_or(0, |m| m.packets_received);
    assert!(received(ra) > 150 && received(rb) > 150, "{} {}", received(ra), received(rb));
}

#[test]
fn a_phone_with_srtp_off_refuses_the_srtp_call_with_488() {
    let Call { mut net, alice, bob, .. } = setup(SrtpMode::Off);
    assert!(net.run_until(Duration::from_secs(30), |n| !n.app(alice).reports.is_empty()));
    let r = &net.app(alice).reports[0];
    assert_eq!((r.state, r.reason.as_str()), (EndState::Rejected, "488"), "{r:?}");
    assert!(net.app(bob).status(net.now()).is_empty(), "bob has no call");
}
