//! sipp through `switchboard dispatch` in front of three `switchboard serve` instances (issue 17
//! point 3): every call succeeds (its BYE follows the dispatcher's Record-Route to the instance that
//! answered; any other instance would answer 481 and fail the call), and every instance takes calls.
//! Skips with a printed reason without sipp; fails under `CI`. Runs twice at once, with instances
//! of `--workers 1` and of `--workers 2` (issue 16: correctness under sharding;
//! [`procs::each_worker_count`]).

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;
#[path = "common/sipp.rs"]
mod sipp;

use cluster::{dispatcher, instance_workers};
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn sipp_calls_through_the_dispatcher_spread_over_the_instances() {
    if !sipp::available() {
        return;
    }
    procs::each_worker_count(calls_spread_over_the_instances);
}

fn calls_spread_over_the_instances(workers: usize) {
    let (_i1, a) = instance_workers(workers, 0, &[]);
    let (_i2, b) = instance_workers(workers, 0, &[]);
    let (_i3, c) = instance_workers(workers, 0, &[]);
    let (_d, disp) = dispatcher(&[a, b, c], &["--rate-limit", "0"]);
    let dir = procs::TempDir::new(&format!("dispatch-sipp-w{workers}"));
    let args: Vec<String> = [
        "-sf",
        &sipp::scenario("dispatch_uac.xml"),
        "-s",
        "echo",
        "-d",
        "200",
        "-m",
        "60",
        "-r",
        "20",
        "-timeout",
        "60s",
        "-trace_logs",
        "-log_file",
        "logs.log",
        &disp.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut run = sipp::Sipp::spawn("uac", dir.path(), sipp::free_port(), &args);
    let out = run.finish(Duration::from_secs(90));
    assert!(out.exited_ok() && out.successful == 60 && out.failed == 0, "{out:?}\n{}", out.error_head(20));
    let logs = std::fs::read_to_string(dir.join("uac/logs.log")).unwrap_or_default();
    let mut per: HashMap<String, usize> = HashMap::new();
    for l in logs.lines().filter_map(|l| l.split("answered-by ").nth(1)) {
        *per.entry(l.split_whitespace().next().unwrap_or("").to_owned()).or_default() += 1;
    }
    println!("--workers {workers}: sipp calls per instance: {per:?}");
    for i in [a, b, c] {
        assert!(per.get(&i.to_string()).copied().unwrap_or(0) > 0, "{i} took no call: {per:?}");
    }
    assert_eq!(per.values().sum::<usize>(), 60);
}
