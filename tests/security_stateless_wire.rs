//! Stateless challenges (issue 14 point 3) on real sockets: the real `switchboard serve` with room
//! for only 20 live transactions answers 600 unauthenticated REGISTERs and INVITEs from a stranger
//! on 127.0.0.2 with 401/407, and never with the 503 a full transaction table gives. A challenge
//! that kept its transaction (Timer J, 32 s) would fill the table after 20 of them. Then alice,
//! from 127.0.0.1, registers with her password as usual.

#[path = "common/phone.rs"]
mod phone;
#[path = "common/procs.rs"]
mod procs;

use phone::{start, Phone};
use procs::TempDir;
use switchboard::message::Method;

#[test]
fn challenges_keep_no_transaction_so_a_small_table_never_fills() {
    let dir = TempDir::new("sec-stateless-wire");
    // The flood comes from one address: the rate limit is off so every request is answered.
    let (svc, service) = start(&dir, &["--max-transactions", "20", "--rate-limit", "0"]);
    let mut stranger = Phone::new("127.0.0.2", service);
    let mut answers = std::collections::BTreeMap::<(String, u16), u32>::new();
    for i in 0..300 {
        for method in [Method::Register, Method::Invite] {
            let req = stranger.request(method.clone(), &format!("user{i}"), None);
            let status = stranger.transact(&req).status().unwrap_or(0);
            *answers.entry((method.as_str().to_owned(), status)).or_default() += 1;
        }
    }
    let expected: std::collections::BTreeMap<(String, u16), u32> =
        [(("INVITE".to_owned(), 407), 300), (("REGISTER".to_owned(), 401), 300)].into_iter().collect();
    assert_eq!(answers, expected, "every unauthenticated request is challenged, none refused as overload\n{}", svc.transcript());
    assert_eq!(Phone::new("127.0.0.1", service).register("alice", "alice-secret"), 200, "{}", svc.transcript());
}
