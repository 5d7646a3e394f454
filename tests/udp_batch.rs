//! Batched SIP datagrams (issue 16 point 2) on real loopback sockets: the transport takes a queue
//! of datagrams in batches (one `recvmmsg` on Linux) and sends a batch of transmits (one
//! `sendmmsg`), keeping every byte, order and source; a destination the socket cannot reach fails
//! alone. And the real service answers a burst of 500 OPTIONS sent at once, every one of them.

#[path = "common/phone.rs"]
mod phone;
#[path = "common/procs.rs"]
mod procs;

use bytes::Bytes;
use procs::TempDir;
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use switchboard::message::{HeaderName, Message};
use switchboard::transport::udp::{UdpTransport, BATCH, MAX_DATAGRAM};
use switchboard::transport::Transmit;

/// A client socket with room for a burst of answers (the default 208 KiB holds a few hundred).
fn roomy_socket() -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP)).expect("socket");
    s.set_recv_buffer_size(4 << 20).expect("rcvbuf");
    s.set_send_buffer_size(4 << 20).expect("sndbuf");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    s
}

fn payload(i: usize) -> Vec<u8> {
    // Sizes from a few bytes to the largest datagram UDP over IPv4 carries.
    let len = match i {
        7 => 65_507,
        _ => 20 + (i * 37) % 1400,
    };
    (0..len).map(|k| (i + k) as u8).collect()
}

#[tokio::test]
async fn queued_datagrams_come_in_batches_with_their_bytes_and_sources() {
    let mut t = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
    let peer = roomy_socket();
    const N: usize = 100;
    for i in 0..N {
        peer.send_to(&payload(i), t.local_addr()).expect("send");
    }
    // Loopback delivers on send: all N are queued, so the first receive takes a full batch.
    let mut got: Vec<(Bytes, SocketAddr)> = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(10), t.recv_batch(&mut got)).await.expect("in time").expect("recv");
    assert_eq!(first, BATCH.min(N), "one receive takes a whole batch of queued datagrams");
    while got.len() < N {
        let n = tokio::time::timeout(Duration::from_secs(10), t.recv_batch(&mut got)).await.expect("in time").expect("recv");
        assert!(n > 0 && n <= BATCH);
    }
    assert_eq!(got.len(), N);
    for (i, (bytes, src)) in got.iter().enumerate() {
        assert_eq!(*src, peer.local_addr().unwrap(), "source of datagram {i}");
        assert_eq!(&bytes[..], &payload(i)[..], "bytes of datagram {i} (in order)");
        assert!(bytes.len() <= MAX_DATAGRAM);
    }
    // Nothing more is queued.
    assert_eq!(t.try_recv_batch(&mut got).expect("try"), 0);
}

#[tokio::test]
async fn a_batch_of_transmits_arrives_whole_and_an_unreachable_one_fails_alone() {
    let mut t = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
    let peer = roomy_socket();
    let to = peer.local_addr().unwrap();
    const N: usize = 3 * BATCH + 5;
    let mut batch: Vec<Transmit> = (0..N).map(|i| Transmit { dest: to, payload: Bytes::from(payload(i)) }).collect();
    // An IPv6 destination from an IPv4 socket: the kernel refuses this one datagram.
    batch.insert(40, Transmit { dest: "[::1]:9".parse().unwrap(), payload: Bytes::from_static(b"nowhere") });
    let mut failed = Vec::new();
    t.send_batch(&batch, |tr, e| failed.push((tr.dest, e.kind()))).await;
    assert_eq!(failed.len(), 1, "only the unreachable datagram fails: {failed:?}");
    assert_eq!(failed[0].0, "[::1]:9".parse::<SocketAddr>().unwrap());
    let mut buf = vec![0u8; 65_536];
    for i in 0..N {
        let (n, src) = peer.recv_from(&mut buf).expect("every datagram arrives");
        assert_eq!(src, t.local_addr());
        assert_eq!(&buf[..n], &payload(i)[..], "datagram {i} whole and in order");
    }
}

#[test]
fn a_burst_of_500_options_is_all_answered() {
    let dir = TempDir::new("udp-batch");
    // The burst comes from one address: the rate limit is off so every request is answered.
    let (svc, service) = phone::start(&dir, &["--rate-limit", "0"]);
    let client = roomy_socket();
    let me = client.local_addr().unwrap();
    const N: usize = 500;
    let options = |i: usize| {
        Message::request(switchboard::message::Method::Options, format!("sip:{service}"))
            .header(HeaderName::Via, format!("SIP/2.0/UDP {me};rport;branch=z9hG4bKburst{i}"))
            .header(HeaderName::MaxForwards, "70")
            .header(HeaderName::From, format!("<sip:probe@{}>;tag=b{i}", me.ip()))
            .header(HeaderName::To, format!("<sip:{service}>"))
            .header(HeaderName::CallId, format!("burst-{i}@{}", me.ip()))
            .header(HeaderName::CSeq, "1 OPTIONS")
            .finish()
    };
    let requests: Vec<Message> = (0..N).map(options).collect();
    // One burst: all 500 are sent before the first answer is read.
    for r in &requests {
        client.send_to(r.as_bytes(), service).expect("send");
    }
    let mut answered = BTreeSet::new();
    let mut retransmitted = 0;
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + phone::LIMIT;
    let mut quiet_since = Instant::now();
    while answered.len() < N && Instant::now() < deadline {
        match client.recv(&mut buf) {
            Ok(n) => {
                let Ok(m) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else { continue };
                assert_eq!(m.status(), Some(200), "answer: {m:?}");
                let call_id = String::from_utf8_lossy(m.header(HeaderName::CallId).expect("Call-ID")).into_owned();
                let i: usize = call_id.trim_start_matches("burst-").split('@').next().and_then(|s| s.parse().ok()).expect("ours");
                answered.insert(i);
                quiet_since = Instant::now();
            }
            // A datagram the kernel dropped on a busy machine is retransmitted as a UAC would
            // (Timer E), only after a quiet second; the count is printed.
            Err(_) if quiet_since.elapsed() > Duration::from_secs(1) => {
                for (_, r) in requests.iter().enumerate().filter(|(i, _)| !answered.contains(i)) {
                    client.send_to(r.as_bytes(), service).expect("resend");
                    retransmitted += 1;
                }
                quiet_since = Instant::now();
            }
            Err(_) => {}
        }
    }
    println!("{} of {N} answered, {retransmitted} retransmitted", answered.len());
    assert_eq!(answered.len(), N, "every OPTIONS of the burst is answered\n{}", svc.transcript());
}

/// A receive offers as many slots as the last one needed (4 at least, `BATCH` at most): after a
/// lone datagram, a queued burst comes in batches that double (4, 8, 16, 32), every byte and
/// order kept.
#[tokio::test]
async fn after_a_lone_datagram_a_burst_comes_in_doubling_batches() {
    let mut t = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
    let peer = roomy_socket();
    let mut got: Vec<(Bytes, SocketAddr)> = Vec::new();
    peer.send_to(b"lone", t.local_addr()).expect("send");
    let n = tokio::time::timeout(Duration::from_secs(10), t.recv_batch(&mut got)).await.expect("in time").expect("recv");
    assert_eq!(n, 1);
    const N: usize = 60;
    for i in 0..N {
        peer.send_to(&payload(i), t.local_addr()).expect("send");
    }
    let mut sizes = Vec::new();
    while got.len() < N + 1 {
        let n = tokio::time::timeout(Duration::from_secs(10), t.recv_batch(&mut got)).await.expect("in time").expect("recv");
        sizes.push(n);
    }
    assert_eq!(sizes, [4, 8, 16, 32], "batch sizes of a queued burst after a lone datagram");
    assert_eq!(&got[0].0[..], b"lone");
    for (i, (bytes, _)) in got[1..].iter().enumerate() {
        assert_eq!(&bytes[..], &payload(i)[..], "bytes of datagram {i} (in order)");
    }
    assert_eq!(t.try_recv_batch(&mut got).expect("try"), 0);
}

/// A receive that fills fewer slots than it offered has emptied the queue, and it clears the
/// socket's readiness without asking the kernel again; a datagram sent at any moment around that
/// (here from another thread, while the receiver reads) still wakes the next receive. 20,000
/// datagrams, at most 256 in flight (so the socket's buffer never drops one), all received, in
/// order.
#[tokio::test]
async fn datagrams_sent_while_partial_batches_are_read_all_arrive() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut t = UdpTransport::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind");
    let to = t.local_addr();
    const N: usize = 20_000;
    let received = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&received);
    let sender = std::thread::spawn(move || {
        let peer = roomy_socket();
        let give_up = Instant::now() + Duration::from_secs(60);
        for i in 0..N {
            while i - seen.load(Ordering::Acquire) >= 256 && Instant::now() < give_up {
                std::thread::yield_now();
            }
            peer.send_to(&(i as u32).to_be_bytes(), to).expect("send");
        }
    });
    let mut got: Vec<(Bytes, SocketAddr)> = Vec::new();
    while got.len() < N {
        let r = tokio::time::timeout(Duration::from_secs(10), t.recv_batch(&mut got)).await;
        r.unwrap_or_else(|_| panic!("stranded after {} datagrams: a sent datagram did not wake the receive", got.len())).expect("recv");
        received.store(got.len(), Ordering::Release);
    }
    sender.join().expect("sender");
    for (i, (bytes, _)) in got.iter().enumerate() {
        assert_eq!(&bytes[..], &(i as u32).to_be_bytes(), "datagram {i} (in order)");
    }
}
