//! Static routes (`[[route]]`, issue 7) end to end through `switchboard serve`:
//! - sipp calls `sip:1234@service` 20 times; a `1*` route sends them to a sipp UAS standing in for a
//!   trunk, and every call completes through the service's record-routing proxy;
//! - precedence, seen on plain UDP sockets: a registered user's phone wins over a `*` route, an
//!   `override` route wins over the registration (and `rewrite_host` rewrites the Request-URI), an
//!   unregistered user follows the `*` route with the Request-URI kept;
//! - with authentication on, a routed INVITE without credentials gets 407 like any call, and once
//!   it carries them, our realm's Proxy-Authorization stays with us while another realm's goes on;
//! - a bad route target stops `serve` at start-up with a one-line error and a non-zero exit.
//!
//! Everything runs on 127.0.0.1 with ephemeral ports and private temp dirs; every wait is bounded
//! and no timing is asserted. Without sipp the sipp test skips with a printed reason (fails when
//! `CI` is set); the others need no external tool.
//!
//! The sipp test runs with `serve --workers 1` and with `--workers 2` at once, each with its own
//! sipp processes on ephemeral ports (issue 16: correctness under sharding;
//! [`procs::each_worker_count`]).

#[path = "common/procs.rs"]
mod procs;
#[path = "common/sipp.rs"]
mod sipp;

use procs::{Proc, TempDir};
use sipp::{scenario, Sipp};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Start-up and single-message bound: generous for a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

/// `switchboard serve --listen 127.0.0.1:0 --config CONFIG EXTRA...`, and the port it chose.
struct Service {
    proc: Proc,
    port: u16,
}

impl Service {
    fn start(workers: usize, config: &Path, extra: &[&str]) -> Service {
        let mut cmd = switchboard();
        procs::set_workers(&mut cmd, workers);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()]).args(extra);
        let (proc, port) = procs::spawn_service(&mut cmd, LIMIT);
        Service { proc, port }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn socket() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("read timeout");
    sock
}

fn port_of(sock: &UdpSocket) -> u16 {
    sock.local_addr().expect("local addr").port()
}

/// Waits up to [`LIMIT`] for a datagram on `sock` whose first line starts with `start`, skipping
/// others (100 Trying, retransmissions); returns its text.
fn recv_starting(sock: &UdpSocket, start: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    let mut buf = vec![0u8; 65536];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with(start) {
                return text;
            }
            seen.push(text.lines().next().unwrap_or_default().to_owned());
        }
    }
    panic!("no datagram starting with {start:?} within {LIMIT:?}; saw {seen:?}");
}

/// A REGISTER of `user` with Contact `sip:user@127.0.0.1:PORT` from `sock` (no credentials: the
/// service runs with --no-auth); waits for the 200.
fn register(sock: &UdpSocket, service: SocketAddr, user: &str) {
    let p = port_of(sock);
    let msg = format!(
        "REGISTER sip:127.0.0.1:{sp} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-reg-{user};rport\r\n\
         From: <sip:{user}@127.0.0.1>;tag=r{user}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}@routes-test\r\n\
         CSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{p}>\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sp = service.port()
    );
    sock.send_to(msg.as_bytes(), service).expect("send REGISTER");
    let answer = recv_starting(sock, "SIP/2.0 ");
    assert!(answer.starts_with("SIP/2.0 200"), "REGISTER of {user} not accepted:\n{answer}");
}

/// Sends an INVITE for `sip:user@SERVICE` from `sock` (no body, no credentials).
fn invite(sock: &UdpSocket, service: SocketAddr, user: &str) {
    let p = port_of(sock);
    let msg = format!(
        "INVITE sip:{user}@127.0.0.1:{sp} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-inv-{user};rport\r\n\
         From: <sip:caller@127.0.0.1>;tag=c{user}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: inv-{user}@routes-test\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:{p}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sp = service.port()
    );
    sock.send_to(msg.as_bytes(), service).expect("send INVITE");
}

/// sipp calls `sip:1234@service` 20 times; the `1*` route forwards each INVITE to a sipp UAS (the
/// "trunk"), which echoes the Record-Route so ACK and BYE come back through the service. All 20
/// calls complete at both ends.
#[test]
fn sipp_calls_follow_a_static_route_to_a_trunk() {
    if !sipp::available() {
        return;
    }
    procs::each_worker_count(|workers| {
        let dir = TempDir::new("routes-sipp");
        let uas_port = sipp::free_port();
        let mut uas = Sipp::spawn("trunk-uas", dir.path(), uas_port, &s(&["-sf", &scenario("uas_rr.xml"), "-m", "20"]));
        if let Err(e) = uas.wait_bound(LIMIT) {
            panic!("{e}");
        }
        let config = dir.join("switchboard.toml");
        // A route for other users comes first, to show that only the first *matching* route counts.
        let toml = format!(
            "[[route]]\nuser = \"alice\"\ntarget = \"sip:127.0.0.1:9\"\n\n[[route]]\nuser = \"1*\"\ntarget = \"sip:127.0.0.1:{uas_port}\"\n"
        );
        std::fs::write(&config, toml).expect("write config");
        let svc = Service::start(workers, &config, &["--no-auth", "--data", "none", "--mode", "proxy"]);

        let uac_args = s(&[
            "-sf",
            &scenario("uac_rr.xml"),
            "-s",
            "1234",
            "-d",
            "0",
            "-m",
            "20",
            "-r",
            "10",
            "-timeout",
            "60s",
            &svc.addr().to_string(),
        ]);
        let mut uac = Sipp::spawn("caller-uac", dir.path(), sipp::free_port(), &uac_args);
        let out = uac.finish(LIMIT);
        assert!(
            out.exited_ok() && (out.successful, out.failed) == (20, 0),
            "caller: {out:?}\n{}\nsipp:\n{}\nservice:\n{}",
            out.error_head(40),
            uac.proc.transcript(),
            svc.proc.transcript()
        );
        let trunk = uas.finish(LIMIT);
        assert_eq!((trunk.successful, trunk.failed), (20, 0), "trunk: {trunk:?}\n{}", trunk.error_head(40));
    });
}

/// Registered phones win over a matching route; `override = true` wins over the registration; an
/// unregistered user follows the catch-all route. `rewrite_host` sets the Request-URI to the
/// target, otherwise the caller's Request-URI is forwarded as it came.
#[test]
fn registrations_win_unless_the_route_overrides() {
    let dir = TempDir::new("routes-precedence");
    let (phone, trunk, caller) = (socket(), socket(), socket());
    let t = port_of(&trunk);
    let config = dir.join("switchboard.toml");
    let toml = format!(
        "[[route]]\nuser = \"9*\"\ntarget = \"sip:127.0.0.1:{t}\"\noverride = true\nrewrite_host = true\n\n\
         [[route]]\nuser = \"*\"\ntarget = \"sip:127.0.0.1:{t}\"\n"
    );
    std::fs::write(&config, toml).expect("write config");
    // Proxy mode: the INVITEs here carry no SDP offer, which a B2BUA refuses (488).
    let svc = Service::start(1, &config, &["--no-auth", "--data", "none", "--mode", "proxy"]);
    let sp = svc.port;
    register(&phone, svc.addr(), "1234");
    register(&phone, svc.addr(), "9000");

    invite(&caller, svc.addr(), "1234");
    let got = recv_starting(&phone, "INVITE ");
    assert!(got.starts_with(&format!("INVITE sip:1234@127.0.0.1:{} SIP/2.0", port_of(&phone))), "registered phone: {got}");

    invite(&caller, svc.addr(), "9000");
    let got = recv_starting(&trunk, "INVITE ");
    assert!(got.starts_with(&format!("INVITE sip:9000@127.0.0.1:{t} SIP/2.0")), "override + rewrite_host: {got}");
    assert!(got.contains(&format!("Record-Route: <sip:127.0.0.1:{sp};lr;sbt=")), "the service stays in the dialog (with its token): {got}");

    invite(&caller, svc.addr(), "5555");
    let got = recv_starting(&trunk, "INVITE ");
    assert!(got.starts_with(&format!("INVITE sip:5555@127.0.0.1:{sp} SIP/2.0")), "catch-all, Request-URI kept: {got}");
}

/// With digest authentication on, an INVITE that a route would forward is challenged first.
#[test]
fn routed_invite_without_credentials_is_challenged() {
    let dir = TempDir::new("routes-auth");
    let (trunk, caller) = (socket(), socket());
    let config = dir.join("switchboard.toml");
    std::fs::write(&config, format!("[[route]]\nuser = \"*\"\ntarget = \"sip:127.0.0.1:{}\"\n", port_of(&trunk))).expect("write config");
    let svc = Service::start(1, &config, &["--data", dir.join("data").to_str().unwrap()]);
    invite(&caller, svc.addr(), "1234");
    let got = recv_starting(&caller, "SIP/2.0 4");
    assert!(got.starts_with("SIP/2.0 407"), "expected a 407 challenge: {got}");
    assert!(got.contains("Proxy-Authenticate: Digest"), "{got}");
}

/// The caller answers the 407 with credentials for our realm and adds a value for another realm
/// (a proxy further on): the trunk gets the INVITE with only the other realm's value (RFC 3261
/// §22.3; Kamailio's `consume_credentials()`).
#[test]
fn proxy_consumes_its_own_realms_credentials_only() {
    use switchboard::auth::DigestClient;
    use switchboard::message::{HeaderName, Message};

    let dir = TempDir::new("routes-consume");
    let data = dir.join("data");
    let ok =
        switchboard().args(["users", "--data", data.to_str().unwrap(), "add", "caller", "--password", "pw-1"]).output().expect("users add");
    assert!(ok.status.success(), "users add: {}", String::from_utf8_lossy(&ok.stderr));
    let (trunk, caller) = (socket(), socket());
    let config = dir.join("switchboard.toml");
    std::fs::write(&config, format!("[[route]]\nuser = \"*\"\ntarget = \"sip:127.0.0.1:{}\"\n", port_of(&trunk))).expect("write config");
    let svc = Service::start(1, &config, &["--mode", "proxy", "--data", data.to_str().unwrap()]);
    let (p, sp) = (port_of(&caller), svc.port);
    let uri = format!("sip:1234@127.0.0.1:{sp}");
    let request = |cseq: u32, extra: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-consume-{cseq};rport\r\n\
             From: <sip:caller@127.0.0.1>;tag=cc\r\nTo: <sip:1234@127.0.0.1>\r\nCall-ID: consume@routes-test\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:caller@127.0.0.1:{p}>\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let first = request(1, "");
    caller.send_to(first.as_bytes(), svc.addr()).expect("send INVITE");
    let challenge = recv_starting(&caller, "SIP/2.0 4");
    assert!(challenge.starts_with("SIP/2.0 407"), "expected a 407: {challenge}");
    let parse = |text: &str| Message::parse(bytes::Bytes::from(text.to_owned())).expect("parse");
    let mut client = DigestClient::new("caller", "pw-1");
    client.handle_challenge(&parse(&first), &parse(&challenge)).expect("answerable challenge");
    let realm = client.challenge().expect("challenge").realm.to_string();
    let (name, ours) = client.authorization("INVITE", &uri, "cn-1").expect("credentials");
    assert_eq!(name, HeaderName::ProxyAuthorization);
    let theirs = format!("Digest username=\"caller\", realm=\"far.example.net\", nonce=\"n\", uri=\"{uri}\", response=\"00\"");
    let second = request(2, &format!("Proxy-Authorization: {ours}\r\nProxy-Authorization: {theirs}\r\n"));
    caller.send_to(second.as_bytes(), svc.addr()).expect("send INVITE with credentials");

    let got = recv_starting(&trunk, "INVITE ");
    let forwarded = parse(&got);
    let realms: Vec<String> = forwarded
        .auth_headers(HeaderName::ProxyAuthorization)
        .map(|h| h.expect("Proxy-Authorization").get("realm").expect("realm").into_owned())
        .collect();
    assert_eq!(realms, ["far.example.net"], "our realm {realm:?} must not go on:\n{got}");
}

/// A route whose target is not `sip:IP[:PORT]` stops the service before it listens: exit status
/// non-zero, and one line on stderr naming the config file, the route and the problem.
#[test]
fn bad_route_target_is_a_one_line_startup_error() {
    let dir = TempDir::new("routes-bad");
    let cases = [("sip:trunk.example.com:5060", "host name"), ("192.0.2.1:5060", "not a SIP URI"), ("sip:gw@192.0.2.1", "user part")];
    for (i, (target, needle)) in cases.iter().enumerate() {
        let config = dir.join(&format!("bad{i}.toml"));
        std::fs::write(
            &config,
            format!("[[route]]\nuser = \"1*\"\ntarget = \"sip:127.0.0.1:5080\"\n\n[[route]]\nuser = \"*\"\ntarget = \"{target}\"\n"),
        )
        .expect("write config");
        let mut cmd = switchboard();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data", "none", "--no-auth", "--config", config.to_str().unwrap()]);
        let mut proc = Proc::spawn("switchboard serve (bad route)", &mut cmd);
        let status = proc.expect_exit(LIMIT);
        assert!(!status.success(), "{target}: serve started with a bad route:\n{}", proc.transcript());
        let err = proc.lines(procs::Stream::Stderr);
        assert_eq!(err.len(), 1, "{target}: one line expected: {err:?}");
        let line = &err[0];
        assert!(line.starts_with("switchboard: config "), "{line}");
        assert!(line.contains(config.to_str().unwrap()) && line.contains("[[route]] #2") && line.contains(needle), "{target}: {line}");
        assert!(proc.lines(procs::Stream::Stdout).is_empty(), "{target}: it must not start listening");
    }
}
