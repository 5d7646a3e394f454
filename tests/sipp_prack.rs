//! 100rel/PRACK (RFC 3262) and UPDATE (RFC 3311) through `switchboard serve` as a B2BUA, with sipp
//! on both ends (fixtures/sipp/*100rel*.xml). Debian's baresip 1.0.0 has no 100rel, so sipp
//! stands in for the phones. A `[[route]]` sends calls for bob to the sipp UAS; the service runs
//! with `--no-auth` so the UAC needs no digest round.
//!
//! - PRACK on both legs: a caller with `Supported: 100rel` calls a callee that answers with a
//!   reliable 183; the service PRACKs the callee (RAck checked by the UAS), sends the caller a
//!   reliable 18x that the caller PRACKs (RSeq/Require checked by the UAC); then, in the confirmed
//!   call, the caller's UPDATE reaches the callee as an UPDATE with the relay's SDP and the answer
//!   comes back.
//! - The callee requires 100rel, the caller does not support it: the service PRACKs the callee
//!   itself and the caller gets a plain 18x (no RSeq, no Require: 100rel); the callee's UPDATE in
//!   the early dialog is answered.
//!
//! Everything runs on 127.0.0.1 with ephemeral ports and private temp dirs; every wait is bounded.
//! Without sipp the tests skip with a printed reason (fail when `CI` is set). Each test runs its
//! call twice at once, through `serve --workers 1` and `--workers 2` (issue 16: correctness under
//! sharding; [`procs::each_worker_count`]).

#[path = "common/procs.rs"]
mod procs;
#[path = "common/sipp.rs"]
mod sipp;

use procs::{Proc, TempDir};
use sipp::{scenario, Sipp};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Runs one call: the UAS scenario as bob's phone, the service routing bob to it, and the UAC
/// scenario calling bob through the service. Both sipps must count one successful call. Runs
/// with 1 and with 2 workers at once.
fn call(tag: &str, uac: &str, uas: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    procs::each_worker_count(|workers| call_with(workers, tag, uac, uas));
}

fn call_with(workers: usize, tag: &str, uac: &str, uas: &str) {
    let dir = TempDir::new(&format!("{tag}-w{workers}"));
    let uas_port = sipp::free_port();
    let mut callee = Sipp::spawn("callee", dir.path(), uas_port, &s(&["-sf", &scenario(uas), "-s", "bob", "-m", "1", "-timeout", "50s"]));
    if let Err(e) = callee.wait_bound(LIMIT) {
        panic!("{e}");
    }
    let config = dir.join("switchboard.toml");
    std::fs::write(&config, format!("[[route]]\nuser = \"bob\"\ntarget = \"sip:127.0.0.1:{uas_port}\"\n")).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    procs::set_workers(&mut cmd, workers);
    // Relay ports apart for the two runs that go at once.
    let relay = if workers == 1 { "53000-53999" } else { "54000-54999" };
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-auth", "--data", "none", "--rtp-ports", relay, "--config"]).arg(&config);
    let (svc, port): (Proc, u16) = procs::spawn_service(&mut cmd, LIMIT);
    let service = format!("127.0.0.1:{port}");

    let args = s(&["-sf", &scenario(uac), "-s", "bob", "-d", "200", "-m", "1", "-recv_timeout", "20s", "-timeout", "50s", &service]);
    let mut caller = Sipp::spawn("caller", dir.path(), sipp::free_port(), &args);
    let out = caller.finish(LIMIT);
    let back = callee.finish(LIMIT);
    let context = || {
        format!(
            "caller {out:?}\n{}\n{}\ncallee {back:?}\n{}\n{}\nservice:\n{}",
            out.error_head(40),
            caller.proc.transcript(),
            back.error_head(40),
            callee.proc.transcript(),
            svc.transcript()
        )
    };
    assert_eq!((out.successful, out.failed), (1, 0), "caller: {}", context());
    assert!(out.exited_ok(), "caller exit: {}", context());
    assert_eq!((back.successful, back.failed), (1, 0), "callee: {}", context());
    assert!(back.exited_ok(), "callee exit: {}", context());
}

#[test]
fn prack_on_both_legs_and_update_in_the_confirmed_call() {
    if !sipp::available() {
        return;
    }
    call("sipp-prack-both", "uac_100rel.xml", "uas_100rel.xml");
}

#[test]
fn callee_requires_100rel_caller_without_it_and_an_early_update() {
    if !sipp::available() {
        return;
    }
    call("sipp-prack-callee-only", "uac_no_100rel.xml", "uas_100rel_early_update.xml");
}
