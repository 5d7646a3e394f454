//! Early media in the softphone core (issue 15 point 2), on the in-memory network and a virtual
//! clock: a callee (`testing::DialogUa`) answers the phone's INVITE with 183 and SDP, then sends a
//! 600 Hz tone; later 200 and a 1000 Hz tone. The phone sends its own audio from the 183 on,
//! records the early tone and the later one in the one recording, reports `early_media`, does
//! not hang up a call that rings silently for longer than its RTP timeout, and still hangs up
//! once the answered call stays silent for that long.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::dialog::{DialogConfig, DialogId, Dialogs};
use switchboard::endpoint::Endpoint;
use switchboard::media::g711::Codec;
use switchboard::media::tone::{analyse, ToneGenerator};
use switchboard::testing::{self, DialogUa, Net, NodeId};
use switchboard::ua::phone::{EndState, Phone};

const PHONE: &str = "127.0.0.2:5060";
const CALLEE: &str = "127.0.0.3:5060";
const CALLEE_MEDIA: &str = "127.0.0.3:6000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct World {
    net: Net,
    phone: NodeId<Phone>,
    callee: NodeId<DialogUa>,
    /// The phone's RTP address, from its offer.
    phone_media: SocketAddr,
    seq: u16,
}

impl World {
    /// The phone (recording, 2 s RTP timeout) has dialled the callee, whose INVITE has arrived.
    fn new() -> World {
        let mut net = Net::new(Instant::now(), 1);
        let mut cfg = testing::phone_config("alice", "pw", addr(PHONE), addr(CALLEE), 2);
        cfg.register = None;
        cfg.credentials = None;
        cfg.media.session.record = true;
        cfg.media.session.inactivity_timeout = Some(Duration::from_secs(2));
        cfg.max_calls = Some(1);
        let mut phone = Phone::new(cfg, None);
        phone.dial(&format!("sip:bob@{CALLEE}"), addr(CALLEE));
        let phone = net.add("alice", addr(PHONE), Endpoint::new(Default::default()), phone);
        let dialogs = Dialogs::new(DialogConfig {
            contact: format!("sip:bob@{CALLEE}"),
            sent_by: CALLEE.into(),
            rng_seed: 3,
            ..DialogConfig::default()
        });
        let callee = net.add("bob", addr(CALLEE), Endpoint::new(Default::default()), DialogUa::new(dialogs));
        assert!(net.run_until(Duration::from_secs(5), |n| n.app(callee).incoming().is_some()), "the INVITE arrives");
        let mut w = World { net, phone, callee, phone_media: addr("0.0.0.0:0"), seq: 0 };
        let id = w.incoming();
        let offer = w.net.app(w.callee).ua.dialogs_ref().get(&id).and_then(|d| d.remote_sdp().cloned()).expect("an offer");
        w.phone_media = audio_addr(&offer);
        w
    }

    fn incoming(&self) -> DialogId {
        self.net.app(self.callee).incoming().expect("incoming")
    }

    fn callee_command(&mut self, f: impl FnOnce(&mut Dialogs, &DialogId, Instant)) {
        let id = self.incoming();
        self.net.with(self.callee, |p, io, now| {
            f(p.dialogs(), &id, now);
            p.flush(io, now);
        });
    }

    /// `secs` of a `hz` tone from the callee's media address, 20 ms apart in virtual time.
    fn play(&mut self, hz: f64, secs: f64) {
        let mut tone = ToneGenerator::new(hz, 16_384);
        for _ in 0..(secs * 50.0) as u32 {
            self.seq = self.seq.wrapping_add(1);
            let payload = Codec::Pcmu.encode(&tone.next_frame());
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&self.seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(self.seq) * 160).to_be_bytes());
            p.extend_from_slice(&0x0e0e_0e0eu32.to_be_bytes());
            p.extend_from_slice(&payload);
            self.net.inject(addr(CALLEE_MEDIA), self.phone_media, Bytes::from(p));
            self.net.run_for(Duration::from_millis(20));
        }
    }

    /// Datagrams the phone sent to the callee's media address so far.
    fn sent_to_callee(&self) -> usize {
        self.net.media(self.phone).sent.iter().filter(|(_, d)| *d == addr(CALLEE_MEDIA)).count()
    }
}

fn sdp() -> Bytes {
    Bytes::from_static(
        b"v=0\r\no=- 7 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    )
}

fn audio_addr(body: &[u8]) -> SocketAddr {
    let text = String::from_utf8_lossy(body);
    let ip = text.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).expect("c= line");
    let port = text.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|m| m.split(' ').next()).expect("m= line");
    format!("{ip}:{port}").parse().expect("address")
}

#[test]
fn early_media_is_played_and_recorded_and_reported() {
    let mut w = World::new();
    assert_eq!(w.sent_to_callee(), 0);
    w.callee_command(|d, id, now| d.progress(id, 183, Some(sdp()), now).expect("183"));
    w.play(600.0, 2.0);
    assert!(w.sent_to_callee() > 50, "the phone sends its audio during early media: {}", w.sent_to_callee());
    // The callee rings on silently for longer than the phone's RTP timeout: still ringing.
    w.net.run_for(Duration::from_secs(5));
    assert!(w.net.app(w.phone).reports.is_empty(), "a silent early-media callee is not hung up: {:?}", w.net.app(w.phone).reports);
    w.callee_command(|d, id, now| d.accept(id, Some(sdp()), now).expect("200"));
    w.play(1000.0, 2.0);
    let callee_id = w.net.app(w.callee).established().expect("the call is up");
    w.net.with(w.callee, |p, io, now| {
        p.dialogs().send_bye(&callee_id, now).expect("BYE");
        p.flush(io, now);
    });
    assert!(w.net.run_until(Duration::from_secs(5), |n| !n.app(w.phone).reports.is_empty()), "the call ends");
    let r = &w.net.app(w.phone).reports[0];
    assert_eq!((r.state, r.reason.as_str(), r.early_media), (EndState::Completed, "bye-remote", true), "{r:?}");
    assert!(r.responses.contains(&183), "{:?}", r.responses);
    let early = analyse(&r.recording[..12_000], 8000);
    assert!(early.dominant.is_some_and(|f| (f - 600.0).abs() < 15.0), "the recording starts with the early tone: {early:?}");
    let late = analyse(&r.recording[r.recording.len() - 12_000..], 8000);
    assert!(late.dominant.is_some_and(|f| (f - 1000.0).abs() < 15.0), "and ends with the answered call's: {late:?}");
}

#[test]
fn an_answered_call_after_early_media_still_times_out_on_silence() {
    let mut w = World::new();
    w.callee_command(|d, id, now| d.progress(id, 183, Some(sdp()), now).expect("183"));
    w.play(600.0, 1.0);
    w.net.run_for(Duration::from_secs(5));
    w.callee_command(|d, id, now| d.accept(id, Some(sdp()), now).expect("200"));
    assert!(w.net.run_until(Duration::from_secs(10), |n| !n.app(w.phone).reports.is_empty()), "the phone hangs up");
    let r = &w.net.app(w.phone).reports[0];
    assert_eq!((r.reason.as_str(), r.early_media), ("rtp-timeout", true), "{r:?}");
    let answered = r.duration.expect("answered");
    assert!(answered >= Duration::from_secs(2), "a whole timeout after the answer: {answered:?}");
}

#[test]
fn a_call_without_early_media_says_so() {
    let mut w = World::new();
    w.callee_command(|d, id, now| d.ring(id, now).expect("180"));
    w.net.run_for(Duration::from_secs(1));
    assert_eq!(w.sent_to_callee(), 0, "no media before the answer without early media");
    w.callee_command(|d, id, now| d.reject(id, 486, now).expect("486"));
    assert!(w.net.run_until(Duration::from_secs(5), |n| !n.app(w.phone).reports.is_empty()), "the call ends");
    let r = &w.net.app(w.phone).reports[0];
    assert_eq!((r.state, r.early_media), (EndState::Rejected, false), "{r:?}");
}
