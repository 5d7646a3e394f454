//! A bare SIP client on one loopback address, for the security tests: builds REGISTER, INVITE and
//! OPTIONS requests, retransmits them every 500 ms until a final response, answers digest
//! challenges; and `start`, the real service with user alice on a fresh data directory.
#![allow(dead_code)]

use super::procs::{self, Proc, TempDir};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::auth::DigestClient;
use switchboard::message::{HeaderName, Message, Method};

pub const SB: &str = env!("CARGO_BIN_EXE_switchboard");
pub const LIMIT: Duration = Duration::from_secs(15);

/// `switchboard users add NAME --password PASSWORD` in `dir`.
pub fn add_user(dir: &TempDir, name: &str, password: &str) {
    let ok = Command::new(SB)
        .args(["users", "--data"])
        .arg(dir.path())
        .args(["add", name, "--password", password])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("users add");
    assert!(ok.success());
}

/// The service on 127.0.0.1 with user alice (password `alice-secret`) and `extra` flags.
pub fn start(dir: &TempDir, extra: &[&str]) -> (Proc, SocketAddr) {
    add_user(dir, "alice", "alice-secret");
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(dir.path()).args(extra);
    let (proc, port) = procs::spawn_service(&mut cmd, LIMIT);
    (proc, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A bare SIP client on one loopback address.
pub struct Phone {
    pub socket: UdpSocket,
    service: SocketAddr,
    n: u32,
}

impl Phone {
    pub fn new(ip: &str, service: SocketAddr) -> Phone {
        let socket = UdpSocket::bind((ip, 0)).expect("bind");
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        Phone { socket, service, n: 0 }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local address")
    }

    /// A REGISTER (or INVITE) for `user`, with `auth` credentials if given.
    pub fn request(&mut self, method: Method, user: &str, auth: Option<(HeaderName, String)>) -> Message {
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

    pub fn send(&self, m: &Message) {
        self.socket.send_to(m.as_bytes(), self.service).expect("send");
    }

    /// Sends `m` (again every 500 ms, as over UDP) until its final response comes.
    pub fn transact(&self, m: &Message) -> Message {
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
    pub fn credentials(&self, req: &Message, challenge: &Message, user: &str, password: &str) -> (HeaderName, String) {
        let mut client = DigestClient::new(user, password);
        client.handle_challenge(req, challenge).expect("answerable challenge");
        let uri = req.request_uri_str().expect("uri").to_owned();
        client.authorization(req.method().expect("method").as_str(), &uri, "0a4f113b").expect("credentials")
    }

    /// Challenge, then answer it with `password`: the final status.
    pub fn register(&mut self, user: &str, password: &str) -> u16 {
        let req = self.request(Method::Register, user, None);
        let challenge = self.transact(&req);
        assert_eq!(challenge.status(), Some(401));
        let creds = self.credentials(&req, &challenge, user, password);
        let req = self.request(Method::Register, user, Some(creds));
        self.transact(&req).status().unwrap_or(0)
    }
}
