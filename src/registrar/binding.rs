//! Bindings and the URI normalisations the registrar compares them by: the canonical
//! address-of-record of RFC 3261 §10.3 step 5 and a contact key after the §19.1.4 comparison rules.

use crate::decimal::push_decimal;
use crate::message::{percent_decode, Host, SipUri, Uri};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// One registered contact of an address-of-record (RFC 3261 §10.3): where requests for the AOR go.
///
/// Times are Unix seconds, so bindings saved by the caller keep their meaning across a restart
/// (see [`Registrar::restore`](super::Registrar::restore)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The canonical address-of-record, e.g. `sip:bob@biloxi.example.com` (see [`aor_of`]).
    pub aor: String,
    /// The Contact URI exactly as the UA sent it, uri-parameters and `?headers` included (RFC 4475
    /// §3.3.13, §3.3.14); contact parameters such as `expires` or `q` are not part of it.
    pub contact: String,
    /// When the binding lapses, in Unix seconds.
    pub expires_at: u64,
    /// The `q` value in thousandths (`q=0.7` is 700); 1000 when the Contact had none.
    pub q_millis: u16,
    /// The Call-ID of the REGISTER that last wrote the binding (§10.3 step 7).
    pub call_id: String,
    /// The CSeq number of that REGISTER (§10.3 step 7).
    pub cseq: u32,
    /// Where that REGISTER came from: a phone behind a NAT is reached there, not at `contact`.
    pub source: SocketAddr,
    /// When the binding was last written, in Unix seconds.
    pub updated_at: u64,
}

// ===== impl Binding =====

impl Binding {
    /// Seconds left at `now_secs` (Unix seconds); 0 once expired.
    pub fn remaining(&self, now_secs: u64) -> u64 {
        self.expires_at.saturating_sub(now_secs)
    }

    /// Whether the binding has lapsed at `now_secs`.
    pub fn is_expired(&self, now_secs: u64) -> bool {
        self.expires_at <= now_secs
    }
}

/// The canonical address-of-record of a SIP or SIPS URI (RFC 3261 §10.3 step 5): scheme, user and
/// host, with port, password, uri-parameters and headers removed. The host is lowercased (IPv6 in
/// its compressed bracketed form); the user keeps its case, with escapes undone where the character
/// may stand unescaped and written as uppercase `%HH` otherwise, so `sip:%62ob@Example.COM:5070`
/// gives `sip:bob@example.com`. `None` for any other scheme (`tel:`, `isbn:`, ...).
pub fn aor_of(uri: &Uri<'_>) -> Option<String> {
    let sip = uri.as_sip()?;
    let mut out = String::with_capacity(48);
    out.push_str(if sip.secure { "sips:" } else { "sip:" });
    if let Some(user) = sip.user {
        push_escaped(&mut out, &percent_decode(user), is_user_char);
        out.push('@');
    }
    push_host(&mut out, &sip.host);
    Some(out)
}

/// The canonical AOR for `user` at `domain` under the `sip:` scheme, as [`aor_of`] writes it.
pub(crate) fn aor_for(user: &str, domain: &str) -> String {
    let mut out = String::with_capacity(5 + user.len() + 1 + domain.len());
    out.push_str("sip:");
    push_escaped(&mut out, user.as_bytes(), is_user_char);
    out.push('@');
    out.push_str(&domain.to_ascii_lowercase());
    out
}

/// A comparison key for a Contact URI after RFC 3261 §19.1.4, simplified: scheme and host
/// lowercased, userinfo unescaped canonically but case-sensitive, the port as written (no port is
/// not 5060), uri-parameters and headers unescaped, lowercased and sorted, so their order does not
/// matter. Non-SIP URIs compare by their text with the scheme lowercased.
pub(crate) fn contact_key(uri: &Uri<'_>) -> String {
    let Some(sip) = uri.as_sip() else {
        return match uri {
            Uri::Other { scheme, rest } => format!("{}:{rest}", scheme.to_ascii_lowercase()),
            other => other.to_string(),
        };
    };
    let mut out = String::with_capacity(64);
    out.push_str(if sip.secure { "sips:" } else { "sip:" });
    if let Some(user) = sip.user {
        push_escaped(&mut out, &percent_decode(user), is_user_char);
        if let Some(pw) = sip.password {
            out.push(':');
            push_escaped(&mut out, &percent_decode(pw), is_user_char);
        }
        out.push('@');
    }
    push_host(&mut out, &sip.host);
    if let Some(port) = sip.port {
        out.push(':');
        push_decimal(&mut out, u64::from(port));
    }
    push_sorted(&mut out, ';', params_of(sip));
    if let Some(h) = sip.headers {
        push_sorted(&mut out, '?', h.split('&').filter(|s| !s.is_empty()).map(|s| s.split_once('=').unwrap_or((s, ""))).collect());
    }
    out
}

fn params_of<'a>(sip: &SipUri<'a>) -> Vec<(&'a str, &'a str)> {
    sip.params.iter().map(|(n, v)| (n, v.unwrap_or(""))).collect()
}

/// Appends `sep name=value` pairs, each unescaped and lowercased, in sorted order.
fn push_sorted(out: &mut String, sep: char, pairs: Vec<(&str, &str)>) {
    let norm_pair = |s: &mut String, (n, v): (&str, &str)| {
        push_escaped_lower(s, &percent_decode(n), is_unreserved);
        s.push('=');
        push_escaped_lower(s, &percent_decode(v), is_unreserved);
    };
    // One pair (a phone's `;transport=udp`, say) needs no sorting: written straight in.
    if let [pair] = pairs[..] {
        out.push(sep);
        norm_pair(out, pair);
        return;
    }
    let mut norm: Vec<String> = pairs
        .into_iter()
        .map(|pair| {
            let mut s = String::with_capacity(pair.0.len() + pair.1.len() + 1);
            norm_pair(&mut s, pair);
            s
        })
        .collect();
    norm.sort_unstable();
    for p in norm {
        out.push(sep);
        out.push_str(&p);
    }
}

fn push_host(out: &mut String, host: &Host<'_>) {
    match host {
        // Only an IPv6 reference is read as an address (issue 16: reading every host as one cost
        // a parse of a domain or IPv4 text that is then written as it is).
        Host::Ipv6(_) => match host.ip() {
            Some(ip) => {
                let _ = write!(out, "[{ip}]"); // into a String: cannot fail
            }
            // Host text is ASCII by its grammar (`Display` adds the brackets of an IPv6 reference).
            None => out.push_str(&host.to_string().to_ascii_lowercase()),
        },
        Host::Domain(s) | Host::Ipv4(s) => {
            let at = out.len();
            out.push_str(s);
            if let Some(t) = out.get_mut(at..) {
                t.make_ascii_lowercase();
            }
        }
    }
}

/// `unreserved = alphanum / mark` (RFC 3261 §25.1).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// `unreserved / user-unreserved`: what a user part may hold without escaping (RFC 3261 §25.1).
fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,;?/".contains(&b)
}

/// [`push_escaped`] of `bytes` lowercased (ASCII), without a lowercased copy.
fn push_escaped_lower(out: &mut String, bytes: &[u8], keep: fn(u8) -> bool) {
    push_escaped_by(out, bytes, keep, true);
}

/// Writes `bytes`, escaping as `%HH` every byte `keep` rejects.
fn push_escaped(out: &mut String, bytes: &[u8], keep: fn(u8) -> bool) {
    push_escaped_by(out, bytes, keep, false);
}

/// [`push_escaped`], of each byte lowercased (ASCII) when `lower`. The runs of kept bytes are
/// copied whole (issue 16: a `push` a byte cost more than the copy).
fn push_escaped_by(out: &mut String, mut bytes: &[u8], keep: fn(u8) -> bool, lower: bool) {
    let low = |b: u8| if lower { b.to_ascii_lowercase() } else { b };
    while !bytes.is_empty() {
        let run = bytes.iter().position(|&b| !keep(low(b))).unwrap_or(bytes.len());
        let at = out.len();
        match std::str::from_utf8(&bytes[..run]) {
            Ok(text) => out.push_str(text),
            // Not reached with this file's `keep`s (ASCII only); written as before, a char a byte.
            Err(_) => out.extend(bytes[..run].iter().map(|&b| char::from(b))),
        }
        if lower {
            if let Some(t) = out.get_mut(at..) {
                t.make_ascii_lowercase();
            }
        }
        if let Some(&b) = bytes.get(run) {
            let _ = write!(out, "%{:02X}", low(b)); // into a String: cannot fail
            bytes = &bytes[run + 1..];
        } else {
            bytes = &[];
        }
    }
}

/// Appends a qvalue in thousandths as RFC 3261 §25.1 writes it: `1`, `0`, `0.5`, `0.75`, `0.005`.
pub(crate) fn push_q(out: &mut String, q_millis: u16) {
    match q_millis {
        1000.. => out.push('1'),
        0 => out.push('0'),
        q => {
            out.push_str("0.");
            let digits = [q / 100, q / 10 % 10, q % 10];
            let last = digits.iter().rposition(|&d| d != 0).unwrap_or(0);
            out.extend(digits[..=last].iter().map(|&d| char::from(b'0' + d as u8)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aor(s: &str) -> Option<String> {
        aor_of(&Uri::parse(s).unwrap())
    }

    fn key(s: &str) -> String {
        contact_key(&Uri::parse(s).unwrap())
    }

    #[test]
    fn escaping_by_runs_is_escaping_a_byte_at_a_time() {
        // The byte-by-byte writer the run copier replaced.
        fn reference(bytes: &[u8], keep: fn(u8) -> bool, lower: bool) -> String {
            let mut out = String::new();
            for &b in bytes {
                let b = if lower { b.to_ascii_lowercase() } else { b };
                if keep(b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        }
        let inputs: [&[u8]; 9] = [b"", b"alice", b"Al Ice", b"%", b"a b;c=D?E/F", b"\x00\xffZ", b"  ", b"Bob&=+$,;?/", b"x\xc3\xa9y"];
        for bytes in inputs {
            for keep in [is_user_char as fn(u8) -> bool, is_unreserved] {
                let mut plain = String::from("sip:");
                push_escaped(&mut plain, bytes, keep);
                assert_eq!(plain, format!("sip:{}", reference(bytes, keep, false)), "{bytes:?}");
                let mut low = String::from("X");
                push_escaped_lower(&mut low, bytes, keep);
                assert_eq!(low, format!("X{}", reference(bytes, keep, true)), "{bytes:?}");
            }
        }
        // Hosts: a domain and IPv4 text lowered as written, an IPv6 reference as its address.
        assert_eq!(aor("sip:Bob@EXAMPLE.Com:5070;transport=udp").as_deref(), Some("sip:Bob@example.com"));
        assert_eq!(key("sip:a@192.0.2.1:5060"), "sip:a@192.0.2.1:5060");
        assert_eq!(key("sip:a@[2001:DB8:0::1]:65535"), "sip:a@[2001:db8::1]:65535");
    }

    #[test]
    fn canonical_aor() {
        for (uri, want) in [
            ("sip:bob@biloxi.example.com", Some("sip:bob@biloxi.example.com")),
            ("sip:bob@Biloxi.Example.COM:5070;transport=tcp?Subject=x", Some("sip:bob@biloxi.example.com")),
            ("sips:Bob@example.com", Some("sips:Bob@example.com")),
            ("sip:%62ob@example.com", Some("sip:bob@example.com")),
            ("sip:a%40b@example.com", Some("sip:a%40b@example.com")),
            ("sip:bob:secret@example.com;user=phone", Some("sip:bob@example.com")),
            ("sip:example.com", Some("sip:example.com")),
            ("sip:u@[2001:DB8:0::1]", Some("sip:u@[2001:db8::1]")),
            ("tel:+1-201-555-0123", None),
            ("isbn:2983792873", None),
        ] {
            assert_eq!(aor(uri).as_deref(), want, "{uri}");
        }
        assert_eq!(aor_for("bob", "Example.com"), "sip:bob@example.com");
    }

    #[test]
    fn contact_keys_follow_19_1_4() {
        let same = [
            ("sip:bob@HOST.example.com;Transport=UDP", "sip:bob@host.example.com;transport=udp"),
            ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
            ("sip:a@b;x=1;y=2", "sip:a@b;y=2;x=1"),
            ("sip:a@b?h1=1&h2=2", "sip:a@b?h2=2&h1=1"),
        ];
        for (a, b) in same {
            assert_eq!(key(a), key(b), "{a} vs {b}");
        }
        let differ = [
            ("sip:alice@atlanta.com", "sip:ALICE@atlanta.com"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:a@b", "sips:a@b"),
            ("sip:a@b;unknownparam", "sip:a@b"),
        ];
        for (a, b) in differ {
            assert_ne!(key(a), key(b), "{a} vs {b}");
        }
        // The texts themselves: one parameter is written straight in, several are sorted.
        for (uri, want) in [
            ("sip:Bob@Host.COM:5070;Transport=UDP", "sip:Bob@host.com:5070;transport=udp"),
            ("sip:%61lice@AtLanTa.CoM;Transport=%54CP;lr", "sip:alice@atlanta.com;lr=;transport=tcp"),
            ("sip:a@b;x=A%2fB", "sip:a@b;x=a%2Fb"),
            ("sip:a@b;X=%20", "sip:a@b;x=%20"),
            ("sip:a@192.0.2.1:5060", "sip:a@192.0.2.1:5060"),
            ("sip:a@[2001:DB8::1];Maddr=X", "sip:a@[2001:db8::1];maddr=x"),
            ("sip:a@b?H=1", "sip:a@b?h=1"),
        ] {
            assert_eq!(key(uri), want, "{uri}");
        }
    }

    #[test]
    fn q_values() {
        for (q, s) in [
            (1000, "1"),
            (1001, "1"),
            (0, "0"),
            (500, "0.5"),
            (750, "0.75"),
            (5, "0.005"),
            (100, "0.1"),
            (10, "0.01"),
            (999, "0.999"),
            (120, "0.12"),
        ] {
            let mut out = String::from("q=");
            push_q(&mut out, q);
            assert_eq!(out, format!("q={s}"));
        }
    }
}
