//! 100,000 REGISTER server transactions waiting out Timer J in Completed (RFC 3261 §17.2.2,
//! Figure 8), and the heap bytes each one costs there (issue 16 point 4).
//!
//! A registrar with digest auth answers every authenticated REGISTER with a 200 and then keeps the
//! transaction for Timer J (`64*T1`, 32 s) so that a retransmitted REGISTER gets the same 200
//! again instead of being taken for a replay (§10.3 refuses a Call-ID/CSeq already seen, and the
//! nonce-count rule refuses a repeated nc). At 21,000 registrations a second that is about 670,000
//! completed transactions at once, so what one of them holds matters.
//!
//! Scenario: REGISTERs (about 700 bytes, with an Authorization header; each one datagram-sized
//! allocation, built as it arrives so the test holds none) reach the table 10 µs apart on a virtual
//! clock, over one second, and the TU answers each at once with a 200 listing the binding. When the
//! last one is answered all 100,000 are in Completed: the heap above the baseline taken before the
//! first one is the figure, divided by 100,000. Then one REGISTER in 1,000 is retransmitted and
//! must get the identical 200 bytes, and the timers run: Timer J ends every transaction 32 s after
//! its 200, and the table, its key index and its timer heap are empty.
//!
//! `cargo test --test transaction_scale -- --nocapture completed_register` prints the figures.

use super::{CURRENT, PEAK, SERIAL};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchboard::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Owner, ALLOW};
use switchboard::message::{HeaderName, Message};
use switchboard::transaction::{Config, Event, Routed, TransactionId, TransactionState, Transactions};

const N: usize = 100_000;
/// REGISTER `i` arrives at `i * ARRIVAL_GAP`: all of them within one second.
const ARRIVAL_GAP: Duration = Duration::from_micros(10);
/// One REGISTER in this many is retransmitted while its transaction is in Completed.
const RETRANSMIT_EVERY: usize = 1_000;
/// Heap bytes a completed transaction may hold at most (all of it: table, key index, timer heap,
/// the kept response). Generous: the figure is printed, and BENCHMARKS.md "Issue 16" records it.
const BOUND: usize = 1_024;

/// REGISTER `i` as the UDP transport hands it over: one allocation of exactly the datagram's size.
/// The same `i` gives the same bytes, so a retransmission is rebuilt rather than kept.
fn register_datagram(i: usize) -> Bytes {
    let (host, port) = (format!("192.0.{}.{}", 2 + i / 60_000, 1 + i % 250), 5060 + (i / 250) % 240);
    let wire = format!(
        "REGISTER sip:biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{i:08x}a7c3e1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:user{i}@biloxi.example.com>;tag={tag:010x}\r\n\
         To: <sip:user{i}@biloxi.example.com>\r\n\
         Call-ID: {call:016x}{i:06}@{host}\r\n\
         CSeq: 2 REGISTER\r\n\
         Contact: <sip:user{i}@{host}:{port};transport=udp>;expires=3600\r\n\
         Authorization: Digest username=\"user{i}\", realm=\"biloxi.example.com\", \
         nonce=\"{nonce:032x}\", uri=\"sip:biloxi.example.com\", response=\"{resp:032x}\", \
         algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce:016x}\"\r\n\
         Expires: 3600\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE\r\n\
         User-Agent: switchboard-scale/0.1\r\n\
         Content-Length: 0\r\n\r\n",
        tag = 0x51_0000_0000u64 + i as u64 * 7919,
        call = 0x7a11_3c0d_e5e5_0001u64 ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        nonce = 0x6c2f_8e1d_0b3a_4759_a6e4_3f21_9d8c_7b10u128 ^ i as u128,
        resp = 0x1f2e_3d4c_5b6a_7988_96a5_b4c3_d2e1_f0ffu128 ^ (i as u128) << 32,
        cnonce = 0x0bad_cafe_0000_0000u64 + i as u64,
    );
    Bytes::copy_from_slice(wire.as_bytes())
}

/// The registrar's 200 to REGISTER `i`: the binding with its remaining time, and Date (§10.3
/// step 8). The same request gives the same bytes.
fn ok(register: &Message, i: usize) -> Message {
    let (host, port) = (format!("192.0.{}.{}", 2 + i / 60_000, 1 + i % 250), 5060 + (i / 250) % 240);
    register
        .response_to(200, "OK", Some(&format!("reg{i:06x}")))
        .header(HeaderName::Contact, format_args!("<sip:user{i}@{host}:{port};transport=udp>;expires=3600;q=1"))
        .header(HeaderName::Date, "Mon, 07 Dec 2026 03:00:00 GMT")
        .finish()
}

fn parse(datagram: Bytes) -> Message {
    Message::parse(datagram).expect("the REGISTER parses")
}

#[test]
fn completed_register_transactions_cost_little() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = Instant::now();
    let arrival = |i: usize| base + ARRIVAL_GAP * i as u32;
    let mut table = Transactions::new(Config::default());
    // The test's own bookkeeping, allocated before the baseline so it is not charged to the table.
    let mut ids: Vec<Option<TransactionId>> = vec![None; N];
    let mut index_of: HashMap<TransactionId, usize> = HashMap::with_capacity(N);
    let (mut request_bytes, mut response_bytes) = (0usize, 0usize);

    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    for (i, slot) in ids.iter_mut().enumerate() {
        let at = arrival(i);
        let datagram = register_datagram(i);
        request_bytes += datagram.len();
        let Ok(Routed::New(id)) = table.handle_request(parse(datagram), at) else { panic!("REGISTER {i} opens a transaction") };
        *slot = Some(id);
        index_of.insert(id, i);
        match table.poll_event() {
            Some((got, Event::Request(request))) if got == id => {
                let response = ok(&request, i);
                drop(request);
                table.send_response(id, response, at).expect("the first final response is accepted");
            }
            other => panic!("REGISTER {i}: expected the request event, got {other:?}"),
        }
        let Some((got, sent)) = table.poll_transmit() else { panic!("REGISTER {i}: the 200 was sent") };
        assert_eq!((got, sent.status()), (id, Some(200)));
        response_bytes += sent.as_bytes().len();
        drop(sent);
        assert!(table.poll_transmit().is_none() && table.poll_event().is_none(), "REGISTER {i}: one 200, no more");
        assert_eq!(table.state(id), Some(TransactionState::Completed));
    }
    let completed = CURRENT.load(Ordering::Relaxed) - baseline;
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    assert_eq!(table.len(), N, "all {N} wait out Timer J at once");

    // A retransmitted REGISTER in Completed gets the identical 200 again (§17.2.2), and reaches
    // the TU no more.
    let now = arrival(N - 1);
    for i in (0..N).step_by(RETRANSMIT_EVERY) {
        let id = ids[i].expect("opened");
        assert_eq!(table.handle_request(parse(register_datagram(i)), now), Ok(Routed::Matched(id)));
        let first = ok(&parse(register_datagram(i)), i);
        let Some((got, again)) = table.poll_transmit() else { panic!("REGISTER {i}: the retransmission is answered") };
        assert_eq!(got, id);
        assert_eq!(again.as_bytes(), first.as_bytes(), "REGISTER {i}: the same 200, byte for byte");
        assert!(table.poll_transmit().is_none() && table.poll_event().is_none(), "REGISTER {i}: one answer, no event");
    }

    // Timer J: each ends 64*T1 after its 200, and nothing is left.
    super::run_out(&mut table, &index_of, arrival, "J");
    let left = CURRENT.load(Ordering::Relaxed).saturating_sub(baseline);

    let per = |bytes: usize| bytes as f64 / N as f64;
    println!("{N} REGISTER server transactions in Completed (Timer J)");
    println!("  REGISTER datagrams {:.0} bytes, 200 responses {:.0} bytes, on average", per(request_bytes), per(response_bytes));
    println!("  heap per completed transaction: {:.0} bytes ({:.1} MiB for {N})", per(completed), completed as f64 / 1048576.0);
    println!("  peak heap per transaction:      {:.0} bytes", per(peak));
    println!("  after Timer J: {} live, heap kept by the table's capacity {:.0} bytes per slot", table.len(), per(left));
    assert!(completed < BOUND * N, "{:.0} bytes per completed transaction", per(completed));
}

/// The same REGISTERs through the [`Endpoint`] (datagram in, Via stamped, owner recorded, 200 out),
/// so the figure includes what the endpoint keeps beside each transaction (peer, owner, To tag).
#[test]
fn completed_registers_through_the_endpoint_cost_little() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = Instant::now();
    let arrival = |i: usize| base + ARRIVAL_GAP * i as u32;
    let config = EndpointConfig { allow: format!("{ALLOW}, REGISTER"), max_transactions: 2 * N, ..EndpointConfig::default() };
    let mut endpoint = Endpoint::new(config);

    let baseline = CURRENT.load(Ordering::Relaxed);
    for i in 0..N {
        let at = arrival(i);
        let source = SocketAddr::from(([192, 0, 2 + (i / 60_000) as u8, 1 + (i % 250) as u8], 5060 + ((i / 250) % 240) as u16));
        endpoint.handle_datagram(source, register_datagram(i), at);
        let Some(EndpointEvent::Request { tx, request, .. }) = endpoint.poll_event() else { panic!("REGISTER {i} reaches the TU") };
        assert!(endpoint.set_owner(tx, Owner::Registrar));
        let response = ok(&request, i);
        drop(request);
        endpoint.respond(tx, response, at).expect("the first final response is accepted");
        let sent = endpoint.poll_transmit().expect("the 200 is sent");
        assert_eq!((sent.dest, &sent.payload[..12]), (source, &b"SIP/2.0 200 "[..]));
        drop(sent);
        assert!(endpoint.poll_transmit().is_none() && endpoint.poll_event().is_none(), "REGISTER {i}: one 200, no more");
    }
    let completed = CURRENT.load(Ordering::Relaxed) - baseline;
    assert_eq!(endpoint.transaction_count(), N, "all {N} wait out Timer J at once");

    super::run_out_endpoint(&mut endpoint, N, Owner::Registrar, "J");
    println!("{N} REGISTERs through the endpoint, in Completed (Timer J)");
    println!("  heap per completed transaction: {:.0} bytes", completed as f64 / N as f64);
    assert!(completed < BOUND * N, "{:.0} bytes per completed transaction", completed as f64 / N as f64);
}

/// Heap bytes a completed REGISTER answered with [`Endpoint::respond_rebuildable`] may hold at
/// most: a key digest, a request fingerprint and Timer J, with the map's and queue's slack.
const REBUILDABLE_BOUND: usize = 128;

/// The same REGISTERs through the [`Endpoint`], answered with [`Endpoint::respond_rebuildable`] (as
/// the registrar answers a 200): the Completed transaction keeps no response, and a retransmitted
/// REGISTER comes back as [`EndpointEvent::Repeated`] for the registrar to build the same 200 again.
/// One in 1,000 is retransmitted (rebuilt: identical bytes, as the registrar's 200 is a function of
/// the request and the bindings); one in 1,000 others is sent again with one byte changed under the
/// same branch (absorbed: not the request answered). After Timer J nothing is left, and a
/// retransmission then is a new request.
#[test]
fn rebuildable_completed_registers_cost_a_few_dozen_bytes() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = Instant::now();
    let arrival = |i: usize| base + ARRIVAL_GAP * i as u32;
    let source_of = |i: usize| SocketAddr::from(([192, 0, 2 + (i / 60_000) as u8, 1 + (i % 250) as u8], 5060 + ((i / 250) % 240) as u16));
    let config = EndpointConfig { allow: format!("{ALLOW}, REGISTER"), max_transactions: 2 * N, ..EndpointConfig::default() };
    let mut endpoint = Endpoint::new(config);
    let mut answered: Vec<Bytes> = Vec::with_capacity(N / RETRANSMIT_EVERY + 1);

    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    for i in 0..N {
        let (at, source) = (arrival(i), source_of(i));
        endpoint.handle_datagram(source, register_datagram(i), at);
        let Some(EndpointEvent::Request { tx, request, .. }) = endpoint.poll_event() else { panic!("REGISTER {i} reaches the TU") };
        assert!(endpoint.set_owner(tx, Owner::Registrar));
        let response = ok(&request, i);
        drop(request);
        endpoint.respond_rebuildable(tx, response, at).expect("the first final response is accepted");
        let sent = endpoint.poll_transmit().expect("the 200 is sent");
        assert_eq!((sent.dest, &sent.payload[..12]), (source, &b"SIP/2.0 200 "[..]));
        if i % RETRANSMIT_EVERY == 0 {
            answered.push(sent.payload.clone());
        }
        drop(sent);
        // The transaction's id ends at once; the transaction itself waits out Timer J compactly.
        assert!(matches!(endpoint.poll_event(), Some(EndpointEvent::Terminated { tx: t, owner: Owner::Registrar }) if t == tx));
        assert!(endpoint.poll_transmit().is_none() && endpoint.poll_event().is_none(), "REGISTER {i}: one 200, no more");
    }
    let completed = CURRENT.load(Ordering::Relaxed) - baseline;
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    assert_eq!(endpoint.transaction_count(), N, "all {N} wait out Timer J at once, and count");

    // Retransmissions while Completed: the same request comes back to be answered again, and the
    // 200 rebuilt from it is the one sent, byte for byte; a changed request under the same key is
    // absorbed.
    let now = arrival(N - 1);
    for (n, i) in (0..N).step_by(RETRANSMIT_EVERY).enumerate() {
        endpoint.handle_datagram(source_of(i), register_datagram(i), now);
        let Some(EndpointEvent::Repeated { request, source }) = endpoint.poll_event() else {
            panic!("REGISTER {i}: retransmission handed back")
        };
        assert_eq!(source, source_of(i));
        endpoint.resend_answer(&ok(&request, i), source);
        let again = endpoint.poll_transmit().expect("the rebuilt 200 is sent");
        assert_eq!((again.dest, &again.payload), (source, &answered[n]), "REGISTER {i}: the same 200, byte for byte");
        let mut changed = register_datagram(i + 1).to_vec();
        let other = register_datagram(i);
        // REGISTER i+1's bytes under REGISTER i's Via (same branch and sent-by): a key hit, other bytes.
        let via = |d: &[u8]| d.split(|&b| b == b'\n').nth(1).map(<[u8]>::to_vec).expect("a Via line");
        let (from, to) = (via(&changed), via(&other));
        let at = changed.windows(from.len()).position(|w| w == from).expect("the Via is there");
        changed.splice(at..at + from.len(), to);
        endpoint.handle_datagram(source_of(i), Bytes::from(changed), now);
        assert!(endpoint.poll_event().is_none() && endpoint.poll_transmit().is_none(), "REGISTER {i}: other bytes absorbed");
    }
    assert_eq!(endpoint.stats().retransmitted_requests, 2 * answered.len() as u64);

    // Timer J: nothing is sent or reported (the ids ended already), and nothing is left.
    let timer_j = Config::default().timeout();
    assert_eq!(endpoint.poll_timeout(), Some(arrival(0) + timer_j), "Timer J is the next deadline");
    let mut steps = 0;
    while let Some(due) = endpoint.poll_timeout() {
        endpoint.handle_timeout(due);
        assert!(endpoint.poll_transmit().is_none() && endpoint.poll_event().is_none(), "Timer J sends and reports nothing");
        steps += 1;
        assert!(steps <= N, "Timer J steps bounded");
    }
    let sizes = endpoint.table_sizes();
    assert_eq!(
        (sizes.transactions, sizes.transaction_keys, sizes.transaction_timers, sizes.peers, sizes.to_tags),
        (0, 0, 0, 0, 0),
        "nothing left"
    );
    // After Timer J the request is new again (the TU will see it, and refuse or take it).
    endpoint.handle_datagram(source_of(0), register_datagram(0), arrival(N) + timer_j);
    assert!(matches!(endpoint.poll_event(), Some(EndpointEvent::Request { .. })), "after Timer J: a new request");
    println!("{N} REGISTERs through the endpoint, answered rebuildably, in Completed (Timer J)");
    println!(
        "  heap per completed transaction: {:.0} bytes (peak while answering: {:.0})",
        completed as f64 / N as f64,
        peak as f64 / N as f64
    );
    assert!(completed < REBUILDABLE_BOUND * N, "{:.0} bytes per completed transaction", completed as f64 / N as f64);
}
