//! Issue 14 point 11, live users and one realm, on real sockets with the real binary.
//!
//! - `users add` while the service runs: the new user registers at once (polled REGISTER with a
//!   deadline; the elapsed time is printed, not asserted).
//! - `users remove carol`: carol's binding is gone and her REGISTER is refused, while alice still
//!   registers.
//! - `users passwd alice`: the old password is refused, the new one accepted.
//! - `serve --domain` with users of another realm refuses to start with a one-line error naming
//!   both realms and a non-zero exit; `--realm` names the users' realm and they log in (also the
//!   softphone with `--domain`/`--realm`; with a wrong `--realm` it does not answer the challenge);
//!   `users add` with no `--domain` next to a running service takes the service's realm.
//!
//! The phones are hand-made REGISTERs on a UDP socket answering 401 challenges with the library's
//! `DigestClient`.

#[path = "common/procs.rs"]
mod procs;

use bytes::Bytes;
use procs::{Proc, TempDir};
use std::io::Write;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use switchboard::auth::DigestClient;
use switchboard::message::Message;

const SB: &str = env!("CARGO_BIN_EXE_switchboard");

/// `switchboard users --data DIR ARGS...` with `stdin` as its input.
fn users(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(SB)
        .args(["users", "--data"])
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("users");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    child.wait_with_output().expect("users")
}

fn users_ok(data: &Path, args: &[&str], stdin: &str) -> String {
    let out = users(data, args, stdin);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "users {args:?}: {text}");
    text
}

fn add(data: &Path, user: &str, extra: &[&str]) -> String {
    let mut args = vec!["add", user, "--password-stdin"];
    args.extend_from_slice(extra);
    users_ok(data, &args, &format!("{user}-secret\n"))
}

fn serve(data: &Path, extra: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--rtp-ports", "53300-53399", "--data"]).arg(data).args(extra);
    procs::spawn_service(&mut cmd, Duration::from_secs(15))
}

/// A phone: one UDP socket, REGISTERing as one user.
struct Phone {
    sock: UdpSocket,
    user: String,
    domain: String,
    port: u16,
    cseq: u32,
}

impl Phone {
    fn new(user: &str, domain: &str, port: u16) -> Phone {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(250))).expect("timeout");
        Phone { sock, user: user.into(), domain: domain.into(), port, cseq: 0 }
    }

    fn request(&mut self, auth: Option<(String, String)>) -> Message {
        self.cseq += 1;
        let local = self.sock.local_addr().expect("addr");
        let (u, d) = (&self.user, &self.domain);
        let mut s = format!(
            "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{}x{}\r\nMax-Forwards: 70\r\n\
             From: <sip:{u}@{d}>;tag=t{}\r\nTo: <sip:{u}@{d}>\r\nCall-ID: reg-{u}-{}@127.0.0.1\r\nCSeq: {} REGISTER\r\n\
             Contact: <sip:{u}@{local}>\r\nExpires: 300\r\n",
            self.cseq,
            local.port(),
            local.port(),
            local.port(),
            self.cseq
        );
        if let Some((name, value)) = auth {
            s.push_str(&format!("{name}: {value}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(Bytes::from(s)).expect("REGISTER parses")
    }

    /// Sends `req` (again every 500 ms) until a final response comes.
    fn exchange(&self, req: &Message) -> Message {
        self.final_within(req, Duration::from_secs(10)).unwrap_or_else(|| panic!("no final response to {} for {}", self.cseq, self.user))
    }

    /// An INVITE to `to` (a user of our domain), answering one 407 with `password`: the final
    /// status, or `None` while the call is still proceeding after `wait` (it was routed). A
    /// refusal is awaited generously; a routed call is only watched for `wait`, as the service
    /// itself ends it with 408 after a while (the callee here never answers).
    fn invite(&mut self, to: &str, password: &str, wait: Duration) -> Option<u16> {
        let uri = format!("sip:{to}@{}", self.domain);
        let build = |me: &mut Phone, auth: Option<(String, String)>| {
            let text = String::from_utf8_lossy(me.request(auth).as_bytes()).into_owned();
            let local = me.sock.local_addr().expect("addr");
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n",
                local.port() + 2
            );
            let text = text
                .replacen(&format!("REGISTER sip:{} ", me.domain), &format!("INVITE {uri} "), 1)
                .replace(" REGISTER\r\n", " INVITE\r\n")
                .replacen(&format!("To: <sip:{}@{}>", me.user, me.domain), &format!("To: <{uri}>"), 1)
                .replace("Expires: 300\r\n", "Content-Type: application/sdp\r\n")
                .replace("Content-Length: 0\r\n\r\n", &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
            Message::parse(Bytes::from(text)).expect("INVITE parses")
        };
        let first = build(self, None);
        // Generous: a loaded CI machine may take seconds to answer; a 407 always comes.
        let resp = self.final_within(&first, Duration::from_secs(10))?;
        if resp.status() != Some(407) {
            return resp.status();
        }
        let mut client = DigestClient::new(self.user.clone(), password);
        if client.handle_challenge(&first, &resp).is_err() {
            return Some(407);
        }
        let auth = client.authorization("INVITE", &uri, &format!("i{}", self.cseq)).map(|(h, v)| (h.as_str().to_owned(), v));
        let second = build(self, auth);
        self.final_within(&second, wait).and_then(|r| r.status())
    }

    /// Whether an INVITE reaches this phone's socket within `limit`.
    fn rung_within(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                if buf[..n].starts_with(b"INVITE ") {
                    return true;
                }
            }
        }
        false
    }

    /// [`Phone::exchange`] with a deadline: `None` when no final response came within `limit`.
    fn final_within(&self, req: &Message, limit: Duration) -> Option<Message> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        let mut next_send = Instant::now();
        while Instant::now() < deadline {
            if Instant::now() >= next_send {
                self.sock.send_to(req.as_bytes(), ("127.0.0.1", self.port)).expect("send");
                next_send = Instant::now() + Duration::from_millis(500);
            }
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else { continue };
            let Ok(resp) = Message::parse(Bytes::copy_from_slice(&buf[..n])) else { continue };
            let ours = resp.cseq().ok().is_some_and(|c| c.seq == self.cseq);
            if ours && resp.status().is_some_and(|s| s >= 200) {
                return Some(resp);
            }
        }
        None
    }

    /// One REGISTER with `password`, answering one 401: the final status.
    fn register(&mut self, password: &str) -> u16 {
        let first = self.request(None);
        let resp = self.exchange(&first);
        if resp.status() != Some(401) {
            return resp.status().unwrap_or(0);
        }
        let mut client = DigestClient::new(self.user.clone(), password);
        if client.handle_challenge(&first, &resp).is_err() {
            return 401;
        }
        let uri = format!("sip:{}", self.domain);
        let auth = client.authorization("REGISTER", &uri, &format!("c{}", self.cseq)).map(|(h, v)| (h.as_str().to_owned(), v));
        let second = self.request(auth);
        self.exchange(&second).status().unwrap_or(0)
    }

    /// Polls [`Phone::register`] until it gets `want` (or `limit` passes); the time it took.
    fn register_until(&mut self, password: &str, want: u16, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let got = self.register(password);
            if got == want {
                return t0.elapsed();
            }
            assert!(t0.elapsed() < limit, "{} got {got}, not {want}, for {limit:?}", self.user);
        }
    }
}

/// The AORs with a live binding in the store.
fn registered(data: &Path) -> String {
    let out = Command::new(SB).args(["registrations", "--data"]).arg(data).output().expect("registrations");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn users_added_removed_and_changed_while_serving() {
    let tmp = TempDir::new("users-live");
    let data = tmp.join("data");
    add(&data, "alice", &[]);
    add(&data, "carol", &[]);
    let (mut svc, port) = serve(&data, &[]);
    let host = format!("127.0.0.1:{port}");
    let mut alice = Phone::new("alice", &host, port);
    let mut carol = Phone::new("carol", &host, port);
    assert_eq!(alice.register("alice-secret"), 200);
    assert_eq!(carol.register("carol-secret"), 200);

    // A new user on the running service.
    let mut dave = Phone::new("dave", &host, port);
    assert_ne!(dave.register("dave-secret"), 200, "dave is not a user yet");
    let said = add(&data, "dave", &[]);
    assert!(said.contains("the running service has it now"), "{said}");
    let took = dave.register_until("dave-secret", 200, Duration::from_secs(15));
    eprintln!("dave registered {took:?} after `users add` returned");

    // carol removed: her binding goes, her REGISTER is refused; alice is untouched. The store
    // writer commits in groups (10 ms window), so her binding reaches the file shortly after the 200.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !registered(&data).contains("sip:carol@") {
        assert!(Instant::now() < deadline, "carol's binding never reached the store");
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = users_ok(&data, &["remove", "carol"], "");
    assert!(said.contains("the running service has it now"), "{said}");
    assert_ne!(carol.register("carol-secret"), 200, "a removed user cannot register");
    let deadline = Instant::now() + Duration::from_secs(15);
    while registered(&data).contains("sip:carol@") {
        assert!(Instant::now() < deadline, "carol's binding still stored:\n{}", registered(&data));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(alice.register("alice-secret"), 200, "alice still registers");
    // ... and she can no longer call: her authenticated INVITE is challenged again, alice's phone
    // never rings; the new user dave's call to alice does ring it.
    let refused = carol.invite("alice", "carol-secret", Duration::from_secs(10));
    assert!(matches!(refused, Some(401 | 403 | 407)), "carol's INVITE got {refused:?}");
    assert!(!alice.rung_within(Duration::from_secs(1)), "a removed user's call reached alice");
    // Short: `None` (still proceeding) is the expected outcome, and a refusal comes at once.
    let routed = dave.invite("alice", "dave-secret", Duration::from_secs(3));
    assert!(routed.is_none_or(|s| s < 400), "dave's call got {routed:?}");
    assert!(alice.rung_within(Duration::from_secs(15)), "dave's call never reached alice");

    // A new password for alice: the old one stops working at once.
    users_ok(&data, &["passwd", "alice", "--password-stdin"], "alice-new\n");
    assert_ne!(alice.register("alice-secret"), 200, "the old password is refused");
    assert_eq!(alice.register("alice-new"), 200, "the new password works");
    // passwd of an unknown user is an error that names them.
    let out = users(&data, &["passwd", "nobody", "--password-stdin"], "x\n");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no user nobody"));
    svc.terminate(Duration::from_secs(10));

    // After a restart the store says the same.
    let (mut svc, port) = serve(&data, &[]);
    let host = format!("127.0.0.1:{port}");
    assert_eq!(Phone::new("alice", &host, port).register("alice-new"), 200);
    assert_eq!(Phone::new("dave", &host, port).register("dave-secret"), 200);
    assert_ne!(Phone::new("carol", &host, port).register("carol-secret"), 200);
    svc.terminate(Duration::from_secs(10));
}

#[test]
fn a_domain_that_is_not_the_users_realm_refuses_to_start_unless_realm_says_which() {
    let tmp = TempDir::new("users-realm");
    let data = tmp.join("data");
    // Added with no service and no --domain: realm `switchboard`.
    let said = add(&data, "alice", &[]);
    assert!(said.contains("realm switchboard"), "{said}");

    let mut refused = Proc::spawn(
        "serve --domain pbx.test",
        Command::new(SB).args(["serve", "--listen", "127.0.0.1:0", "--domain", "pbx.test", "--data"]).arg(&data),
    );
    let status = refused.expect_exit(Duration::from_secs(15));
    assert!(!status.success(), "must not start:\n{}", refused.transcript());
    let err = refused.lines(procs::Stream::Stderr);
    let line = err.iter().find(|l| l.contains("realm")).unwrap_or_else(|| panic!("no realm error:\n{}", refused.transcript()));
    assert!(line.contains("switchboard") && line.contains("pbx.test") && line.contains("--realm"), "{line}");
    assert!(refused.lines(procs::Stream::Stdout).iter().all(|l| !l.contains("listening")), "it never listened");

    // --realm names the users' realm: they log in under the domain.
    let (mut svc, port) = serve(&data, &["--domain", "pbx.test", "--realm", "switchboard"]);
    assert_eq!(Phone::new("alice", "pbx.test", port).register("alice-secret"), 200);
    // `users add` with no --domain next to this service takes its realm.
    let said = add(&data, "bob", &[]);
    assert!(said.contains("realm switchboard") && said.contains("the running service has it now"), "{said}");
    assert_eq!(Phone::new("bob", "pbx.test", port).register("bob-secret"), 200);
    // The softphone under the domain, answering only the service's realm; a wrong --realm
    // refuses to hand its credentials over.
    std::fs::write(tmp.join("bob.pw"), "bob-secret\n").expect("password file");
    let phone = |realm: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_softphone"));
        cmd.args(["--user", "bob", "--domain", "pbx.test", "--realm", realm, "--register", &format!("sip:127.0.0.1:{port}")])
            .arg("--password-file")
            .arg(tmp.join("bob.pw"))
            .args(["--rtp-ports", "53400-53449", "answer", "--calls", "1"]);
        Proc::spawn("softphone", &mut cmd)
    };
    let mut good = phone("switchboard");
    good.wait_line("registered aor=sip:bob@pbx.test", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    good.terminate(Duration::from_secs(5));
    let mut wrong = phone("elsewhere");
    wrong.wait_line("registration refused", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    wrong.terminate(Duration::from_secs(5));
    // An explicit other realm is refused before anything is written.
    let out = users(&data, &["add", "eve", "--domain", "other.test", "--password-stdin"], "eve-secret\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("challenges with realm switchboard, not other.test"));
    assert!(!users_ok(&data, &["list"], "").contains("eve"));
    svc.terminate(Duration::from_secs(10));

    // A fresh service for pbx.test: `users add` with no --domain gets realm pbx.test from it.
    let fresh = tmp.join("fresh");
    let (mut svc, port) = serve(&fresh, &["--domain", "pbx.test"]);
    let said = add(&fresh, "carol", &[]);
    assert!(said.contains("realm pbx.test"), "{said}");
    assert_eq!(Phone::new("carol", "pbx.test", port).register("carol-secret"), 200);
    svc.terminate(Duration::from_secs(10));
}
