//! Softphones through `switchboard dispatch` (issue 17 point 3): alice and bob register through the
//! dispatcher (digest on, REGISTER with Path), alice calls bob, the instance's B2BUA reaches bob
//! through the dispatcher (bob's binding points at it), both hear each other's tone, and alice's
//! BYE follows the dispatcher's Record-Route to the instance and on to bob.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/heard.rs"]
mod heard;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{Proc, TempDir};
use service_cli::{PHONE, SB};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn summary(p: &Proc) -> serde_json::Value {
    let line = p.wait_line("\"call_id\"", Duration::from_secs(40)).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&line).expect("summary JSON")
}

#[test]
fn softphones_call_through_the_dispatcher_and_hear_each_other() {
    let dir = TempDir::new("dispatch-phones");
    service_cli::users(dir.path(), &["alice", "bob"]);
    let port = procs::free_port_udp_tcp();
    let be = SocketAddr::from(([127, 0, 0, 1], port));
    let (_d, disp) = cluster::dispatcher(&[be], &[]);
    let rtp = procs::free_udp_span(20_000..=29_999, 200);
    let mut cmd = Command::new(SB);
    cmd.args(["serve", "--listen", &be.to_string(), "--data"]).arg(dir.path()).args([
        "--dispatcher",
        &disp.to_string(),
        "--rtp-ports",
        &format!("{rtp}-{}", rtp + 199),
    ]);
    let (_svc, _) = procs::spawn_service(&mut cmd, LIMIT);
    let phone = |user: &str, tone: &str, ports: u16, tail: &[&str]| {
        let mut c = Command::new(PHONE);
        c.args(["--user", user, "--register", &format!("sip:{disp}"), "--password-file"])
            .arg(dir.join(&format!("{user}.pw")))
            .args(["--summary", "json", "--tone", tone, "--record"])
            .arg(dir.join(&format!("{user}.wav")))
            .args(["--rtp-ports", &format!("{ports}-{}", ports + 99)])
            .args(tail);
        c
    };
    let bob_ports = procs::free_udp_span(20_000..=29_999, 100);
    let bob = Proc::spawn("softphone bob", &mut phone("bob", "1000", bob_ports, &["answer", "--calls", "1"]));
    bob.wait_line("registered aor=", LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let alice_ports = procs::free_udp_span(20_000..=29_999, 100);
    let mut alice =
        Proc::spawn("softphone alice", &mut phone("alice", "440", alice_ports, &["dial", "sip:bob@127.0.0.1", "--duration", "3"]));
    let a = summary(&alice);
    let b = summary(&bob);
    assert!(alice.wait_exit(LIMIT).is_some_and(|s| s.success()), "{}", alice.transcript());
    assert_eq!((a["state"].as_str(), b["state"].as_str()), (Some("completed"), Some("completed")), "{a}\n{b}");
    assert_eq!(b["reason"], "bye-remote", "alice's BYE reached bob through the dispatcher and the instance");
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    heard::assert_heard("alice", &dir.join("alice.wav"), 1000.0, n(&a["rtp_received"]), n(&b["rtp_sent"]));
    heard::assert_heard("bob", &dir.join("bob.wav"), 440.0, n(&b["rtp_received"]), n(&a["rtp_sent"]));
}
