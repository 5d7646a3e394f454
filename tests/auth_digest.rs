//! Digest authentication end to end (RFC 3261 §22, RFC 7616, RFC 8760), without I/O.
//!
//! Setup: a `DigestServer` for realm `example.com` with a fixed secret, users stored as
//! `UserRecord`s, and REGISTER requests built with the message builder. Time is a virtual
//! `Duration` since the epoch. Asserts: the RFC 7616 §3.9.1 vectors, client -> server round trips
//! for both algorithms, and each `Verdict` for wrong, replayed, stale, forged, foreign and
//! malformed credentials.

use std::time::Duration;
use switchboard::auth::{
    authorize, best_challenge, ha1, is_stale, response, Algorithm, ClientError, Credentials, DigestClient, DigestServer, NonceCheck, Qop,
    UserRecord, Verdict, DEFAULT_NONCE_LIFETIME,
};
use switchboard::message::{AuthHeader, HeaderName, Message, Method};

const REALM: &str = "example.com";
const SECRET: [u8; 32] = [0x5a; 32];
const URI: &str = "sip:example.com";
const T0: Duration = Duration::from_secs(1_750_000_000);

fn server() -> DigestServer {
    DigestServer::new(REALM, SECRET, DEFAULT_NONCE_LIFETIME)
}

fn alice() -> UserRecord {
    UserRecord::new("alice", REALM, "wonderland")
}

fn lookup(user: &str, alg: Algorithm) -> Option<String> {
    let a = alice();
    (user == a.name).then(|| a.ha1(alg).to_owned())
}

/// A REGISTER to [`URI`] carrying the given credentials headers.
fn register(auth: &[(HeaderName, &str)]) -> Message {
    let mut b = Message::request(Method::Register, URI)
        .header(HeaderName::Via, "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKauth1")
        .header(HeaderName::From, "<sip:alice@example.com>;tag=f1")
        .header(HeaderName::To, "<sip:alice@example.com>")
        .header(HeaderName::CallId, "auth-test@192.0.2.10")
        .header(HeaderName::CSeq, "2 REGISTER");
    for (name, value) in auth {
        b.push(*name, value);
    }
    b.finish()
}

/// The challenge of `server` for `alg`, as a 401 would carry it.
fn challenge_for(server: &mut DigestServer, now: Duration, alg: Algorithm) -> String {
    let all = server.challenge(now, false, false);
    all.into_iter().map(|(_, v)| v).find(|v| v.ends_with(alg.token())).expect("one challenge per algorithm")
}

fn credentials(challenge: &str, password: &str, cnonce: &str, nc: u32) -> String {
    let h = AuthHeader::parse(challenge).expect("challenge syntax");
    authorize(&h, "alice", password, "REGISTER", URI, cnonce, nc).expect("answerable challenge")
}

#[test]
fn rfc7616_example_vectors() {
    let (user, pass, realm) = ("Mufasa", "Circle of Life", "http-auth@example.org");
    let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
    let opaque = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
    for (alg, want) in [
        (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        (Algorithm::Sha256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ] {
        let h1 = ha1(alg, user, realm, pass);
        assert_eq!(response(alg, &h1, nonce, "00000001", cnonce, Some(Qop::Auth), "GET", "/dir/index.html"), want, "{alg}");
        // The same through the client, from the challenge of RFC 7616 §3.9.1.
        let challenge =
            format!("Digest realm=\"{realm}\", qop=\"auth, auth-int\", algorithm={alg}, nonce=\"{nonce}\", opaque=\"{opaque}\"");
        let value = authorize(&AuthHeader::parse(&challenge).unwrap(), user, pass, "GET", "/dir/index.html", cnonce, 1).unwrap();
        let creds = AuthHeader::parse(&value).unwrap();
        assert_eq!(creds.get("response").as_deref(), Some(want));
        assert_eq!(creds.raw("nc"), Some("00000001"));
        assert_eq!(creds.raw("qop"), Some("auth"));
        assert_eq!(creds.get("opaque").as_deref(), Some(opaque));
    }
}

#[test]
fn round_trip_sha256_and_md5() {
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        let mut s = server();
        let value = credentials(&challenge_for(&mut s, T0, alg), "wonderland", "c0ffee", 1);
        assert!(value.contains(&format!("algorithm={alg}")));
        let v = s.verify(&register(&[(HeaderName::Authorization, &value)]), false, T0 + Duration::from_secs(1), lookup);
        assert_eq!(v, Verdict::Authorized { user: "alice".into() }, "{alg}");
    }
}

/// The server reuses the last `H(method ":" uri)` while they stay the same: changing the
/// algorithm, the digest uri or the signed method in between still gives the right verdict.
#[test]
fn a_reused_ha2_follows_algorithm_uri_and_method() {
    let mut s = server();
    s.set_exact_uri(false);
    let signed = |s: &mut DigestServer, alg: Algorithm, method: &str, uri: &str, cnonce: &str| {
        let challenge = challenge_for(s, T0, alg);
        let h = AuthHeader::parse(&challenge).unwrap();
        authorize(&h, "alice", "wonderland", method, uri, cnonce, 1).unwrap()
    };
    let authorized = Verdict::Authorized { user: "alice".into() };
    let wrong = Verdict::Wrong;
    for (step, (alg, method, uri, want)) in [
        (Algorithm::Md5, "REGISTER", URI, &authorized),
        (Algorithm::Md5, "REGISTER", URI, &authorized),
        (Algorithm::Sha256, "REGISTER", URI, &authorized),
        (Algorithm::Md5, "REGISTER", "sip:other.example.com", &authorized),
        (Algorithm::Md5, "REGISTER", URI, &authorized),
        // Signed for another method than the request's: the server hashes the request's method.
        (Algorithm::Md5, "INVITE", URI, &wrong),
        (Algorithm::Md5, "REGISTER", URI, &authorized),
    ]
    .into_iter()
    .enumerate()
    {
        let value = signed(&mut s, alg, method, uri, &format!("c{step}"));
        let v = s.verify(&register(&[(HeaderName::Authorization, &value)]), false, T0, lookup);
        assert_eq!(&v, want, "step {step}: {alg} {method} {uri}");
    }
}

#[test]
fn client_prefers_sha256_and_answers_the_401() {
    let mut s = server();
    let req = register(&[]);
    assert_eq!(s.verify(&req, false, T0, lookup), Verdict::Missing);
    let resp = s.answer(&req, &Verdict::Missing, false, T0, Some("tag1")).expect("a 401");
    assert_eq!(resp.status(), Some(401));
    let algs: Vec<String> =
        resp.auth_headers(HeaderName::WwwAuthenticate).map(|h| h.unwrap().get("algorithm").unwrap().into_owned()).collect();
    assert_eq!(algs, ["SHA-256", "MD5"]);
    let c = best_challenge(&resp).unwrap();
    assert_eq!((c.algorithm, c.qop, c.stale, c.realm.as_ref()), (Algorithm::Sha256, Some(Qop::Auth), false, REALM));

    let mut client = DigestClient::new("alice", "wonderland");
    client.handle_challenge(&req, &resp).unwrap();
    let (name, value) = client.authorization("REGISTER", URI, "a1").unwrap();
    assert_eq!(name, HeaderName::Authorization);
    assert_eq!(s.verify(&register(&[(name, &value)]), false, T0, lookup), Verdict::Authorized { user: "alice".into() });
    // The next request reuses the nonce with nc=2.
    let (name, value) = client.authorization("REGISTER", URI, "a2").unwrap();
    assert!(value.contains("nc=00000002"));
    assert_eq!(s.verify(&register(&[(name, &value)]), false, T0, lookup), Verdict::Authorized { user: "alice".into() });
}

#[test]
fn wrong_password_or_unknown_user_is_wrong() {
    let mut s = server();
    let value = credentials(&challenge_for(&mut s, T0, Algorithm::Sha256), "looking-glass", "c1", 1);
    assert_eq!(s.verify(&register(&[(HeaderName::Authorization, &value)]), false, T0, lookup), Verdict::Wrong);
    let value = credentials(&challenge_for(&mut s, T0, Algorithm::Md5), "wonderland", "c1", 1);
    assert_eq!(s.verify(&register(&[(HeaderName::Authorization, &value)]), false, T0, |_, _| None), Verdict::Wrong);
    let resp = s.answer(&register(&[]), &Verdict::Wrong, false, T0, Some("t")).unwrap();
    assert_eq!(resp.status(), Some(403));
}

#[test]
fn replayed_credentials_are_refused() {
    let mut s = server();
    let challenge = challenge_for(&mut s, T0, Algorithm::Sha256);
    let first = register(&[(HeaderName::Authorization, &credentials(&challenge, "wonderland", "c", 2))]);
    assert!(matches!(s.verify(&first, false, T0, lookup), Verdict::Authorized { .. }));
    assert_eq!(s.verify(&first, false, T0, lookup), Verdict::Replay);
    let lower = register(&[(HeaderName::Authorization, &credentials(&challenge, "wonderland", "c", 1))]);
    assert_eq!(s.verify(&lower, false, T0, lookup), Verdict::Replay);
    let higher = register(&[(HeaderName::Authorization, &credentials(&challenge, "wonderland", "c", 3))]);
    assert!(matches!(s.verify(&higher, false, T0, lookup), Verdict::Authorized { .. }));
    // A replay is answered with a fresh challenge the honest client can use.
    let resp = s.answer(&first, &Verdict::Replay, false, T0, Some("t")).unwrap();
    assert_eq!(resp.status(), Some(401));
    assert!(best_challenge(&resp).unwrap().stale);
}

#[test]
fn rfc2069_credentials_are_good_once() {
    let mut s = server();
    let nonce = s.new_nonce(T0);
    let h1 = alice().ha1(Algorithm::Md5).to_owned();
    let resp = response(Algorithm::Md5, &h1, &nonce, "", "", None, "REGISTER", URI);
    let value = format!("Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", response=\"{resp}\"");
    let req = register(&[(HeaderName::Authorization, &value)]);
    assert!(matches!(s.verify(&req, false, T0, lookup), Verdict::Authorized { .. }));
    assert_eq!(s.verify(&req, false, T0, lookup), Verdict::Replay);
}

#[test]
fn expired_nonce_is_stale_and_the_client_retries() {
    let mut s = server();
    let req = register(&[]);
    let resp = s.answer(&req, &Verdict::Missing, false, T0, Some("t")).unwrap();
    let mut client = DigestClient::new("alice", "wonderland");
    client.handle_challenge(&req, &resp).unwrap();
    let (name, value) = client.authorization("REGISTER", URI, "x").unwrap();
    let late = T0 + DEFAULT_NONCE_LIFETIME + Duration::from_secs(1);
    let req = register(&[(name, &value)]);
    assert_eq!(s.check_nonce(client.challenge().unwrap().nonce.as_ref(), late), NonceCheck::Stale);
    assert_eq!(s.verify(&req, false, late, lookup), Verdict::Stale);

    let resp = s.answer(&req, &Verdict::Stale, false, late, Some("t")).unwrap();
    assert!(resp.auth_headers(HeaderName::WwwAuthenticate).all(|h| is_stale(&h.unwrap())));
    // stale=true: the client retries with the new nonce instead of giving up.
    client.handle_challenge(&req, &resp).unwrap();
    let (name, value) = client.authorization("REGISTER", URI, "y").unwrap();
    assert!(matches!(s.verify(&register(&[(name, &value)]), false, late, lookup), Verdict::Authorized { .. }));
}

#[test]
fn client_gives_up_on_a_second_plain_challenge() {
    let mut s = server();
    let req = register(&[]);
    let resp = s.answer(&req, &Verdict::Missing, false, T0, Some("t")).unwrap();
    let mut client = DigestClient::new("alice", "bad password");
    client.handle_challenge(&req, &resp).unwrap();
    let (name, value) = client.authorization("REGISTER", URI, "x").unwrap();
    let req = register(&[(name, &value)]);
    let again = s.answer(&req, &Verdict::Missing, false, T0, Some("t")).unwrap();
    assert_eq!(client.handle_challenge(&req, &again), Err(ClientError::Rejected));
}

#[test]
fn forged_nonce_is_never_authorized() {
    let mut s = server();
    // A nonce of the right shape minted with another secret, answered with the right password.
    let other = DigestServer::new(REALM, [1; 32], DEFAULT_NONCE_LIFETIME).challenge(T0, false, false);
    let value = credentials(&other[0].1, "wonderland", "c", 1);
    assert_eq!(s.check_nonce(AuthHeader::parse(&value).unwrap().get("nonce").unwrap().as_ref(), T0), NonceCheck::Forged);
    assert_eq!(s.verify(&register(&[(HeaderName::Authorization, &value)]), false, T0, lookup), Verdict::Stale);
    // A made-up nonce with a made-up response.
    let value = format!(
        "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", uri=\"{URI}\", \
         response=\"dfe56131d1958046689d83306477ecc5\", qop=auth, nc=00000001, cnonce=\"c\""
    );
    assert_eq!(s.verify(&register(&[(HeaderName::Authorization, &value)]), false, T0, lookup), Verdict::Wrong);
}

#[test]
fn nonces_survive_a_restart_with_the_same_secret() {
    let value = credentials(&challenge_for(&mut server(), T0, Algorithm::Sha256), "wonderland", "c", 1);
    let mut restarted = server();
    let v = restarted.verify(&register(&[(HeaderName::Authorization, &value)]), false, T0 + Duration::from_secs(30), lookup);
    assert!(matches!(v, Verdict::Authorized { .. }));
}

#[test]
fn other_realm_other_scheme_or_other_header_is_missing() {
    let mut s = server();
    let value = credentials(&challenge_for(&mut s, T0, Algorithm::Md5), "wonderland", "c", 1);
    let foreign = value.replace("realm=\"example.com\"", "realm=\"other.example.net\"");
    for auth in [
        vec![(HeaderName::Authorization, foreign.as_str())],
        // RFC 4475 §3.3.7 (regaut01): an unknown scheme.
        vec![(HeaderName::Authorization, "NoOneKnowsThisScheme opaque-data=here")],
        // Credentials for the proxy, not for us as a UAS.
        vec![(HeaderName::ProxyAuthorization, value.as_str())],
    ] {
        assert_eq!(s.verify(&register(&auth), false, T0, lookup), Verdict::Missing, "{auth:?}");
    }
    // Our credentials after a foreign line are found.
    let req = register(&[(HeaderName::Authorization, &foreign), (HeaderName::Authorization, &value)]);
    assert!(matches!(s.verify(&req, false, T0, lookup), Verdict::Authorized { .. }));
}

#[test]
fn proxy_authentication_uses_407_and_proxy_headers() {
    let mut s = server();
    let req = register(&[]);
    assert_eq!(s.verify(&req, true, T0, lookup), Verdict::Missing);
    let resp = s.answer(&req, &Verdict::Missing, true, T0, Some("t")).unwrap();
    assert_eq!(resp.status(), Some(407));
    assert_eq!(resp.auth_headers(HeaderName::ProxyAuthenticate).count(), 2);
    let mut client = DigestClient::new("alice", "wonderland");
    client.handle_challenge(&req, &resp).unwrap();
    let (name, value) = client.authorization("REGISTER", URI, "p").unwrap();
    assert_eq!(name, HeaderName::ProxyAuthorization);
    assert!(matches!(s.verify(&register(&[(name, &value)]), true, T0, lookup), Verdict::Authorized { .. }));
}

#[test]
fn malformed_credentials_are_bad_requests() {
    let mut s = server();
    let good = credentials(&challenge_for(&mut s, T0, Algorithm::Md5), "wonderland", "c", 1);
    let cases = [
        good.replace("algorithm=MD5", "algorithm=MD5-sess"),
        good.replace("algorithm=MD5", "algorithm=SHA-512-256"),
        good.replace("uri=\"sip:example.com\"", "uri=\"sip:elsewhere.example.com\""),
        good.replace("uri=\"sip:example.com\"", "uri=\"not a uri\""),
        good.replace("response=", "reply="),
        good.replace("nc=00000001", "nc=1"),
        format!("Digest realm=\"{REALM}\", username=\"alice\""),
    ];
    for value in &cases {
        assert_eq!(s.verify(&register(&[(HeaderName::Authorization, value)]), false, T0, lookup), Verdict::Malformed, "{value}");
    }
    assert_eq!(s.answer(&register(&[]), &Verdict::Malformed, false, T0, None).unwrap().status(), Some(400));
}

#[test]
fn replay_state_is_purged_after_the_lifetime() {
    let mut s = server();
    for i in 1..=3 {
        let value = credentials(&challenge_for(&mut s, T0, Algorithm::Sha256), "wonderland", "c", i);
        assert!(matches!(s.verify(&register(&[(HeaderName::Authorization, &value)]), false, T0, lookup), Verdict::Authorized { .. }));
    }
    assert_eq!(s.tracked_nonces(), 3);
    s.purge(T0 + DEFAULT_NONCE_LIFETIME);
    assert_eq!(s.tracked_nonces(), 3);
    s.purge(T0 + DEFAULT_NONCE_LIFETIME + Duration::from_secs(1));
    assert_eq!(s.tracked_nonces(), 0);
}

#[test]
fn register_auth_fixture_parses_into_credentials() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sip/register-auth.sip");
    let wire = std::fs::read(path).unwrap();
    let msg = Message::parse(wire.into()).unwrap();
    let h = msg.auth_headers(HeaderName::Authorization).next().unwrap().unwrap();
    let c = Credentials::parse(&h).unwrap();
    assert_eq!((c.username.as_ref(), c.realm.as_ref(), c.algorithm), ("bob", "biloxi.example.com", Algorithm::Md5));
    assert_eq!((c.nonce.as_ref(), c.uri.as_ref()), ("ea9c8e88df84f1cec4341ae6cbe5a359", "sip:registrar.biloxi.example.com"));
    assert_eq!(c.response, "dfe56131d1958046689d83306477ecc5");
    assert_eq!(c.opaque.as_deref(), Some("5ccc069c403ebaf9f0171e9517f40e41"));
    let q = c.qop.unwrap();
    assert_eq!((q.qop, q.nc, q.nc_text.as_ref(), q.cnonce.as_ref()), (Qop::Auth, 1, "00000001", "0a4f113b"));
    // Its nonce is not one of ours: never authorized, whatever the password.
    let mut s = DigestServer::new("biloxi.example.com", SECRET, DEFAULT_NONCE_LIFETIME);
    let bob = UserRecord::new("bob", "biloxi.example.com", "zanzibar");
    let v = s.verify(&msg, false, T0, |u, a| (u == "bob").then(|| bob.ha1(a).to_owned()));
    assert!(matches!(v, Verdict::Wrong | Verdict::Stale), "{v:?}");
}

#[test]
fn unauthorized_401_fixture_offers_sha256_first() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sip/unauthorized-401.sip");
    let msg = Message::parse(std::fs::read(path).unwrap().into()).unwrap();
    let c = best_challenge(&msg).unwrap();
    assert_eq!((c.algorithm, c.qop, c.stale, c.realm.as_ref()), (Algorithm::Sha256, Some(Qop::Auth), false, "biloxi.example.com"));
    assert_eq!(c.opaque.as_deref(), Some("5ccc069c403ebaf9f0171e9517f40e41"));
}

#[test]
fn mutated_credentials_never_panic_or_authorize() {
    let mut s = server();
    let good = credentials(&challenge_for(&mut s, T0, Algorithm::Sha256), "wonderland", "c", 1);
    let original = register(&[(HeaderName::Authorization, &good)]);
    assert!(matches!(s.verify(&original, false, T0, lookup), Verdict::Authorized { .. }));
    let wire = String::from_utf8(original.as_bytes().to_vec()).unwrap();
    let at = wire.find("Digest").unwrap();
    for i in at..at + good.len() {
        for patch in ["", "\"", ",", "=", "\\", "x", " ", "é"] {
            let mut m = wire.clone();
            m.replace_range(i..i + 1, patch);
            let Ok(msg) = Message::parse(m.into_bytes().into()) else { continue };
            let v = s.verify(&msg, false, T0, lookup);
            // A one-byte change either breaks the credentials or respells them (the same byte, the
            // case of a hex digit), and the original already used that nonce-count up.
            assert!(!matches!(v, Verdict::Authorized { .. }), "{i} {patch:?}: {v:?}");
        }
    }
}
