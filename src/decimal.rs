//! Numbers and addresses as text without `core::fmt`'s machinery.
//!
//! The hot paths write a few decimals per message: the `rport`/`received` stamp on a Via, the
//! `expires` of a 200's Contact lines, a binding's source address in the store, a codec's
//! `NAME/RATE`. `write!` through `Display` cost about ten times a digit loop there (issue 16), so
//! those callers share these two functions. The text is exactly what `Display` writes.

use std::fmt::Write;
use std::net::IpAddr;

/// Appends `n` in decimal, as `Display` writes it (no sign, no leading zeros).
pub fn push_decimal(out: &mut impl Write, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        // A `String` cannot refuse a char; a fixed buffer that is full drops the rest, as its
        // own `write_str` would.
        let _ = out.write_char(char::from(d));
    }
}

/// Appends `ip` as its `Display` writes it: IPv4 digit by digit, IPv6 through `Display` (rare,
/// and its compression rules are not worth repeating).
pub fn push_ip(out: &mut impl Write, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    let _ = out.write_char('.');
                }
                push_decimal(out, octet.into());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_and_addresses_read_as_display_writes_them() {
        for n in [0u64, 7, 10, 99, 100, 65_535, 4_294_967_295, u64::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        for ip in ["0.0.0.0", "127.0.0.1", "192.0.2.10", "255.255.255.255", "::1", "2001:db8::1", "::ffff:192.0.2.1"] {
            let ip: IpAddr = ip.parse().expect("a literal address");
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }
}
