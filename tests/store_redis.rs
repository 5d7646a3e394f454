//! The Redis store (issue 17 point 1): `serve --store redis://...` and the CLI tools against a real
//! `redis-server`, which each test starts itself on a free loopback port with persistence off
//! (`--save '' --appendonly no`) in a temp dir, and stops (its own child) at the end. Without
//! `redis-server` the tests print why they skip; with `CI` set they fail instead.
//!
//! Every wait is on an output line, a process exit or a polled condition with a deadline.
//!
//! The test with two services (one killed, one restarted) runs with `--workers 1` and with
//! `--workers 2` at once, each run on its own `redis-server` and its own half of the fixed port
//! ranges (issue 16: correctness under sharding; [`procs::each_worker_count`],
//! [`procs::range_for`]).

#[path = "common/procs.rs"]
mod procs;
#[path = "common/service_cli.rs"]
mod service_cli;

use procs::{skip_or_fail, tool_available, Proc, Stream, TempDir};
use serde_json::Value;
use service_cli::{PHONE, SB};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::store::{BindingRecord, CallRecord, CallState, RedisStore, Store, StoreOp, StoreWriter, UserRecord, WriterConfig};

/// A `redis-server` child on a free loopback port; dropping it kills that child.
struct Redis {
    _proc: Proc,
    url: String,
    _dir: TempDir,
}

/// Starts `redis-server`, or returns `None` after printing why not (panics under `CI`).
fn redis() -> Option<Redis> {
    if !tool_available("redis-server", &["--version"], "apt-get install redis-server") {
        return None;
    }
    let dir = TempDir::new("redis");
    // A port free now; another process could take it before redis binds: then redis exits and
    // we try another.
    for _ in 0..5 {
        let port = procs::free_port_udp_tcp();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path());
        let proc = Proc::spawn("redis-server", &mut cmd);
        if proc.wait_line("Ready to accept connections", Duration::from_secs(10)).is_ok() {
            return Some(Redis { _proc: proc, url: format!("redis://127.0.0.1:{port}/0"), _dir: dir });
        }
    }
    skip_or_fail("redis-server did not start on a free loopback port");
    None
}

fn binding(aor: &str, contact: &str, expires_at: u64) -> BindingRecord {
    BindingRecord {
        aor: aor.into(),
        contact: contact.into(),
        expires_at,
        q_millis: 500,
        call_id: "reg-1".into(),
        cseq: 3,
        source: "127.0.0.1:5099".parse().unwrap(),
        updated_at: 7,
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[test]
fn redis_store_keeps_what_sqlite_keeps_and_shares_it() {
    let Some(redis) = redis() else { return };
    let mut a = RedisStore::open(&redis.url).expect("open");
    let b = RedisStore::open(&redis.url).expect("second connection");

    let alice = UserRecord { name: "alice".into(), realm: "example.com".into(), ha1_md5: "m".into(), ha1_sha256: "s".into() };
    a.put_user(&alice).unwrap();
    a.put_user(&UserRecord { name: "bob".into(), ..alice.clone() }).unwrap();
    assert_eq!(b.users().unwrap().iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(b.users().unwrap()[0], alice);
    assert!(a.remove_user("bob").unwrap());
    assert!(!a.remove_user("bob").unwrap());

    let far = now_secs() + 3600;
    let b1 = binding("sip:alice@example.com", "sip:alice@127.0.0.1:5001", far);
    // A contact with the separator in it, and an AOR that is a prefix of another: keys stay apart.
    let b2 = binding("sip:alice@example.com", "sip:alice@127.0.0.1:5002;ob", far);
    let b3 = binding("sip:alice@example.co", "m:sip:x@127.0.0.1", far);
    // Already expired: Redis drops the key at once and the read unindexes it.
    let gone = binding("sip:carol@example.com", "sip:carol@127.0.0.1:5003", now_secs() - 5);
    a.apply_batch(&[
        StoreOp::PutBinding(b1.clone()),
        StoreOp::PutBinding(b2.clone()),
        StoreOp::PutBinding(b3.clone()),
        StoreOp::PutBinding(gone.clone()),
    ])
    .unwrap();
    let mut want = vec![b3.clone(), b1.clone(), b2.clone()];
    want.sort_by(|x, y| (&x.aor, &x.contact).cmp(&(&y.aor, &y.contact)));
    assert_eq!(b.bindings().unwrap(), want);
    assert!(!a.remove_binding(&gone.aor, &gone.contact).unwrap(), "the expired binding is gone");
    assert!(a.remove_binding(&b3.aor, &b3.contact).unwrap());
    assert_eq!(a.remove_bindings("sip:alice@example.com").unwrap(), 2);
    assert_eq!(b.bindings().unwrap(), vec![]);

    let call = |id: &str, at: u64| CallRecord {
        id: id.into(),
        caller_call_id: format!("{id}@a"),
        callee_call_id: None,
        from: "sip:alice@example.com".into(),
        to: "sip:bob@example.com".into(),
        invited_at: at,
        answered_at: None,
        ended_at: None,
        end_reason: None,
        ended_by: None,
        codec: None,
        caller_packets: 0,
        caller_lost: 0,
        caller_jitter_ms: f64::NAN,
        callee_packets: 0,
        callee_lost: 0,
        callee_jitter_ms: f64::NAN,
    };
    a.put_call(&call("c2", 2000)).unwrap();
    a.put_call(&call("c1", 1000)).unwrap();
    a.put_call(&call("c0", 2000)).unwrap();
    // Rewritten as the call progresses: the answer time appears, then the end clears nothing else.
    let done = CallRecord {
        answered_at: Some(1500),
        ended_at: Some(9000),
        end_reason: Some("bye".into()),
        caller_jitter_ms: 1.5,
        ..call("c1", 1000)
    };
    a.put_call(&done).unwrap();
    let ids = |v: Vec<CallRecord>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(ids(b.calls(None).unwrap()), ["c1", "c0", "c2"]);
    assert_eq!(ids(b.calls(Some(2000)).unwrap()), ["c0", "c2"]);
    let got = b.calls(None).unwrap().remove(0);
    assert_eq!(
        (got.answered_at, got.ended_at, got.end_reason.as_deref(), got.caller_jitter_ms),
        (Some(1500), Some(9000), Some("bye"), 1.5)
    );
    assert!(got.callee_jitter_ms.is_nan());

    a.put_call_state(&CallState { id: "c0".into(), data: "{\"x\":1}".into() }).unwrap();
    assert_eq!(b.call_states().unwrap(), vec![CallState { id: "c0".into(), data: "{\"x\":1}".into() }]);
    assert!(a.remove_call_state("c0").unwrap());
    assert!(b.call_states().unwrap().is_empty());

    // The first instance's secret is every instance's.
    let s1 = a.shared_secret([1; 32]).unwrap();
    let s2 = b.shared_secret([2; 32]).unwrap();
    assert_eq!((s1, s2), ([1; 32], [1; 32]));

    // Through the writer thread, as the service writes.
    let writer = StoreWriter::spawn(Box::new(a), WriterConfig::default()).unwrap();
    writer.put_binding(b1.clone()).unwrap();
    writer.put_user(UserRecord { name: "dave".into(), ..alice.clone() }).unwrap();
    writer.flush().unwrap();
    assert_eq!(b.bindings().unwrap(), vec![b1]);
    assert!(b.users().unwrap().iter().any(|u| u.name == "dave"));
    assert_eq!(writer.stats().ops_failed, 0);
}

#[test]
fn an_unreachable_redis_is_a_clear_error() {
    let port = procs::free_port_udp_tcp();
    let err = RedisStore::open(&format!("redis://u:hunter2@127.0.0.1:{port}/0")).expect_err("nobody listens there").to_string();
    assert!(err.contains("cannot open Redis store redis://***@127.0.0.1") && !err.contains("hunter2"), "{err}");
    let out = Command::new(SB).args(["registrations", "--store", &format!("redis://127.0.0.1:{port}/0")]).output().expect("registrations");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

// ===== the service on Redis =====

/// `switchboard ARGS --store URL`, which must succeed; its stdout.
fn sb(args: &[&str], url: &str) -> String {
    let out = Command::new(SB).args(args).args(["--store", url]).stdin(Stdio::null()).output().expect("switchboard");
    assert!(out.status.success(), "switchboard {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// `switchboard serve --store URL --workers N` with its control socket in `dir`.
fn serve(workers: usize, url: &str, dir: &Path, listen: &str, rtp: &str) -> (Proc, u16) {
    let mut cmd = Command::new(SB);
    procs::set_workers(&mut cmd, workers);
    cmd.args(["serve", "--store", url, "--listen", listen, "--rtp-ports", rtp, "--data"]).arg(dir);
    procs::spawn_service(&mut cmd, Duration::from_secs(15))
}

/// alice dials bob through the service on `port` for `secs` seconds, her RTP ports in `rtp`; her
/// JSON summary.
fn dial(dir: &Path, port: u16, secs: &str, rtp: &str) -> Value {
    let out = Command::new(PHONE)
        .args(["--user", "alice", "--register", &format!("sip:127.0.0.1:{port}"), "--password-file"])
        .arg(dir.join("alice.pw"))
        .args(["--summary", "json", "--rtp-ports", rtp, "dial", "sip:bob@127.0.0.1", "--duration", secs])
        .stdin(Stdio::null())
        .output()
        .expect("softphone dial");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "alice's call: {text}{}", String::from_utf8_lossy(&out.stderr));
    json_lines(&text).pop().expect("alice's summary")
}

/// Polls `cdr --store URL --json` until `n` records are closed.
fn closed_records(url: &str, n: usize, limit: Duration) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let records = json_lines(&sb(&["cdr", "--json"], url));
        if records.iter().filter(|r| !r["ended_at"].is_null()).count() >= n {
            return records;
        }
        assert!(t0.elapsed() < limit, "{n} closed records expected within {limit:?}: {records:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_services_on_one_redis_share_users_registrations_and_records() {
    procs::each_worker_count(|workers| {
        let range = |lo, hi| procs::range_for(workers, lo, hi);
        let Some(redis) = redis() else { return };
        let url = redis.url.as_str();
        let dir = TempDir::new("redis-svc");
        let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
        for user in ["alice", "bob"] {
            let pw = format!("{user}-secret");
            let out = sb(&["users", "add", user, "--password", &pw], url);
            assert!(out.contains(&format!("user {user} saved")) && out.contains("redis://127.0.0.1:"), "{out}");
            std::fs::write(dir.join(&format!("{user}.pw")), format!("{pw}\n")).expect("password file");
        }
        assert_eq!(sb(&["users", "list"], url).lines().count(), 2);

        // Instance A takes bob's registration.
        let (mut svc_a, port_a) = serve(workers, url, &dir_a, "127.0.0.1:0", &range(44000, 44999));
        let mut bob = Proc::spawn(
            "bob",
            Command::new(PHONE)
                .args(["--user", "bob", "--register", &format!("sip:127.0.0.1:{port_a}"), "--password-file"])
                .arg(dir.join("bob.pw"))
                .args(["--summary", "json", "--rtp-ports", &range(46000, 46499), "answer", "--calls", "2"]),
        );
        bob.wait_line("registered aor=", Duration::from_secs(15)).expect("bob registered through A");
        // The 200 goes out before the writer thread has sent the binding (a few ms): poll for it.
        let t0 = Instant::now();
        let regs = loop {
            let regs = json_lines(&sb(&["registrations", "--json"], url));
            if !regs.is_empty() || t0.elapsed() > Duration::from_secs(5) {
                break regs;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(regs.len(), 1, "{regs:#?}");
        assert!(regs[0]["aor"].as_str().is_some_and(|a| a.contains("bob")), "{regs:#?}");

        // Instance B, a second process on the same Redis, starts with bob's binding and the users,
        // and verifies alice's digest with the shared nonce key: alice calls bob through B.
        let listen_b = format!("127.0.0.1:{}", procs::free_port_udp_tcp());
        let (svc_b, port_b) = serve(workers, url, &dir_b, &listen_b, &range(45000, 45999));
        svc_b.wait_line("1 registrations restored", Duration::from_secs(5)).expect("B read bob's binding from Redis");
        let a = dial(dir.path(), port_b, "2", &range(46500, 46999));
        assert_eq!(a["responses"][0], 407, "the INVITE was challenged: {a:#}");
        assert_eq!(a["reason"], "bye-local", "{a:#}");
        let records = closed_records(url, 1, Duration::from_secs(10));
        assert_eq!(records.len(), 1, "{records:#?}");
        assert_eq!((records[0]["end_reason"].as_str(), records[0]["ended_by"].as_str()), (Some("bye"), Some("caller")), "{records:#?}");
        assert!(records[0]["to"].as_str().is_some_and(|t| t.contains("bob")), "{records:#?}");

        // Restart B (A stops too: nothing in any process remembers bob but Redis) and call bob again.
        svc_a.kill();
        drop(svc_b);
        let (_svc_b2, port_b2) = serve(workers, url, &dir_b, &listen_b, &range(45000, 45999));
        assert_eq!(port_b2, port_b);
        let a2 = dial(dir.path(), port_b2, "1", &range(46500, 46999));
        assert_eq!(a2["reason"], "bye-local", "bob was called after the restart: {a2:#}");
        bob.expect_exit(Duration::from_secs(20));
        let ends: Vec<Value> =
            bob.lines(Stream::Stdout).iter().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(ends.len(), 2, "{}", bob.transcript());
        assert!(ends.iter().all(|s| s["reason"] == "bye-remote"), "{ends:#?}");
        let records = closed_records(url, 2, Duration::from_secs(10));
        assert_eq!(records.len(), 2, "{records:#?}");
    });
}
