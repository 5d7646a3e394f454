//! Issue 14 point 7 leftover: a phone that changed network hangs up from its new address. The
//! service challenges an in-dialog request from an address that is not the leg's known peer (407,
//! RFC 3261 §22.1), and the softphone must answer that 407 with its credentials for its BYE as it
//! does for the re-INVITE of the move.
//!
//! - Against the real service: alice moves one second into the call and hangs up two seconds
//!   later from her new address; the BYE ends both sides (bye_status 200, bob `bye-remote`).
//! - Against a peer that challenges every in-dialog request from the new address (as the service
//!   does before a move is proved; played here on a loopback socket with the library's
//!   `DigestServer`, so the 407 to the BYE is certain): the softphone answers the re-INVITE's
//!   and the BYE's 407 with valid credentials for `alice`, the peer verifies them, and the call
//!   ends with bye_status 200.
//!
//! Every wait is on an output line, a datagram or a process exit with a deadline.

#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use bytes::Bytes;
use procs::{Proc, Stream};
use serde_json::Value;
use service_cli::{users, PHONE, SB};
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard::auth::{ha1, DigestServer, Verdict};
use switchboard::message::{HeaderName, Message, Method};

fn summary(p: &Proc) -> Value {
    let line = p.lines(Stream::Stdout).into_iter().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("summary\n{}", p.transcript()));
    serde_json::from_str(&line).expect("summary JSON")
}

#[test]
fn a_moved_phone_hangs_up_from_its_new_address() {
    let dir = procs::TempDir::new("security-handover-bye");
    users(dir.path(), &["alice", "bob"]);
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", "36400-36419", "--rtp-learning-ms", "300", "--data"]).arg(dir.path());
    let (svc, port) = procs::spawn_service(&mut cmd, Duration::from_secs(15));
    let registrar = format!("sip:127.0.0.1:{port}");
    let mut bob_cmd = Command::new(PHONE);
    bob_cmd.args(["--user", "bob", "--register", &registrar, "--password-file"]).arg(dir.join("bob.pw")).args([
        "--summary",
        "json",
        "--rtp-ports",
        "36500-36549",
        "answer",
        "--calls",
        "1",
    ]);
    let mut bob = Proc::spawn("bob", &mut bob_cmd);
    bob.wait_line("registered aor=", Duration::from_secs(15)).expect("bob registered");
    let mut alice_cmd = Command::new(PHONE);
    alice_cmd
        .args(["--user", "alice", "--register", &registrar, "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--summary", "json", "--rtp-ports", "36600-36649"])
        .args(["dial", "sip:bob@127.0.0.1", "--duration", "3", "--move-after", "1", "--move-to", "127.0.0.5"]);
    let mut alice = Proc::spawn("alice", &mut alice_cmd);
    alice.wait_line("moved to a new address", Duration::from_secs(15)).expect("alice moved");
    svc.wait_line("phone moved", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}\n{}", alice.transcript()));

    let alice_status = alice.expect_exit(Duration::from_secs(20));
    let bob_status = bob.expect_exit(Duration::from_secs(20));
    let (a, b) = (summary(&alice), summary(&bob));
    assert!(alice_status.success() && bob_status.success(), "{}\n{}", alice.transcript(), bob.transcript());
    assert_eq!((a["reason"].as_str(), a["bye_status"].as_u64()), (Some("bye-local"), Some(200)), "{a:#}\n{}", alice.transcript());
    assert_eq!(b["reason"], "bye-remote", "{b:#}\n{}", bob.transcript());
}

/// What the challenging peer saw.
#[derive(Default, Debug)]
struct Seen {
    reinvites_challenged: u32,
    reinvites_authorized: u32,
    byes_challenged: u32,
    byes_authorized: u32,
    bye_from: Option<std::net::SocketAddr>,
}

#[test]
fn the_softphone_answers_a_407_to_its_bye_with_its_credentials() {
    let dir = procs::TempDir::new("security-bye-407");
    std::fs::write(dir.join("alice.pw"), "alice-secret\n").expect("password file");
    let peer = UdpSocket::bind("127.0.0.1:0").expect("peer socket");
    peer.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let me = peer.local_addr().expect("addr");
    let mut digest = DigestServer::new("switchboard", [7; 32], Duration::from_secs(300));
    let epoch = Instant::now();

    let mut cmd = Command::new(PHONE);
    cmd.args(["--user", "alice", "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--summary", "json", "--rtp-ports", "36700-36749"])
        .args(["dial", &format!("sip:bob@{me}"), "--duration", "3", "--move-after", "1", "--move-to", "127.0.0.5"]);
    let mut alice = Proc::spawn("alice", &mut cmd);

    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        me.port() + 2
    );
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.byes_authorized == 0 {
        assert!(Instant::now() < deadline, "no authorized BYE: {seen:?}\n{}", alice.transcript());
        let Ok((n, src)) = peer.recv_from(&mut buf) else { continue };
        let Ok(req) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else { continue };
        let Some(method) = req.method().cloned() else { continue };
        let in_dialog = req.to().is_ok_and(|t| t.tag().is_some());
        let verdict = digest
            .verify(&req, true, epoch.elapsed(), |user, alg| (user == "alice").then(|| ha1(alg, user, "switchboard", "alice-secret")));
        let answer = match (method, in_dialog, &verdict) {
            (Method::Invite, false, _) => {
                let mut b = req.response_to(200, "OK", Some("peer"));
                b.push(HeaderName::Contact, format_args!("<sip:bob@{me}>"));
                Some(b.body("application/sdp", sdp.as_bytes()))
            }
            (Method::Invite | Method::Bye, true, Verdict::Authorized { user }) => {
                assert_eq!(user, "alice");
                let mut b = req.response_to(200, "OK", None);
                if req.method() == Some(&Method::Invite) {
                    seen.reinvites_authorized += 1;
                    b.push(HeaderName::Contact, format_args!("<sip:bob@{me}>"));
                    Some(b.body("application/sdp", sdp.replace("o=- 1 1", "o=- 1 2").as_bytes()))
                } else {
                    seen.byes_authorized += 1;
                    seen.bye_from = Some(src);
                    Some(b.finish())
                }
            }
            (Method::Invite | Method::Bye, true, Verdict::Missing) => {
                if req.method() == Some(&Method::Invite) {
                    seen.reinvites_challenged += 1;
                } else {
                    seen.byes_challenged += 1;
                }
                digest.answer(&req, &verdict, true, epoch.elapsed(), None)
            }
            (Method::Invite | Method::Bye, true, other) => panic!("credentials refused: {other:?}\n{req}"),
            _ => None,
        };
        if let Some(a) = answer {
            peer.send_to(a.as_bytes(), src).expect("send");
        }
    }
    let status = alice.expect_exit(Duration::from_secs(20));
    let a = summary(&alice);
    assert!(status.success(), "{}", alice.transcript());
    assert_eq!((seen.reinvites_challenged, seen.byes_challenged), (1, 1), "{seen:?}");
    assert_eq!(seen.reinvites_authorized, 1, "{seen:?}");
    assert_eq!(seen.bye_from.map(|s| s.ip().to_string()), Some("127.0.0.5".to_owned()), "the BYE comes from the new address");
    assert_eq!((a["reason"].as_str(), a["bye_status"].as_u64()), (Some("bye-local"), Some(200)), "{a:#}\n{}", alice.transcript());
}
