//! 100,000 concurrent server transactions in one [`Transactions`] table on a virtual clock, and the
//! heap memory they cost: INVITEs answered after a pause (below), and REGISTERs waiting out Timer J
//! in Completed (`completed_register_transactions_cost_little`, issue 16 point 4); and 100,000
//! INVITE client transactions waiting out Timer M in Accepted
//! (`accepted_invite_client_transactions_cost_little`).
//!
//! Setup: a counting global allocator (current and peak bytes) wraps `System` for this test binary;
//! its tests take [`SERIAL`] so that no other test allocates beside the one measuring.
//! 100,000 distinct INVITEs (own branch, sent-by, Call-ID and From tag; about 850 bytes with an SDP
//! offer) are written as datagrams of exactly their size, as the UDP transport hands them over, and
//! reach the table 10 µs apart, over one virtual second. The TU stays silent for 1.5 s, so every
//! transaction sends its own `100 Trying` (200 ms) and all 100,000 are live at once; then it answers
//! even ones with a 200 carrying an SDP answer (the transaction ends at once, §17.2.1) and odd ones
//! with 486. The ACK for a 486 comes 1.6 s later (Timer G has resent it twice by then), and Timer I
//! ends the transaction 5 s after that; one 486 in 50 is never ACKed, so Timer G runs on until
//! Timer H. The test plays the driver: fires `handle_timeout` at each `poll_timeout` in time order
//! with the inputs, and drains `poll_transmit` / `poll_event` after every step.
//!
//! Asserts: every transaction was announced once and reached Terminated once, the ACKed and the
//! timed-out ones went the way the RFC says, and at the end the table and its timer heap are empty.
//! The memory figure (peak bytes above the baseline, per transaction) is printed and asserted only
//! loosely: `cargo test --release --test transaction_scale -- --nocapture` shows it.

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchboard::endpoint::{Endpoint, EndpointEvent, Owner};
use switchboard::message::{HeaderName, Message};
use switchboard::transaction::{build_ack, Config, Event, Routed, TransactionId, Transactions};

// ===== counting allocator =====

/// Counts live heap bytes and their high-water mark, and defers every call to [`System`].
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which meets the `GlobalAlloc`
// contract; the counters only read `Layout` sizes and never touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            match new_size.checked_sub(layout.size()) {
                Some(more) => grew(more),
                None => shrank(layout.size() - new_size),
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by each test for its whole run: the counters are global to the binary.
static SERIAL: Mutex<()> = Mutex::new(());

#[path = "transaction_scale/register.rs"]
mod register;

#[path = "transaction_scale/client.rs"]
mod client;

// ===== the scenario =====

const N: usize = 100_000;
/// INVITE `i` arrives at `i * ARRIVAL_GAP`: all of them within one second.
const ARRIVAL_GAP: Duration = Duration::from_micros(10);
/// The TU answers INVITE `i` this long after it arrived.
const ANSWER_AFTER: Duration = Duration::from_millis(1_500);
/// The ACK for a 486 arrives this long after the 486: after Timer G fired at 0.5 s and 1.5 s.
const ACK_AFTER: Duration = Duration::from_millis(1_600);

const SDP_ANSWER: &str = "v=0\r\no=bob 2808844564 2808844564 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\n\
t=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

/// Runs out the one timer the transactions in `table` still wait on (Timer `timer`, 64*T1 after
/// each one's `arrival`): each ends then, once, sending nothing; afterwards no transaction, key or
/// timer is left.
fn run_out(table: &mut Transactions, index_of: &HashMap<TransactionId, usize>, arrival: impl Fn(usize) -> Instant, timer: &str) {
    let timeout = Config::default().timeout();
    assert_eq!(table.poll_timeout(), Some(arrival(0) + timeout), "Timer {timer} is the next deadline");
    let mut terminated = vec![false; index_of.len()];
    let mut ended = 0;
    while let Some(due) = table.poll_timeout() {
        table.handle_timeout(due);
        assert!(table.poll_transmit().is_none(), "Timer {timer} sends nothing");
        while let Some((id, event)) = table.poll_event() {
            assert_eq!(event, Event::Terminated, "Timer {timer} only terminates");
            let i = index_of[&id];
            assert!(!terminated[i], "transaction {i} terminated twice");
            assert_eq!(due, arrival(i) + timeout, "transaction {i} ended by Timer {timer}");
            terminated[i] = true;
            ended += 1;
        }
    }
    assert_eq!(ended, index_of.len(), "every transaction reached Terminated");
    assert!(table.is_empty() && table.poll_timeout().is_none(), "no transaction and no timer left");
    assert_eq!(table.index_sizes(), (0, 0), "key index and timer heap empty");
}

/// [`run_out`] through the endpoint: its last timer (Timer `timer`) ends each of its `n`
/// transactions, sending nothing and telling `owner`; afterwards no transaction, key, timer,
/// peer or kept To tag is left.
fn run_out_endpoint(endpoint: &mut Endpoint, n: usize, owner: Owner, timer: &str) {
    let mut ended = 0;
    while let Some(due) = endpoint.poll_timeout() {
        endpoint.handle_timeout(due);
        assert!(endpoint.poll_transmit().is_none(), "Timer {timer} sends nothing");
        while let Some(event) = endpoint.poll_event() {
            assert!(matches!(event, EndpointEvent::Terminated { owner: o, .. } if o == owner), "{event:?}");
            ended += 1;
        }
    }
    assert_eq!(ended, n, "every transaction reached Terminated, with its owner");
    let sizes = endpoint.table_sizes();
    assert_eq!(
        (sizes.transactions, sizes.transaction_keys, sizes.transaction_timers, sizes.peers, sizes.to_tags),
        (0, 0, 0, 0, 0),
        "nothing left"
    );
}

/// Odd INVITEs are refused with 486; even ones accepted with 200.
fn busy(i: usize) -> bool {
    i % 2 == 1
}

/// A 486 whose ACK never comes: Timer G runs until Timer H (one in 50 of the 486s).
fn ack_lost(i: usize) -> bool {
    i % 100 == 99
}

/// A 486 whose ACK arrives.
fn acked(i: usize) -> bool {
    busy(i) && !ack_lost(i)
}

/// INVITE `i` as the UDP transport hands it over: one allocation of exactly the datagram's size.
fn invite_datagram(i: usize) -> Bytes {
    let (host, port) = (format!("192.0.{}.{}", 2 + i / 60_000, 1 + i % 250), 5060 + (i / 250) % 240);
    let sdp = format!(
        "v=0\r\no=alice {id} {id} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n\
         m=audio {rtp} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=rtcp:{rtcp}\r\na=ptime:20\r\n",
        id = 2_890_844_526u64 + i as u64,
        rtp = 20_000 + 2 * (i % 10_000),
        rtcp = 20_001 + 2 * (i % 10_000),
    );
    let wire = format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{i:08x}f3a9c1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice {i}\" <sip:alice{i}@atlanta.example.com>;tag={tag:010x}\r\n\
         To: \"Bob\" <sip:bob@biloxi.example.com>\r\n\
         Call-ID: {call:016x}{i:06}@atlanta.example.com\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice{i}@{host}:{port};transport=udp>\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n\
         Supported: replaces, timer\r\n\
         Session-Expires: 1800;refresher=uac\r\n\
         Min-SE: 90\r\n\
         User-Agent: switchboard-scale/0.1\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        tag = 0x9f_0000_0000u64 + i as u64 * 7919,
        call = 0x3848_2762_9822_0188u64 ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        len = sdp.len(),
    );
    Bytes::copy_from_slice(wire.as_bytes())
}

/// The UAS's To tag for transaction `i`: the ACK for its 486 must carry it.
fn to_tag(i: usize) -> String {
    format!("uas{i:06x}")
}

/// The TU's final answer to INVITE `i`.
fn answer(invite: &Message, i: usize) -> Message {
    let tag = to_tag(i);
    if busy(i) {
        invite.response_to(486, "Busy Here", Some(&tag)).finish()
    } else {
        invite
            .response_to(200, "OK", Some(&tag))
            .header(HeaderName::Contact, "<sip:bob@198.51.100.7:5060;transport=udp>")
            .header(HeaderName::Supported, "replaces, timer")
            .body("application/sdp", SDP_ANSWER.as_bytes())
    }
}

/// The ACK the UAC sends for the 486 to INVITE `i`, as a datagram again.
fn ack_datagram(invite: &Message, i: usize) -> Message {
    let ack = build_ack(invite, &answer(invite, i)).expect("the INVITE and the 486 carry what an ACK needs");
    Message::parse(Bytes::copy_from_slice(ack.as_bytes())).expect("a built ACK parses")
}

/// What the test saw come out of the table.
#[derive(Debug, Default)]
struct Tally {
    requests: usize,
    trying: usize,
    ok: usize,
    busy: usize,
    timeouts: usize,
    terminated: usize,
}

/// The test's own bookkeeping, allocated before the baseline so it is not charged to the table.
struct Book {
    ids: Vec<Option<TransactionId>>,
    index_of: HashMap<TransactionId, usize>,
    terminated: Vec<bool>,
    tally: Tally,
}

impl Book {
    /// Drains every output of the table, as a driver does after each step.
    fn drain(&mut self, table: &mut Transactions) {
        while let Some((_, msg)) = table.poll_transmit() {
            match msg.status() {
                Some(100) => self.tally.trying += 1,
                Some(200) => self.tally.ok += 1,
                Some(486) => self.tally.busy += 1,
                other => panic!("a server transaction sent {other:?}"),
            }
        }
        while let Some((id, event)) = table.poll_event() {
            match event {
                Event::Request(_) => self.tally.requests += 1,
                Event::Timeout => self.tally.timeouts += 1,
                Event::Terminated => {
                    let i = self.index_of[&id];
                    assert!(!self.terminated[i], "transaction {i} terminated twice");
                    self.terminated[i] = true;
                    self.tally.terminated += 1;
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }
}

/// The next input the test plays, in time order: an INVITE, the TU's answer, or an ACK.
#[derive(Debug, Clone, Copy)]
enum Input {
    Invite(usize),
    Answer(usize),
    Ack(usize),
}

/// Cursors over the three input streams, each sorted by time.
struct Script {
    base: Instant,
    invite: usize,
    answer: usize,
    ack: usize,
}

impl Script {
    fn arrival(&self, i: usize) -> Instant {
        self.base + ARRIVAL_GAP * i as u32
    }

    fn next(&mut self) -> Option<(Instant, Input)> {
        while self.ack < N && !acked(self.ack) {
            self.ack += 1;
        }
        let candidates = [
            (self.invite < N).then(|| (self.arrival(self.invite), Input::Invite(self.invite))),
            (self.answer < N).then(|| (self.arrival(self.answer) + ANSWER_AFTER, Input::Answer(self.answer))),
            (self.ack < N).then(|| (self.arrival(self.ack) + ANSWER_AFTER + ACK_AFTER, Input::Ack(self.ack))),
        ];
        candidates.into_iter().flatten().min_by_key(|(at, _)| *at)
    }

    fn advance(&mut self, input: Input) {
        match input {
            Input::Invite(_) => self.invite += 1,
            Input::Answer(_) => self.answer += 1,
            Input::Ack(_) => self.ack += 1,
        }
    }
}

#[test]
fn hundred_thousand_concurrent_invite_server_transactions_complete_and_report_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = Instant::now();
    let mut table = Transactions::new(Config::default());
    let mut book = Book { ids: vec![None; N], index_of: HashMap::with_capacity(N), terminated: vec![false; N], tally: Tally::default() };
    let mut datagrams: Vec<Bytes> = Vec::with_capacity(N);

    let baseline = CURRENT.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    datagrams.extend((0..N).map(invite_datagram));
    let request_bytes: usize = datagrams.iter().map(Bytes::len).sum();
    assert!((600..=900).contains(&(request_bytes / N)), "INVITEs of realistic size, {} bytes", request_bytes / N);

    let mut script = Script { base, invite: 0, answer: 0, ack: 0 };
    let (mut max_live, mut steps, mut acks) = (0, 0usize, 0);
    // The heap at the moment all N are live, to check where the peak falls.
    let mut at_full = 0;
    loop {
        let input = script.next();
        match (table.poll_timeout(), input) {
            (Some(due), Some((at, _))) if due <= at => table.handle_timeout(due),
            (Some(due), None) => table.handle_timeout(due),
            (_, Some((at, input))) => {
                script.advance(input);
                match input {
                    Input::Invite(i) => {
                        let request = Message::parse(std::mem::take(&mut datagrams[i])).expect("the INVITE parses");
                        let Ok(Routed::New(id)) = table.handle_request(request, at) else { panic!("INVITE {i} opens a transaction") };
                        book.ids[i] = Some(id);
                        book.index_of.insert(id, i);
                    }
                    Input::Answer(i) => {
                        let id = book.ids[i].expect("answered after it arrived");
                        let response = answer(table.request(id).expect("live until answered"), i);
                        table.send_response(id, response, at).expect("the first final response is accepted");
                    }
                    Input::Ack(i) => {
                        let id = book.ids[i].expect("ACKed after it arrived");
                        // Completed keeps no request (issue 16 point 4): the UAC's copy of the INVITE.
                        let invite = Message::parse(invite_datagram(i)).expect("the INVITE parses");
                        let ack = ack_datagram(&invite, i);
                        assert_eq!(table.handle_request(ack, at), Ok(Routed::Matched(id)), "ACK {i} matches its INVITE");
                        acks += 1;
                    }
                }
            }
            (None, None) => break,
        }
        book.drain(&mut table);
        max_live = max_live.max(table.len());
        if table.len() == N {
            at_full = at_full.max(CURRENT.load(Ordering::Relaxed));
        }
        steps += 1;
        assert!(steps < 10 * N, "the run does not converge");
    }
    let peak = PEAK.load(Ordering::Relaxed) - baseline;

    // Everything ran to the end.
    let t = &book.tally;
    let (n_busy, n_lost) = ((0..N).filter(|&i| busy(i)).count(), (0..N).filter(|&i| ack_lost(i)).count());
    assert_eq!(max_live, N, "all transactions were live at once");
    assert!(table.is_empty() && table.poll_timeout().is_none(), "no transaction and no timer left");
    assert!(book.terminated.iter().all(|&done| done), "every transaction reached Terminated");
    assert_eq!((t.requests, t.trying, t.terminated), (N, N, N));
    assert_eq!((t.ok, acks, t.timeouts), (N - n_busy, n_busy - n_lost, n_lost));
    // Each 486 went out once plus twice by Timer G before its ACK; the unACKed ones 11 times by H.
    assert_eq!(t.busy, 3 * (n_busy - n_lost) + 11 * n_lost);

    let per = |bytes: usize| bytes as f64 / N as f64;
    println!("{N} concurrent INVITE server transactions, {} virtual steps", steps);
    println!("  INVITE datagrams: {:.0} bytes each on average", per(request_bytes));
    println!(
        "  peak heap above baseline: {:.1} MiB ({:.1} MiB with all {N} live)",
        peak as f64 / 1048576.0,
        (at_full - baseline) as f64 / 1048576.0
    );
    println!("  peak per transaction, with the request datagram:    {:.0} bytes", per(peak));
    println!("  peak per transaction, without the request datagram: {:.0} bytes", per(peak.saturating_sub(request_bytes)));
    assert!(per(peak) < 16.0 * 1024.0, "{:.0} bytes per transaction", per(peak));
}
