//! Parser benchmark: parse the everyday INVITE, 200, ACK, BYE and REGISTER from fixtures/sip and touch
//! the fields every transaction lookup needs (top Via branch, Call-ID, CSeq).
//!
//! `cargo bench --bench parse` prints criterion's timings, then the heap allocations per parse counted
//! by a counting global allocator. Target (BENCHMARKS.md): the ~900-byte INVITE in ≤ 500 ns with ≤ 4
//! allocations.

use bytes::Bytes;
use criterion::{black_box, criterion_group, Criterion, Throughput};
use switchboard::message::Message;

#[path = "common/alloc.rs"]
mod alloc;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const FILES: &[(&str, &str)] = &[
    ("invite", "fixtures/sip/invite.sip"),
    ("200-invite", "fixtures/sip/ok-200-invite.sip"),
    ("ack", "fixtures/sip/ack.sip"),
    ("bye", "fixtures/sip/bye.sip"),
    ("register", "fixtures/sip/register.sip"),
];

fn load(path: &str) -> Bytes {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let bytes = std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    // A shared (already promoted) Bytes, so cloning it in the loop is a refcount bump, as for a
    // datagram the transport hands to several layers.
    let b = Bytes::from(bytes);
    let _warm = b.clone();
    b
}

/// Parse and touch what a transaction lookup touches.
#[inline(never)]
fn parse_and_touch(b: &Bytes) -> usize {
    let m = Message::parse(b.clone()).expect("fixture parses");
    let branch = m.via().ok().and_then(|v| v.branch()).map_or(0, str::len);
    let call_id = m.call_id().map_or(0, str::len);
    let cseq = m.cseq().map_or(0, |c| c.seq as usize);
    branch + call_id + cseq
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, path) in FILES {
        let b = load(path);
        group.throughput(Throughput::Bytes(b.len() as u64));
        group.bench_function(format!("{name} ({} bytes)", b.len()), |bench| bench.iter(|| parse_and_touch(black_box(&b))));
    }
    group.finish();
}

fn report_allocations() {
    println!("\nheap allocations per parse + touch (Via branch, Call-ID, CSeq):");
    for (name, path) in FILES {
        let b = load(path);
        parse_and_touch(&b);
        const N: usize = 1000;
        let before = alloc::allocations();
        for _ in 0..N {
            black_box(parse_and_touch(black_box(&b)));
        }
        let per = (alloc::allocations() - before) as f64 / N as f64;
        println!("  {name:<12} {:>5} bytes  {per:.2} allocations", b.len());
    }
}

criterion_group!(benches, bench_parse);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report_allocations();
}
