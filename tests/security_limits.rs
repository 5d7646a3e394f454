//! Flood and guessing limits, and no user enumeration (issue 14 points 2 and 4), against the real
//! `switchboard serve` on loopback sockets. The attacker sends from 127.0.0.2, the legitimate
//! phone from 127.0.0.1 (both are loopback on Linux), so "another source" is a real second address.
//!
//! - A password-guessing run against alice from 127.0.0.2 is cut off after 10 failures: from then
//!   on even her right password from that address gets 403, and each failure logged one WARN line
//!   in the fail2ban format; alice herself, from 127.0.0.1, still registers.
//! - A flood of OPTIONS from 127.0.0.2 is mostly dropped unanswered (one `rate limit:` line for the
//!   source), while alice registers from 127.0.0.1 in the middle of it.
//! - An existing and an unknown user get answers of the same status and header shape, with and
//!   without (wrong) credentials, for REGISTER and INVITE.

#[path = "common/procs.rs"]
mod procs;

use procs::{Proc, Stream, TempDir};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::auth::DigestClient;
use switchboard::message::{HeaderName, Message, Method};

const SB: &str = env!("CARGO_BIN_EXE_switchboard");
const LIMIT: Duration = Duration::from_secs(15);
const ATTACKER: &str = "127.0.0.2";

fn start(dir: &TempDir, extra: &[&str]) -> (Proc, SocketAddr) {
    let ok = Command::new(SB)
        .args(["users", "--data"])
        .arg(dir.path())
        .args(["add", "alice", "--password", "alice-secret"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("users add");
    assert!(ok.success());
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(dir.path()).args(extra);
    let (proc, port) = procs::spawn_service(&mut cmd, LIMIT);
    (proc, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A bare SIP client on one loopback address.
struct Phone {
    socket: UdpSocket,
    service: SocketAddr,
    n: u32,
}

impl Phone {
    fn new(ip: &str, service: SocketAddr) -> Phone {
        let socket = UdpSocket::bind((ip, 0)).expect("bind");
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        Phone { socket, service, n: 0 }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    /// A REGISTER (or INVITE) for `user`, with `auth` credentials if given.
    fn request(&mut self, method: Method, user: &str, auth: Option<(HeaderName, String)>) -> Message {
        self.n += 1;
        let (n, me) = (self.n, self.addr());
        let uri = if method == Method::Register { format!("sip:{}", self.service) } else { format!("sip:bob@{}", self.service) };
        let mut b = Message::request(method.clone(), &uri)
            .header(HeaderName::Via, format!("SIP/2.0/UDP {me};rport;branch=z9hG4bKsec{n}x{}", me.port()))
            .header(HeaderName::MaxForwards, "70")
            .header(HeaderName::From, format!("<sip:{user}@{}>;tag=t{n}", self.service.ip()))
            .header(HeaderName::To, format!("<sip:{}@{}>", if method == Method::Register { user } else { "bob" }, self.service.ip()))
            .header(HeaderName::CallId, format!("sec-{user}-{}@{}", me.port(), me.ip()))
            .header(HeaderName::CSeq, format!("{n} {}", method.as_str()))
            .header(HeaderName::Contact, format!("<sip:{user}@{me}>"));
        if let Some((name, value)) = auth {
            b.push(name, value);
        }
        b.finish()
    }

    fn send(&self, m: &Message) {
        self.socket.send_to(m.as_bytes(), self.service).expect("send");
    }

    /// Sends `m` (again every 500 ms, as over UDP) until its final response comes.
    fn transact(&self, m: &Message) -> Message {
        let cseq = String::from_utf8_lossy(m.header(HeaderName::CSeq).expect("cseq")).into_owned();
        let deadline = Instant::now() + LIMIT;
        let mut buf = [0u8; 65536];
        while Instant::now() < deadline {
            self.send(m);
            let resend = Instant::now() + Duration::from_millis(500);
            while Instant::now() < resend {
                let Ok(n) = self.socket.recv(&mut buf) else { continue };
                let Ok(r) = Message::parse(bytes::Bytes::copy_from_slice(&buf[..n])) else { continue };
                let same = r.header(HeaderName::CSeq).is_some_and(|c| String::from_utf8_lossy(c) == cseq);
                if same && r.status().is_some_and(|s| s >= 200) {
                    return r;
                }
            }
        }
        panic!("no final response to {cseq}");
    }

    /// Credentials for `user`/`password` answering `challenge` to `req`.
    fn credentials(&self, req: &Message, challenge: &Message, user: &str, password: &str) -> (HeaderName, String) {
        let mut client = DigestClient::new(user, password);
        client.handle_challenge(req, challenge).expect("answerable challenge");
        let uri = req.request_uri_str().expect("uri").to_owned();
        client.authorization(req.method().expect("method").as_str(), &uri, "0a4f113b").expect("credentials")
    }

    /// Challenge, then answer it with `password`: the final status.
    fn register(&mut self, user: &str, password: &str) -> u16 {
        let req = self.request(Method::Register, user, None);
        let challenge = self.transact(&req);
        assert_eq!(challenge.status(), Some(401));
        let creds = self.credentials(&req, &challenge, user, password);
        let req = self.request(Method::Register, user, Some(creds));
        self.transact(&req).status().unwrap_or(0)
    }
}

fn stderr_lines_with(svc: &Proc, needle: &str) -> Vec<String> {
    svc.lines(Stream::Stderr).into_iter().filter(|l| l.contains(needle)).collect()
}

/// The lines with `needle` once there are at least `n` (the log is read on another thread), or
/// what there is at the deadline.
fn wait_lines(svc: &Proc, needle: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let lines = stderr_lines_with(svc, needle);
        if lines.len() >= n || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn password_guessing_is_cut_off_while_the_user_registers_from_elsewhere() {
    let dir = TempDir::new("sec-guess");
    // The limit is off so only the guessing limit is at work here.
    let (svc, service) = start(&dir, &["--rate-limit", "0"]);
    let mut attacker = Phone::new(ATTACKER, service);
    // svcrack style: one challenge, then guess after guess on its nonce.
    let req = attacker.request(Method::Register, "alice", None);
    let challenge = attacker.transact(&req);
    assert_eq!(challenge.status(), Some(401));
    for i in 0..10 {
        let creds = attacker.credentials(&req, &challenge, "alice", &format!("guess{i}"));
        let guess = attacker.request(Method::Register, "alice", Some(creds));
        assert_eq!(attacker.transact(&guess).status(), Some(403), "guess {i}");
    }
    // Cut off: the right password from the attacker's address is refused unchecked.
    let creds = attacker.credentials(&req, &challenge, "alice", "alice-secret");
    let right = attacker.request(Method::Register, "alice", Some(creds));
    assert_eq!(attacker.transact(&right).status(), Some(403), "blocked before checking\n{}", svc.transcript());
    // Alice at her own address is not locked out (never per user alone).
    let mut alice = Phone::new("127.0.0.1", service);
    assert_eq!(alice.register("alice", "alice-secret"), 200, "{}", svc.transcript());

    let failed = wait_lines(&svc, "auth failed: src=127.0.0.2:", 10);
    assert_eq!(failed.len(), 10, "one WARN line per checked failure: {failed:#?}");
    assert!(failed.iter().all(|l| l.contains("WARN") && l.contains(" user=alice realm=switchboard reason=wrong-password")), "{failed:#?}");
    assert_eq!(wait_lines(&svc, "auth blocked: src=127.0.0.2", 1).len(), 1, "{}", svc.transcript());
}

#[test]
fn a_flood_from_one_source_is_dropped_while_another_registers() {
    let dir = TempDir::new("sec-flood");
    // A low limit (50/s, burst 100) so the flood is many times the limit on any machine.
    let (svc, service) = start(&dir, &["--rate-limit", "50"]);
    let mut flooder = Phone::new(ATTACKER, service);
    let sent = 2_000u32;
    let mut answered = 0u32;
    let mut buf = [0u8; 65536];
    flooder.socket.set_nonblocking(true).expect("nonblocking");
    let mut alice = Phone::new("127.0.0.1", service);
    for i in 0..sent {
        let m = flooder.request(Method::Options, "flood", None);
        flooder.send(&m);
        while flooder.socket.recv(&mut buf).is_ok() {
            answered += 1;
        }
        if i == sent / 2 {
            // In the middle of the flood, alice registers from her own address.
            assert_eq!(alice.register("alice", "alice-secret"), 200, "{}", svc.transcript());
        }
    }
    flooder.socket.set_nonblocking(false).expect("blocking");
    while flooder.socket.recv(&mut buf).is_ok() {
        answered += 1;
    }
    svc.wait_line("rate limit: src=127.0.0.2 dropped=", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    assert!(answered < sent / 2, "most of the flood is dropped: {answered} of {sent} answered");
    assert_eq!(stderr_lines_with(&svc, "rate limit: src=127.0.0.2").len(), 1, "one line per source per minute");
    assert!(stderr_lines_with(&svc, "rate limit: src=127.0.0.1").is_empty());
    eprintln!("flood: {sent} OPTIONS sent, {answered} answered");
}

/// Status, header names in order, and the parameter names of challenges: what a scanner compares.
fn shape(m: &Message) -> (Option<u16>, Vec<u8>, Vec<String>) {
    let names = m
        .headers()
        .map(|h| {
            let name = String::from_utf8_lossy(h.raw_name).to_ascii_lowercase();
            if matches!(h.name, HeaderName::WwwAuthenticate | HeaderName::ProxyAuthenticate) {
                let v = String::from_utf8_lossy(h.value);
                let params: Vec<&str> = v.split(',').map(|p| p.split('=').next().unwrap_or("").trim()).collect();
                format!("{name}: {}", params.join(","))
            } else {
                name
            }
        })
        .collect();
    (m.status(), m.reason().unwrap_or_default().to_vec(), names)
}

#[test]
fn existing_and_unknown_users_are_answered_alike() {
    let dir = TempDir::new("sec-enum");
    let (svc, service) = start(&dir, &[]);
    let mut answers = Vec::new();
    for user in ["alice", "nobody"] {
        let mut p = Phone::new(ATTACKER, service);
        let mut seen = Vec::new();
        for method in [Method::Register, Method::Invite] {
            let req = p.request(method.clone(), user, None);
            let challenge = p.transact(&req);
            let creds = p.credentials(&req, &challenge, user, "not-the-password");
            let retry = p.request(method, user, Some(creds));
            let wrong = p.transact(&retry);
            seen.push((shape(&challenge), shape(&wrong)));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0][0].0 .0, Some(401));
    assert_eq!(answers[0][1].0 .0, Some(407));
    assert_eq!(answers[0][0].1 .0, Some(403));
    assert_eq!(answers[0], answers[1], "alice and nobody look the same");
    // The log tells the operator which it was; the wire does not.
    assert_eq!(wait_lines(&svc, "user=nobody realm=switchboard reason=unknown-user", 2).len(), 2, "{}", svc.transcript());
    // And alice still registers.
    assert_eq!(Phone::new("127.0.0.1", service).register("alice", "alice-secret"), 200);
}
