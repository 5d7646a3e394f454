//! Issue 14 point 8, unpredictable identifiers, on real sockets against the real binary.
//!
//! The attack: the service used to draw tags, Call-IDs and branches from SplitMix64 seeded with its
//! start time. SplitMix64's output function is a bijection, so one To-tag seen on the wire gives the
//! generator's state and with it every later id. The test calls `echo` twice (the legitimate calls:
//! both answered 200 with SDP), inverts SplitMix64 on the first To-tag, and checks the second tag is
//! none of the next outputs that inversion predicts; it also checks two fresh services started in
//! the same instant do not mint the same ids.

#[path = "common/procs.rs"]
mod procs;

use bytes::Bytes;
use procs::TempDir;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};
use switchboard::message::Message;

const SB: &str = env!("CARGO_BIN_EXE_switchboard");

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unxorshift(y: u64, s: u32) -> u64 {
    let mut x = y;
    for _ in 0..64 / s + 1 {
        x = y ^ (x >> s);
    }
    x
}

/// The inverse of an odd number modulo 2^64 (Newton's iteration).
fn inverse(c: u64) -> u64 {
    let mut inv = c;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(inv)));
    }
    inv
}

/// The SplitMix64 state that printed `out`.
fn unmix(out: u64) -> u64 {
    let mut z = unxorshift(out, 31);
    z = unxorshift(z.wrapping_mul(inverse(0x94D0_49BB_1331_11EB)), 27);
    unxorshift(z.wrapping_mul(inverse(0xBF58_476D_1CE4_E5B9)), 30)
}

fn serve(dir: &TempDir, ports: &str) -> (procs::Proc, u16) {
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", ports, "--data"]).arg(dir.path());
    procs::spawn_service(&mut cmd, Duration::from_secs(15))
}

/// Sends an INVITE to echo and returns the To-tag of its 200 (then ACKs it).
fn echo_tag(sock: &UdpSocket, port: u16, n: u32) -> String {
    let local = sock.local_addr().expect("local addr");
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        local.port() + 2
    );
    let head = |method: &str, branch: &str, to_tag: &str| {
        format!(
            "{method} sip:echo@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:tester@127.0.0.1>;tag=t{n}\r\nTo: <sip:echo@127.0.0.1:{port}>{to_tag}\r\nCall-ID: ids-{n}@127.0.0.1\r\n\
             CSeq: 1 {method}\r\nContact: <sip:tester@{local}>\r\n"
        )
    };
    let invite =
        format!("{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", head("INVITE", &format!("inv{n}"), ""), sdp.len());
    sock.send_to(invite.as_bytes(), ("127.0.0.1", port)).expect("send INVITE");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        let Ok((len, _)) = sock.recv_from(&mut buf) else { continue };
        let Ok(resp) = Message::parse(Bytes::copy_from_slice(&buf[..len])) else { continue };
        if resp.status() != Some(200) {
            continue;
        }
        let tag = resp.to().expect("To").tag().expect("a To-tag on the 200").to_owned();
        let ack = format!("{}Content-Length: 0\r\n\r\n", head("ACK", &format!("ack{n}"), &format!(";tag={tag}")));
        sock.send_to(ack.as_bytes(), ("127.0.0.1", port)).expect("send ACK");
        return tag;
    }
    panic!("no 200 from echo for INVITE {n}");
}

#[test]
fn a_tag_on_the_wire_does_not_give_away_the_next_ids() {
    // The inversion itself is right: it recovers SplitMix64's state from one output.
    let state = 0x0123_4567_89ab_cdefu64;
    assert_eq!(unmix(mix(state)), state);

    let (dir_a, dir_b) = (TempDir::new("ids-a"), TempDir::new("ids-b"));
    let (_svc_a, port_a) = serve(&dir_a, "53000-53099");
    let (_svc_b, port_b) = serve(&dir_b, "53100-53199");
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");

    // The legitimate calls: echo answers each one.
    let first = echo_tag(&sock, port_a, 1);
    let second = echo_tag(&sock, port_a, 2);
    let other = echo_tag(&sock, port_b, 3);
    for t in [&first, &second, &other] {
        assert!(t.len() >= 16 && t.chars().all(|c| c.is_ascii_hexdigit()), "tag {t:?}: 64 random bits in hex");
    }
    assert_ne!(first, second);
    assert_ne!(first, other, "two services started together mint different ids");

    // The attack: recover the generator from the first tag and predict what follows it.
    let out = u64::from_str_radix(&first[..16], 16).expect("hex");
    let mut s = unmix(out);
    let predicted: Vec<String> = (0..64)
        .map(|_| {
            s = s.wrapping_add(GAMMA);
            format!("{:016x}", mix(s))
        })
        .collect();
    assert!(!predicted.contains(&second), "the second tag {second} was predictable from the first {first}");
}
