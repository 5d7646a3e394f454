//! "No panic on any input": every torture and everyday fixture is mutated deterministically (bit flips,
//! truncations, duplicated and deleted lines, byte substitutions) and each variant goes through
//! `Message::parse` and, when it parses, through every accessor and every typed value's `to_string`.
//! Any panic fails the test with the file, the mutation and the offset. A parsed message must also
//! reparse to itself.

mod common;

use bytes::Bytes;
use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;
use switchboard::message::{percent_decode, AuthHeader, HeaderName, Message, NameAddr, Params, Uri, Via};

/// Offsets sampled for bit flips in files of 1 KiB or more (every offset below that).
const MAX_FLIP_OFFSETS: usize = 512;
/// Random offsets per file for the byte substitutions.
const SUBST_OFFSETS: usize = 48;
const SUBST_BYTES: &[u8] = b"\x00\xff:;,<\" \r\n";
const SUBST_NAMES: [&str; 10] =
    ["set 0x00", "set 0xff", "set ':'", "set ';'", "set ','", "set '<'", "set '\"'", "set ' '", "set CR", "set LF"];
const FLIPS: [&str; 8] = ["flip 0x01", "flip 0x02", "flip 0x04", "flip 0x08", "flip 0x10", "flip 0x20", "flip 0x40", "flip 0x80"];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed_for(name: &str) -> u64 {
    // FNV-1a of the file name, never zero.
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)) | 1
}

/// One mutation of a file: what was done, where, and the bytes.
struct Variant {
    what: &'static str,
    at: usize,
    bytes: Vec<u8>,
}

/// Line starts (each line includes its `\n`).
fn line_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < b.len() {
        out.push((start, b.len()));
    }
    out
}

fn variants(name: &str, b: &[u8], mut emit: impl FnMut(Variant)) {
    let n = b.len();
    // Bit flips.
    let stride = if n < 1024 { 1 } else { n.div_ceil(MAX_FLIP_OFFSETS) };
    for at in (0..n).step_by(stride) {
        for (bit, what) in FLIPS.iter().enumerate() {
            let mut v = b.to_vec();
            v[at] ^= 1 << bit;
            emit(Variant { what, at, bytes: v });
        }
    }
    // Truncations.
    for at in 0..n {
        emit(Variant { what: "truncate", at, bytes: b[..at].to_vec() });
    }
    // Lines duplicated and deleted.
    for (i, &(s, e)) in line_spans(b).iter().enumerate() {
        let mut dup = Vec::with_capacity(n + e - s);
        dup.extend_from_slice(&b[..e]);
        dup.extend_from_slice(&b[s..]);
        emit(Variant { what: "duplicate line", at: i, bytes: dup });
        let mut del = Vec::with_capacity(n);
        del.extend_from_slice(&b[..s]);
        del.extend_from_slice(&b[e..]);
        emit(Variant { what: "delete line", at: i, bytes: del });
    }
    // Byte substitutions at pseudo-random offsets.
    if n > 0 {
        let mut rng = Rng(seed_for(name));
        for _ in 0..SUBST_OFFSETS {
            let at = rng.below(n);
            for &c in SUBST_BYTES {
                let mut v = b.to_vec();
                v[at] = c;
                emit(Variant { what: SUBST_NAMES[SUBST_BYTES.iter().position(|&x| x == c).unwrap_or(0)], at, bytes: v });
            }
        }
    }
}

// ===== exercising a parsed message =====

fn touch_params(p: &Params<'_>) {
    let _ = p.to_string();
    let _ = p.is_empty();
    for (name, _) in p.iter() {
        let _ = p.get_unquoted(name);
        let _ = p.contains(name);
    }
}

fn touch_uri(u: &Uri<'_>) {
    let _ = u.to_string();
    let _ = u.scheme();
    match u {
        Uri::Sip(sip) => {
            let _ = sip.user_decoded();
            let _ = sip.password.map(percent_decode);
            let _ = sip.headers.map(percent_decode);
            let _ = (sip.transport(), sip.is_loose_route(), sip.host.ip(), sip.host.as_str(), sip.host.to_string());
            touch_params(&sip.params);
        }
        Uri::Tel(t) => {
            let _ = percent_decode(t.number);
            touch_params(&t.params);
        }
        Uri::Other { rest, .. } => {
            let _ = percent_decode(rest);
        }
    }
}

fn touch_via(v: &Via<'_>) {
    let _ = v.to_string();
    let _ = (v.branch(), v.has_rfc3261_branch(), v.received(), v.rport(), v.maddr(), v.host.ip(), v.host.to_string());
    touch_params(&v.params);
}

fn touch_name_addr(a: &NameAddr<'_>) {
    let _ = a.to_string();
    let _ = (a.display_name(), a.tag(), a.expires(), a.q_millis());
    touch_uri(&a.uri);
    touch_params(&a.params);
}

fn touch_auth(a: &AuthHeader<'_>) {
    let _ = a.to_string();
    let _ = a.is_digest();
    for (n, _) in a.params() {
        let _ = a.get(n);
    }
    let _ = (a.raw("nonce"), a.get("realm"), a.get("qop"), a.get("response"));
}

const TOKEN_HEADERS: [HeaderName; 5] =
    [HeaderName::Allow, HeaderName::Supported, HeaderName::Require, HeaderName::ProxyRequire, HeaderName::Unsupported];
const AUTH_HEADERS: [HeaderName; 4] =
    [HeaderName::Authorization, HeaderName::ProxyAuthorization, HeaderName::WwwAuthenticate, HeaderName::ProxyAuthenticate];
const TEXT_HEADERS: [HeaderName; 4] = [HeaderName::UserAgent, HeaderName::Server, HeaderName::Subject, HeaderName::Date];

/// Calls every accessor. Returns a problem that is not a panic (a message that does not reparse to
/// itself), if any.
fn exercise(m: &Message) -> Option<String> {
    let _ = (m.is_request(), m.method(), m.request_uri_str(), m.status(), m.reason(), m.header_count());
    let _ = (m.body(), m.body_bytes(), m.content_length());
    let _ = format!("{m:?}{m}");
    for h in m.headers() {
        let _ = (h.name.as_str(), h.name.compact());
        let _ = m.header(h.name);
        let _ = m.header_bytes(h.name);
        let _ = m.header_values(h.name).count();
        if h.name == HeaderName::Other {
            let _ = std::str::from_utf8(h.raw_name).map(|n| m.other_header(n).count());
        }
    }
    let _ = m.validate();
    let _ = m.check_required();
    if let Some(u) = m.request_uri() {
        touch_uri(&u);
    }
    if let Ok(v) = m.via() {
        touch_via(&v);
    }
    for v in m.vias().flatten() {
        touch_via(&v);
    }
    for a in [m.from(), m.to()].into_iter().flatten() {
        touch_name_addr(&a);
    }
    let _ = m.call_id();
    if let Ok(c) = m.cseq() {
        let _ = c.to_string();
    }
    let _ = m.contact_is_star();
    for a in m.contacts().chain(m.routes()).chain(m.record_routes()).flatten() {
        touch_name_addr(&a);
    }
    let _ = (m.max_forwards(), m.expires(), m.min_expires());
    if let Ok(Some(t)) = m.content_type() {
        let _ = t.to_string();
        let _ = t.is("application", "sdp");
        touch_params(&t.params);
    }
    for name in TOKEN_HEADERS {
        for t in m.tokens(name).flatten() {
            let _ = t.len();
        }
    }
    for d in [m.session_expires(), m.min_se()].into_iter().flatten().flatten() {
        let _ = d.to_string();
        let _ = d.refresher();
        touch_params(&d.params);
    }
    for r in m.reasons().flatten() {
        let _ = r.to_string();
        let _ = (r.cause(), r.text());
        touch_params(&r.params);
    }
    for name in AUTH_HEADERS {
        for a in m.auth_headers(name).flatten() {
            touch_auth(&a);
        }
    }
    for name in TEXT_HEADERS {
        let _ = m.text(name);
    }
    // Responses built from it must not panic either.
    if m.is_request() {
        let _ = m.response_to(400, "Bad Request", Some("t1")).finish();
    }
    match Message::parse(m.as_bytes().clone()) {
        Ok(back) if back == *m => None,
        Ok(_) => Some("reparses to a different message".into()),
        Err(e) => Some(format!("does not reparse: {e}")),
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> Cow<'static, str> {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        Cow::Borrowed(s)
    } else if let Some(s) = p.downcast_ref::<String>() {
        Cow::Owned(s.clone())
    } else {
        Cow::Borrowed("(non-string panic)")
    }
}

#[derive(Default)]
struct Tally {
    variants: usize,
    parsed: usize,
    failures: Vec<String>,
}

fn run_file(rel: &str, bytes: &[u8], tally: &mut Tally) {
    let mut check = |what: &str, at: usize, data: Vec<u8>| {
        tally.variants += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| match Message::parse(Bytes::from(data)) {
            Ok(m) => (true, exercise(&m)),
            Err(_) => (false, None),
        }));
        match outcome {
            Ok((parsed, problem)) => {
                tally.parsed += usize::from(parsed);
                if let Some(p) = problem {
                    tally.failures.push(format!("{rel}: {what} at {at}: {p}"));
                }
            }
            Err(p) => tally.failures.push(format!("{rel}: {what} at {at}: PANIC: {}", panic_text(&*p))),
        }
    };
    check("original", 0, bytes.to_vec());
    variants(rel, bytes, |v| check(v.what, v.at, v.bytes));
}

fn inputs() -> Vec<(String, Vec<u8>)> {
    let root = common::root();
    let mut out = Vec::new();
    let torture = root.join("fixtures/torture");
    for p in common::files_with_ext(&torture, "dat") {
        let rel = rel_path(&torture, &p);
        out.push((format!("torture/{rel}"), common::wire_fixture(&rel)));
    }
    let sip = root.join("fixtures/sip");
    for p in common::files_with_ext(&sip, "sip") {
        out.push((format!("sip/{}", rel_path(&sip, &p)), std::fs::read(&p).unwrap()));
    }
    out
}

fn rel_path(base: &Path, p: &Path) -> String {
    p.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/")
}

#[test]
fn no_panic_on_mutated_fixtures() {
    let files = inputs();
    assert!(files.iter().filter(|(n, _)| n.starts_with("torture/")).count() >= 60, "torture fixtures missing");
    assert!(files.iter().filter(|(n, _)| n.starts_with("sip/")).count() >= 12, "sip fixtures missing");

    let started = Instant::now();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // Two halves on two threads: the machine this runs on has two cores.
    let (a, b) = files.split_at(files.len() / 2);
    let run = |part: &[(String, Vec<u8>)]| {
        let mut t = Tally::default();
        for (rel, bytes) in part {
            run_file(rel, bytes, &mut t);
        }
        t
    };
    let (ta, tb) = std::thread::scope(|s| {
        let h = s.spawn(|| run(a));
        let tb = run(b);
        (h.join(), tb)
    });
    std::panic::set_hook(hook);
    let ta = ta.expect("worker thread");

    let variants = ta.variants + tb.variants;
    let parsed = ta.parsed + tb.parsed;
    let failures: Vec<String> = ta.failures.into_iter().chain(tb.failures).collect();
    println!(
        "no_panic: {} files, {variants} variants, {parsed} parsed and fully exercised, {} failures, {:.1?}",
        files.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(variants > 100_000, "too few variants: {variants}");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.iter().take(50).cloned().collect::<Vec<_>>().join("\n"));
}
