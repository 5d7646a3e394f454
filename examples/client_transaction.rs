//! An INVITE client transaction (RFC 3261 §17.1.1, Figure 5) driven by a fake clock.
//!
//! `cargo run --example client_transaction`
//!
//! The machine is sans-IO: it never reads a clock or touches a socket. Every input carries `now`,
//! `next_timer()` says which timer is due and when, and we simply jump the clock there. So 32 s
//! of protocol time run in microseconds, and the output is the same on every run.

use std::time::{Duration, Instant};
use switchboard::message::{HeaderName, Message, Method};
use switchboard::transaction::{ClientInvite, Config, Event, TransactionState};

/// A minimal INVITE. The top Via's `branch` (magic cookie `z9hG4bK`, §8.1.1.7) names the transaction.
fn invite(branch: &str) -> Message {
    Message::request(Method::Invite, "sip:bob@192.0.2.2")
        .header(HeaderName::Via, format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"))
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, "<sip:bob@192.0.2.2>")
        .header(HeaderName::From, "<sip:alice@192.0.2.1>;tag=a1")
        .header(HeaderName::CallId, format!("{branch}@192.0.2.1"))
        .header(HeaderName::CSeq, "1 INVITE")
        .finish()
}

fn main() {
    let config = Config::default(); // T1 = 500 ms, T2 = 4 s, T4 = 5 s (Table 4)
    let t0 = Instant::now(); // any instant will do: only differences matter
    let secs = |at: Instant| (at - t0).as_secs_f64();

    println!("run 1: nobody answers (UDP, T1 = {:?})", config.t1);
    let mut tx = ClientInvite::new(invite("z9hG4bK-run1"), t0, &config).expect("a well-formed INVITE");
    assert!(tx.poll_transmit().is_some(), "new() queues the first send");
    println!("  {:>5.1} s  INVITE sent, state {:?}", 0.0, tx.state());
    let mut resent = Vec::new();
    // §17.1.1.2: Timer A resends the INVITE after T1, then doubles (0.5, 1, 2, 4 s ... apart);
    // Timer B (64*T1 = 32 s) gives up. Jump to each deadline and fire it.
    while let Some((timer, at)) = tx.next_timer() {
        tx.handle_timeout(at);
        while tx.poll_transmit().is_some() {
            let gap = resent.last().map_or(secs(at), |&prev| secs(at) - prev);
            println!("  {:>5.1} s  Timer {timer:?}: INVITE resent ({gap:.1} s after the last send)", secs(at));
            resent.push(secs(at));
        }
        while let Some(event) = tx.poll_event() {
            println!("  {:>5.1} s  Timer {timer:?}: event {event:?}", secs(at));
        }
    }
    assert_eq!(resent, [0.5, 1.5, 3.5, 7.5, 15.5, 31.5], "Timer A doubles from T1");
    assert_eq!(tx.state(), TransactionState::Terminated, "Timer B fired at 32 s");

    println!("run 2: 180 Ringing at 0.8 s, 200 OK at 3 s");
    let request = invite("z9hG4bK-run2");
    let mut tx = ClientInvite::new(request.clone(), t0, &config).expect("a well-formed INVITE");
    assert!(tx.poll_transmit().is_some());
    println!("  {:>5.1} s  INVITE sent, state {:?}", 0.0, tx.state());
    let (timer, at) = tx.next_timer().expect("Timer A is armed in Calling");
    tx.handle_timeout(at);
    assert!(tx.poll_transmit().is_some());
    println!("  {:>5.1} s  Timer {timer:?}: INVITE resent, state {:?}", secs(at), tx.state());

    // A provisional response stops Timers A and B (§17.1.1.2): nothing is due in Proceeding.
    let ringing = request.response_to(180, "Ringing", Some("b1")).finish();
    tx.handle_response(ringing, t0 + Duration::from_millis(800)).expect("a response");
    assert!(matches!(tx.poll_event(), Some(Event::Response(r)) if r.status() == Some(180)), "the 1xx goes to the TU");
    println!("  {:>5.1} s  180 Ringing to the TU: state {:?}, next timer {:?}", 0.8, tx.state(), tx.next_timer());
    assert_eq!((tx.state(), tx.next_timer()), (TransactionState::Proceeding, None));

    // A 2xx goes to the TU and ends the transaction at once: the ACK for a 2xx is the dialog's
    // job, not the transaction's (§13.2.2.4, §17.1.1.2), so nothing is transmitted here.
    let ok = request.response_to(200, "OK", Some("b1")).finish();
    tx.handle_response(ok, t0 + Duration::from_secs(3)).expect("a response");
    let events: Vec<Event> = std::iter::from_fn(|| tx.poll_event()).collect();
    for e in &events {
        let shown = match e {
            Event::Response(r) => format!("Response({})", r.status().unwrap_or(0)),
            other => format!("{other:?}"),
        };
        println!("  {:>5.1} s  event {shown}", 3.0);
    }
    assert!(matches!(events.as_slice(), [Event::Response(_), Event::Terminated]));
    assert!(tx.poll_transmit().is_none(), "no ACK from the transaction for a 2xx");
    println!("  state {:?}; the TU (dialog layer) now sends the ACK itself", tx.state());
}
