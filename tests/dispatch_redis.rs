//! The dispatcher with Redis (issue 17 points 2 and 3): the live set from its OPTIONS probes is
//! published in `sb:members` (key and channel) with an epoch that only rises, across dispatcher
//! restarts; and with instances sharing a Redis store, a phone registered through the dispatcher
//! is reached from another instance through it (Path / the binding's source).
//!
//! Each test starts its own `redis-server` on a free loopback port; without it the tests print
//! why they skip, and fail under `CI`. Every wait has a deadline.
//!
//! The two tests that kill an instance run twice at once, with instances of `--workers 1` and of
//! `--workers 2`, each run on its own `redis-server` (issue 16: correctness under sharding;
//! [`procs::each_worker_count`]).

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/procs.rs"]
mod procs;
#[path = "common/raw_sip.rs"]
mod raw_sip;
#[path = "common/redis.rs"]
mod redis_server;

use cluster::{dispatcher, instance, instance_workers, member, LIMIT};
use raw_sip::{addr_of, final_response, header, recv_starting, sdp_offer, socket, status};
use redis_server::redis;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::cluster::{key, membership, rendezvous, Membership};

/// Reads published memberships from the channel until one satisfies `want`.
fn next_published(ps: &mut redis::PubSub<'_>, want: impl Fn(&Membership) -> bool, seen: &mut Vec<Membership>) -> Membership {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        let Ok(msg) = ps.get_message() else { continue };
        let text: String = msg.get_payload().expect("payload");
        let m = Membership::parse(&text).expect("a published membership parses");
        seen.push(m.clone());
        if want(&m) {
            return m;
        }
    }
    panic!("no such membership published within {LIMIT:?}; seen {seen:?}");
}

fn stored(conn: &mut redis::Connection) -> Membership {
    let text: String = redis::cmd("GET").arg(membership::KEY).query(conn).expect("GET sb:members");
    Membership::parse(&text).expect("stored membership parses")
}

#[test]
fn the_live_set_is_published_with_an_epoch_that_only_rises() {
    procs::each_worker_count(|workers| {
        let Some(redis) = redis() else { return };
        let client = redis::Client::open(redis.url.as_str()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        // An earlier deployment left a higher epoch: ours must go above it.
        let _: () = redis::cmd("SET").arg(membership::KEY).arg("100 sip:127.0.0.1:1").query(&mut conn).expect("SET");
        let mut sub = client.get_connection().expect("subscriber");
        sub.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let mut ps = sub.as_pubsub();
        ps.subscribe(membership::CHANNEL).expect("SUBSCRIBE");

        let (_i1, a) = instance_workers(workers, 0, &[]);
        let (mut i2, b) = instance_workers(workers, 0, &[]);
        let probe = ["--probe-interval-ms", "200", "--probe-failures", "3", "--probe-recoveries", "2", "--store", &redis.url];
        let (mut d, _disp) = dispatcher(&[a, b], &probe);
        let mut seen = Vec::new();
        let both = next_published(&mut ps, |m| m.is_live(&member(a)) && m.is_live(&member(b)), &mut seen);
        assert!(both.epoch > 100, "{both:?}");
        assert_eq!(stored(&mut conn), both);

        i2.kill();
        let t0 = Instant::now();
        let one = next_published(&mut ps, |m| !m.is_live(&member(b)), &mut seen);
        println!("stopped instance out of the published set after {:?}: {}", t0.elapsed(), one.encode());
        assert_eq!(one.live, vec![member(a)]);
        assert!(one.epoch > both.epoch);
        assert_eq!(stored(&mut conn), one);

        // A restarted dispatcher starts from its own epoch 1: the compare-and-set lifts it above the
        // stored one, so the published epoch keeps rising.
        d.kill();
        let (_d2, _disp2) = dispatcher(&[a, b], &probe);
        let again = next_published(&mut ps, |m| m.epoch > one.epoch && !m.is_live(&member(b)), &mut seen);
        assert_eq!(again.live, vec![member(a)]);
        let epochs: Vec<u64> = seen.iter().map(|m| m.epoch).collect();
        assert!(epochs.windows(2).all(|w| w[0] < w[1]), "epochs only rise: {epochs:?}");
        assert_eq!(stored(&mut conn).epoch, *epochs.last().unwrap_or(&0));
    });
}

/// Redis stopped (SIGSTOP) while an instance dies: the dispatcher goes on dispatching to the live
/// one, and the new membership reaches Redis once it is back (SIGCONT), with a higher epoch.
#[test]
fn a_stopped_redis_delays_the_publication_but_not_the_dispatching() {
    procs::each_worker_count(|workers| {
        let Some(redis) = redis() else { return };
        let client = redis::Client::open(redis.url.as_str()).expect("client");
        let (_i1, a) = instance_workers(workers, 0, &[]);
        let (mut i2, b) = instance_workers(workers, 0, &[]);
        let (d, disp) =
            dispatcher(&[a, b], &["--probe-interval-ms", "200", "--probe-failures", "3", "--rate-limit", "0", "--store", &redis.url]);
        d.wait_line("membership published epoch=1", LIMIT).unwrap_or_else(|e| panic!("{e}"));
        let signal = |sig: &str| {
            let ok = std::process::Command::new("kill").args([sig, &redis.pid().to_string()]).status().expect("kill");
            assert!(ok.success(), "kill {sig}");
        };
        signal("-STOP");
        i2.kill();
        d.wait_line(&format!("membership epoch 2: {}", member(a)), LIMIT).unwrap_or_else(|e| panic!("{e}"));
        // Calls still go through, to the live instance.
        let sock = socket();
        for i in 0..4 {
            let call = cluster::echo_call(&sock, disp, &format!("during-{i}.test"));
            assert_eq!(call.answered_by, a);
            assert_eq!(cluster::bye(&sock, disp, &call, &call.route), 200);
        }
        signal("-CONT");
        let mut conn = client.get_connection().expect("connection");
        let deadline = Instant::now() + LIMIT;
        loop {
            let m = stored(&mut conn);
            if m.epoch >= 2 {
                assert_eq!(m.live, vec![member(a)], "{m:?}");
                break;
            }
            assert!(Instant::now() < deadline, "the membership never reached Redis after SIGCONT: {m:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// Bob registers through the dispatcher (instance a takes it: b is not up yet); instance b, up
/// later with the same Redis store, takes alice's call to bob and reaches bob through the
/// dispatcher, record-routed with b as the dialog's backend.
#[test]
fn a_phone_registered_through_one_instance_is_called_from_another() {
    let Some(redis) = redis() else { return };
    let store = ["--store", redis.url.as_str()];
    let (_ia, a) = instance(0, &store);
    let b = SocketAddr::from(([127, 0, 0, 1], procs::free_port_udp_tcp()));
    let (d, disp) = dispatcher(
        &[a, b],
        &["--probe-interval-ms", "100", "--probe-failures", "5", "--probe-recoveries", "1", "--rate-limit", "0", "--store", &redis.url],
    );
    d.wait_line(&format!("membership epoch 2: {}", member(a)), LIMIT).unwrap_or_else(|e| panic!("{e}"));

    let bob = socket();
    let bob_at = addr_of(&bob);
    raw_sip::register(&bob, disp, "bob", &format!("sip:bob@{bob_at}"), "reg-bob", 1);
    assert_eq!(status(&final_response(&bob, "reg-bob", LIMIT)), 200);
    // The 200 precedes the store writer's commit by a few ms: wait for the binding in Redis.
    let shared = switchboard::store::RedisStore::open(&redis.url).expect("open store");
    let deadline = Instant::now() + LIMIT;
    let binding = loop {
        let found = switchboard::store::Store::bindings(&shared).expect("bindings").into_iter().find(|b| b.aor.contains("bob"));
        match found {
            Some(b) => break b,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => panic!("bob's binding never reached Redis"),
        }
    };
    assert_eq!(binding.source, disp, "the binding's next hop is the dispatcher");

    let hop = disp.to_string();
    let mut flags = store.to_vec();
    flags.extend(["--dispatcher", hop.as_str()]);
    let (_ib, b2) = instance(b.port(), &flags);
    assert_eq!(b2, b);
    d.wait_line(&format!("membership epoch 3: {} {}", member(a), member(b)), LIMIT).unwrap_or_else(|e| panic!("{e}"));

    // A Call-ID that instance b owns.
    let names = [member(a), member(b)];
    let call_id = (0..).map(|i| format!("alice-{i}.test")).find(|id| rendezvous(key(id), &names) == Some(1)).unwrap_or_default();
    let alice = socket();
    raw_sip::invite(&alice, disp, "bob", &call_id, &sdp_offer(SocketAddr::from(([127, 0, 0, 1], 9))));

    let inv = recv_starting(&bob, "INVITE ", LIMIT);
    let rr = header(&inv, "Record-Route").expect("the dispatcher record-routes the callee leg");
    assert!(rr.contains(&format!("sip:{disp};lr")) && rr.contains(&format!("sb-backend={b}")), "{rr}");
    // Bob answers; alice gets the 200 from instance b.
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for l in inv.lines().filter(|l| ["Via:", "From:", "Call-ID:", "CSeq:", "Record-Route:"].iter().any(|h| l.starts_with(h))) {
        ok.push_str(l);
        ok.push_str("\r\n");
    }
    let to = header(&inv, "To").expect("To");
    let body = sdp_offer(SocketAddr::from(([127, 0, 0, 1], 11)));
    ok.push_str(&format!(
        "To: {to};tag=bob1\r\nContact: <sip:bob@{bob_at}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    bob.send_to(ok.as_bytes(), disp).expect("200");
    let answer = final_response(&alice, &call_id, LIMIT);
    assert_eq!(status(&answer), 200, "{answer}");
    let contact = header(&answer, "Contact").unwrap_or("");
    assert!(contact.contains(&b.to_string()), "the call is handled by instance b: {contact}");
    // The ACK of the callee leg comes to bob through the dispatcher too.
    let ack = recv_starting(&bob, "ACK ", LIMIT);
    assert!(ack.contains("Call-ID: "), "{ack}");
}
