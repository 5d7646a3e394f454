//! 100,000 INVITE client transactions waiting out Timer M in Accepted (RFC 6026 §8.4), and the
//! heap bytes each one costs there (issue 16 point 4, client side).
//!
//! A UAC, a stateful proxy and a B2BUA each run an INVITE client transaction per call; after the
//! 2xx it stays in Accepted for Timer M (`64*T1`, 32 s) so that a retransmitted 2xx, or another
//! fork's, still reaches the TU (the dialog layer ACKs each, §13.2.2.4). At 1,000 calls a second
//! that is 32,000 transactions at once per role.
//!
//! Scenario: INVITEs (about 850 bytes with an SDP offer, each one datagram-sized allocation, as
//! the parent module's server test builds them) are started 10 µs apart on a virtual clock and
//! each is answered at once with a 200 carrying an SDP answer, parsed from a datagram of its own;
//! the test, as the TU, drops both after reading them. When the last is answered all 100,000 are
//! in Accepted: the heap above the baseline taken before the first one, divided by 100,000, is
//! the figure. Then one 200 in 1,000 is retransmitted and one in 1,000 others comes from a second
//! fork: each must reach the TU. Timer M ends every transaction 32 s after its 200, and the table,
//! its key index and its timer heap are empty. The second test does the same through the
//! [`Endpoint`] (request out to a peer with an owner, datagram in), so it counts what the
//! endpoint keeps beside each transaction.
//!
//! `cargo test --test transaction_scale -- --nocapture accepted_invite` prints the figures.

use super::{invite_datagram, ARRIVAL_GAP, CURRENT, N, PEAK, SDP_ANSWER, SERIAL};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Owner};
use switchboard::message::{HeaderName, Message};
use switchboard::transaction::{Config, Event, Routed, TransactionId, TransactionState, Transactions};

/// One 200 in this many is retransmitted while Accepted, and one in this many others is a second
/// fork's 200.
const AGAIN_EVERY: usize = 1_000;
/// Heap bytes an Accepted INVITE client transaction may hold at most (table, key index, timer
/// heap; through the endpoint its peer and owner too). The figure is printed, and BENCHMARKS.md
/// "Issue 16" records it.
const BOUND: usize = 1_024;

fn invite(i: usize) -> Message {
    Message::parse(invite_datagram(i)).expect("the INVITE parses")
}

/// The 200 to INVITE `i` from fork `fork`, as a datagram of its own.
fn ok_datagram(i: usize, fork: usize) -> Bytes {
    let ok = invite(i)
        .response_to(200, "OK", Some(&format!("uas{fork}x{i:06x}")))
        .header(HeaderName::Contact, "<sip:bob@198.51.100.7:5060;transport=udp>")
        .header(HeaderName::Supported, "replaces, timer")
        .body("application/sdp", SDP_ANSWER.as_bytes());
    Bytes::copy_from_slice(ok.as_bytes())
}

fn ok(i: usize, fork: usize) -> Message {
    Message::parse(ok_datagram(i, fork)).expect("the 200 parses")
}

#[test]
fn accepted_invite_client_transactions_cost_little() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = Instant::now();
    let arrival = |i: usize| base + ARRIVAL_GAP * i as u32;
    let mut table = Transactions::new(Config::default());
    // The test's own bookkeeping, allocated before the baseline so it is not charged to the table.
    let mut ids: Vec<Option<TransactionId>> = vec![None; N];
    let mut index_of: HashMap<TransactionId, usize> = HashMap::with_capacity(N);

    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    for (i, slot) in ids.iter_mut().enumerate() {
        let at = arrival(i);
        let id = table.start_client(invite(i), at).expect("the INVITE starts a transaction");
        *slot = Some(id);
        index_of.insert(id, i);
        assert!(matches!(table.poll_transmit(), Some((got, sent)) if got == id && sent.is_request()), "INVITE {i} sent");
        assert_eq!(table.handle_response(ok(i, 0), at), Ok(Routed::Matched(id)));
        assert!(matches!(table.poll_event(), Some((got, Event::Response(r))) if got == id && r.status() == Some(200)));
        assert!(table.poll_transmit().is_none() && table.poll_event().is_none(), "INVITE {i}: one 200, no ACK from the transaction");
        assert_eq!(table.state(id), Some(TransactionState::Accepted));
    }
    let accepted = CURRENT.load(Ordering::Relaxed) - baseline;
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    assert_eq!(table.len(), N, "all {N} wait out Timer M at once");

    // A retransmitted 200, and another fork's 200, each reach the TU (RFC 6026 §8.4).
    let now = arrival(N - 1);
    for i in (0..N).step_by(AGAIN_EVERY) {
        let id = ids[i].expect("started");
        for fork in [0, 1] {
            assert_eq!(table.handle_response(ok(i, fork), now), Ok(Routed::Matched(id)));
            let tag = format!("uas{fork}x{i:06x}");
            assert!(
                matches!(table.poll_event(), Some((got, Event::Response(r))) if got == id && r.to_tag().ok().flatten() == Some(tag.as_str())),
                "INVITE {i}: the 200 of fork {fork} reaches the TU"
            );
            assert!(table.poll_transmit().is_none() && table.poll_event().is_none());
        }
    }

    // Timer M: each ends 64*T1 after its 200, and nothing is left.
    super::run_out(&mut table, &index_of, arrival, "M");

    let per = |bytes: usize| bytes as f64 / N as f64;
    println!("{N} INVITE client transactions in Accepted (Timer M)");
    println!("  heap per accepted transaction: {:.0} bytes ({:.1} MiB for {N})", per(accepted), accepted as f64 / 1048576.0);
    println!("  peak heap per transaction:     {:.0} bytes", per(peak));
    assert!(accepted < BOUND * N, "{:.0} bytes per accepted transaction", per(accepted));
}

/// The same INVITEs through the [`Endpoint`]: sent to a peer with an owner, the 200 received as a
/// datagram, so the figure includes what the endpoint keeps beside each transaction.
#[test]
fn accepted_invite_clients_through_the_endpoint_cost_little() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = Instant::now();
    let arrival = |i: usize| base + ARRIVAL_GAP * i as u32;
    let peer = SocketAddr::from(([198, 51, 100, 7], 5060));
    let config = EndpointConfig { max_transactions: 2 * N, ..EndpointConfig::default() };
    let mut endpoint = Endpoint::new(config);

    let baseline = CURRENT.load(Ordering::Relaxed);
    for i in 0..N {
        let at = arrival(i);
        let tx = endpoint.send_request(invite(i), peer, Owner::Phone, at).expect("the INVITE starts a transaction");
        assert_eq!(endpoint.poll_transmit().map(|t| t.dest), Some(peer), "INVITE {i} sent");
        endpoint.handle_datagram(peer, ok_datagram(i, 0), at);
        assert!(
            matches!(endpoint.poll_event(), Some(EndpointEvent::Response { tx: t, response, owner: Owner::Phone }) if t == tx && response.status() == Some(200)),
            "INVITE {i}: the 200 reaches the owner"
        );
        assert!(endpoint.poll_transmit().is_none() && endpoint.poll_event().is_none(), "INVITE {i}: nothing more");
    }
    let accepted = CURRENT.load(Ordering::Relaxed) - baseline;
    assert_eq!(endpoint.transaction_count(), N, "all {N} wait out Timer M at once");

    super::run_out_endpoint(&mut endpoint, N, Owner::Phone, "M");
    println!("{N} INVITEs through the endpoint, in Accepted (Timer M)");
    println!("  heap per accepted transaction: {:.0} bytes", accepted as f64 / N as f64);
    assert!(accepted < BOUND * N, "{:.0} bytes per accepted transaction", accepted as f64 / N as f64);
}
