//! Call records through the SQLite store as its writer thread applies them at 1,000 calls/s:
//! batches of `--batch` records (a dozen per 10 ms group commit), each a new call's last record
//! (a 0 ms call's three writes, at the INVITE, the answer and the end, reach the writer in one
//! batch, whose `keep_latest_per_key` keeps the last), each batch one `Store::apply_batch`.
//!
//! It measures nothing itself but the wall time; run it under callgrind for the instructions per
//! record, or under `strace -c -f` for the system calls per record (issue 16: the B2BUA's store
//! thread is about a seventh of its CPU per call):
//!
//! ```text
//! cargo build --release --bench store_calls
//! valgrind --tool=callgrind target/release/deps/store_calls-* --calls 12000 --batch 12 [--random-call-ids]
//! strace -f -c -e trace=pwrite64,pread64,fcntl,fsync target/release/deps/store_calls-* --calls 12000 --batch 12
//! ```
//!
//! The caller's Call-IDs are sipp's (`N-PID@127.0.0.1`, in order) unless `--random-call-ids`
//! (what real phones send). The store is made fresh in a directory under the system temp dir and
//! removed at the end. Bounded: `--calls` records, then it stops.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use switchboard::store::{CallRecord, SqliteStore, Store, StoreOp};

const USAGE: &str = "usage: store_calls [--calls N] [--batch N] [--random-call-ids]";

fn main() -> ExitCode {
    let (mut calls, mut batch, mut random) = (12_000u64, 12u64, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse::<u64>().ok()).filter(|&n| n > 0);
        match a.as_str() {
            "--calls" => calls = num().unwrap_or(0),
            "--batch" => batch = num().unwrap_or(0),
            "--random-call-ids" => random = true,
            // `cargo bench` passes --bench to every bench target.
            "--bench" => {}
            _ => calls = 0,
        }
        if calls == 0 || batch == 0 {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    }
    let dir = std::env::temp_dir().join(format!("switchboard-store-calls-{}", std::process::id()));
    let code = run(&dir, calls, batch, random);
    let _ = std::fs::remove_dir_all(&dir);
    code
}

fn run(dir: &Path, calls: u64, batch: u64, random: bool) -> ExitCode {
    let mut store = match SqliteStore::open(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("store_calls: {e}");
            return ExitCode::FAILURE;
        }
    };
    // xorshift64: the same "random" Call-IDs every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let start = Instant::now();
    let mut k = 0;
    while k < calls {
        let n = batch.min(calls - k);
        let ops: Vec<StoreOp> = (k..k + n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                StoreOp::PutCall(record(i, x, random))
            })
            .collect();
        if let Err(e) = store.apply_batch(&ops) {
            eprintln!("store_calls: {e}");
            return ExitCode::FAILURE;
        }
        k += n;
    }
    let took = start.elapsed();
    println!(
        "store_calls: {calls} records in batches of {batch}, {} Call-IDs: {:.1} us per record",
        if random { "random" } else { "sipp-like" },
        took.as_secs_f64() * 1e6 / calls as f64
    );
    ExitCode::SUCCESS
}

/// The record of a B2BUA call of 0 ms that ended with the caller's BYE, as `bench/b2bua.sh`'s
/// calls leave it (no relay: no packets counted).
fn record(i: u64, x: u64, random: bool) -> CallRecord {
    let at = 1_765_000_000_000 + i;
    CallRecord {
        id: format!("5f3a9c21-{i}"),
        caller_call_id: if random { format!("{x:016x}{:08x}@192.0.2.7", x >> 32) } else { format!("{i}-4242@127.0.0.1") },
        callee_call_id: Some(format!("sbk-00000000deadbeef-{x:016x}@127.0.0.1")),
        from: "<sip:sipp@127.0.0.1:5061>".into(),
        to: "<sip:service@127.0.0.1:5060>".into(),
        invited_at: at,
        answered_at: Some(at),
        ended_at: Some(at),
        end_reason: Some("bye".into()),
        ended_by: Some("caller".into()),
        codec: Some("PCMU/8000".into()),
        caller_packets: 0,
        caller_lost: 0,
        caller_jitter_ms: f64::NAN,
        callee_packets: 0,
        callee_lost: 0,
        callee_jitter_ms: f64::NAN,
    }
}
