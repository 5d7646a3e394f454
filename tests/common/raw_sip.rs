//! Hand-written SIP over plain UDP sockets, for tests that play an attacker (or a bare phone)
//! against a real `switchboard serve`: requests as wire text, and bounded waits for an answer.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A UDP socket on `ip` (any 127.0.0.0/8 address) with a short read timeout, for polling.
pub fn socket_on(ip: &str) -> UdpSocket {
    let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
    sock
}

/// A socket on 127.0.0.1.
pub fn socket() -> UdpSocket {
    socket_on("127.0.0.1")
}

/// Where `sock` is bound.
pub fn addr_of(sock: &UdpSocket) -> SocketAddr {
    sock.local_addr().expect("local addr")
}

/// Waits up to `limit` for a datagram whose first line starts with `start`, skipping others
/// (100 Trying, retransmissions); returns its text, or `None` at the deadline.
pub fn try_recv_starting(sock: &UdpSocket, start: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with(start) {
                return Some(text);
            }
        }
    }
    None
}

/// As [`try_recv_starting`], but a missing datagram fails the test.
pub fn recv_starting(sock: &UdpSocket, start: &str, limit: Duration) -> String {
    try_recv_starting(sock, start, limit).unwrap_or_else(|| panic!("no datagram starting with {start:?} within {limit:?}"))
}

/// The final response (status >= 200) to the request with Call-ID `call_id`, waiting up to
/// `limit`; provisional responses and other datagrams are skipped.
pub fn final_response(sock: &UdpSocket, call_id: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let needle = format!("Call-ID: {call_id}\r\n");
    while Instant::now() < deadline {
        if let Some(r) = try_recv_starting(sock, "SIP/2.0 ", deadline.saturating_duration_since(Instant::now())) {
            if r.contains(&needle) && !r.starts_with("SIP/2.0 1") {
                return r;
            }
        }
    }
    panic!("no final response for {call_id} within {limit:?}");
}

/// The status code of a response text.
pub fn status(response: &str) -> u16 {
    response.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The value of header `name` (as written by the service) in `msg`.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(str::trim))
}

/// A minimal PCMU offer for RTP at `media`.
pub fn sdp_offer(media: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = media.ip(),
        port = media.port()
    )
}

/// An out-of-dialog INVITE for `sip:user@service` from `sock`, with `body` as SDP (empty: none).
pub fn invite(sock: &UdpSocket, service: SocketAddr, user: &str, call_id: &str, body: &str) {
    let me = addr_of(sock);
    let content_type = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
    let msg = format!(
        "INVITE sip:{user}@{service} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\r\n\
         From: <sip:mallory@{ip}>;tag=t-{call_id}\r\nTo: <sip:{user}@{sip}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:mallory@{me}>\r\nMax-Forwards: 70\r\n{content_type}Content-Length: {len}\r\n\r\n{body}",
        ip = me.ip(),
        sip = service.ip(),
        len = body.len()
    );
    sock.send_to(msg.as_bytes(), service).expect("send INVITE");
}

/// A REGISTER of `user` with `contact` (no credentials: the service runs with `--no-auth`).
pub fn register(sock: &UdpSocket, service: SocketAddr, user: &str, contact: &str, call_id: &str, cseq: u32) {
    let me = addr_of(sock);
    let msg = format!(
        "REGISTER sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
         From: <sip:{user}@{sip}>;tag=r-{call_id}\r\nTo: <sip:{user}@{sip}>\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip = service.ip()
    );
    sock.send_to(msg.as_bytes(), service).expect("send REGISTER");
}
