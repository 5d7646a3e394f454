//! Character classes and small lexical rules of RFC 3261 §25.1, shared by the header parsers.
//!
//! Header values reach the typed parsers as the raw bytes between the colon and the end of the
//! (possibly folded) header line, so a CR or LF inside a value can only come from a fold: every
//! whitespace helper here treats SP, HTAB, CR and LF alike as LWS.

use super::error::ValueError;

/// A 256-entry table of a byte predicate, built at compile time: scanners then test a character
/// class with one load instead of a chain of comparisons.
macro_rules! byte_table {
    (|$b:ident| $e:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            t[i] = $e;
            i += 1;
        }
        t
    }};
}
pub(crate) use byte_table;

/// `token` characters: `alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"`.
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

static TOKEN: [bool; 256] = byte_table!(|b| token_char_rule(b));

/// The `token` character rule itself, usable in constant tables.
pub(crate) const fn token_char_rule(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// LWS inside a header value: SP, HTAB, and the CR LF of a fold.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `1*token-char`, the whole string.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The first index at or after `from` that holds `byte`, scanning two eight-byte words per step.
/// Header lines and values are short (tens of bytes): an inlined word-at-a-time scan beats
/// `memchr`'s per-call feature dispatch and vector set-up there. `inline(always)`: left to itself
/// the compiler outlines it from the framing loop, which measured slower.
#[inline(always)]
pub(crate) fn find_byte(b: &[u8], from: usize, byte: u8) -> Option<usize> {
    let pattern = ONES * u64::from(byte);
    // "Has a zero byte": the lowest set bit marks the first byte equal to `byte` (a borrow can only
    // flag bytes above a real match).
    let hits = |w: [u8; 8]| {
        let x = u64::from_le_bytes(w) ^ pattern;
        x.wrapping_sub(ONES) & !x & HIGH
    };
    let mut rest = b.get(from..)?;
    // Two words per step: one branch per 16 bytes.
    while let Some((pair, tail)) = rest.split_first_chunk::<16>() {
        let (lo, hi) = (
            hits([pair[0], pair[1], pair[2], pair[3], pair[4], pair[5], pair[6], pair[7]]),
            hits([pair[8], pair[9], pair[10], pair[11], pair[12], pair[13], pair[14], pair[15]]),
        );
        if lo | hi != 0 {
            let at = if lo != 0 { lo.trailing_zeros() / 8 } else { 8 + hi.trailing_zeros() / 8 };
            return Some(b.len() - rest.len() + at as usize);
        }
        rest = tail;
    }
    rest.iter().position(|&c| c == byte).map(|p| b.len() - rest.len() + p)
}

/// The first index at or after `i` that holds `x` or `y` (see [`find_byte`]).
#[inline]
pub(crate) fn find_either(b: &[u8], mut i: usize, x: u8, y: u8) -> Option<usize> {
    let (px, py) = (ONES * u64::from(x), ONES * u64::from(y));
    // Callers pass `i <= b.len()`, so `i + 8` cannot overflow.
    while i + 8 <= b.len() {
        let w = word(&b[i..i + 8]);
        let (a, c) = (w ^ px, w ^ py);
        let found = (a.wrapping_sub(ONES) & !a | c.wrapping_sub(ONES) & !c) & HIGH;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while i < b.len() {
        if b[i] == x || b[i] == y {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Eight bytes as a little-endian word (`w` holds at least eight; callers pass exactly eight).
#[inline]
fn word(w: &[u8]) -> u64 {
    u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
}

/// Whether `b` holds SP, a control character (below 0x21: HTAB, CR, LF, ...) or DEL, eight bytes at
/// a time.
#[inline]
pub(crate) fn has_space_or_ctl(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let x = word(w);
        // "Has a byte below n" (exact for n <= 128) and "has a zero byte" after XOR with DEL.
        let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        let del = x ^ (ONES * 0x7f);
        if below | (del.wrapping_sub(ONES) & !del & HIGH) != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&c| c < 0x21 || c == 0x7f)
}

/// Strips LWS on both sides of a byte string.
#[inline]
pub(crate) fn trim_lws(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if !is_lws(*first) {
            break;
        }
        b = rest;
    }
    while let [rest @ .., last] = b {
        if !is_lws(*last) {
            break;
        }
        b = rest;
    }
    b
}

/// Strips LWS on both sides. Works on bytes: LWS is ASCII, so the cut points are char boundaries.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    trim_end(trim_start(s))
}

/// Strips leading LWS.
#[inline]
pub(crate) fn trim_start(s: &str) -> &str {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_lws(b[i]) {
        i += 1;
    }
    &s[i..]
}

/// Strips trailing LWS.
#[inline]
pub(crate) fn trim_end(s: &str) -> &str {
    let b = s.as_bytes();
    let mut j = b.len();
    while j > 0 && is_lws(b[j - 1]) {
        j -= 1;
    }
    &s[..j]
}

/// The byte length of a `quoted-string` at the start of `s` (which must begin with `"`), closing
/// quote included. `quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)`.
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    // Jump to the next quote or backslash: every other byte is taken as it is (issue 16: a
    // digest header is mostly quoted text, walked once by the validation and once by the reader).
    while let Some(k) = memchr::memchr2(b'"', b'\\', &s[i..]) {
        i += k;
        if s[i] == b'"' {
            return Some(i + 1);
        }
        let next = *s.get(i + 1)?;
        if next == b'\r' || next == b'\n' || next > 0x7f {
            return None;
        }
        i += 2;
    }
    None
}

/// Removes the quotes and quoted-pair backslashes of a `quoted-string` (lossless when there are none).
pub(crate) fn unquote(s: &str) -> std::borrow::Cow<'_, str> {
    let inner = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s);
    if !inner.contains('\\') {
        return std::borrow::Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Splits a comma-separated header value (`1#element`) into its elements, honouring quoted strings
/// and `<...>` so commas inside them do not split. Each element is trimmed of LWS. An empty element
/// (`a,,b` or a trailing comma) is a syntax error reported at its offset.
pub(crate) struct ListIter<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> ListIter<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        ListIter { s, pos: 0, done: false }
    }
}

impl<'a> Iterator for ListIter<'a> {
    /// (element, its offset in the value)
    type Item = Result<(&'a str, usize), ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let bytes = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut in_angle = false;
        // Jump from one byte that matters to the next: outside `<...>` a quote, `<` or the comma
        // that ends the element; inside, a quote or the `>` that closes it (a `,` there is text).
        while i < bytes.len() {
            let next = match in_angle {
                false => memchr::memchr3(b'"', b'<', b',', &bytes[i..]),
                true => memchr::memchr2(b'"', b'>', &bytes[i..]),
            };
            let Some(k) = next else {
                i = bytes.len();
                break;
            };
            i += k;
            match bytes[i] {
                b'"' => match quoted_len(&bytes[i..]) {
                    Some(n) => i += n,
                    None => {
                        self.done = true;
                        return Some(Err(ValueError::at(i)));
                    }
                },
                b'<' => {
                    in_angle = true;
                    i += 1
                }
                b'>' => {
                    in_angle = false;
                    i += 1
                }
                _ => break, // the `,` outside angle brackets
            }
        }
        let raw = &self.s[start..i];
        if i >= bytes.len() {
            self.done = true;
        } else {
            self.pos = i + 1;
        }
        let item = trim(raw);
        if item.is_empty() {
            self.done = true;
            return Some(Err(ValueError::at(start)));
        }
        let lead = raw.len() - trim_start(raw).len();
        Some(Ok((item, start + lead)))
    }
}

/// Parses `1*DIGIT` into a u32, refusing overflow (RFC 4475 §3.1.2.4: CSeq > 2^32-1 is invalid).
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    parse_u32_bytes(s.as_bytes())
}

/// [`parse_u32`] over bytes: `1*DIGIT`, leading zeros allowed, `None` on overflow.
#[inline]
pub(crate) fn parse_u32_bytes(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    let mut n: u32 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u32::from(d))?;
    }
    Some(n)
}

/// Case-insensitive ASCII comparison.
#[inline]
pub(crate) fn eq_ic(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings() {
        assert_eq!(quoted_len(br#""abc" rest"#), Some(5));
        assert_eq!(quoted_len(br#""a\"b""#), Some(6));
        assert_eq!(quoted_len(br#""open"#), None);
        assert_eq!(unquote(r#""J Rosenberg \\\"""#), r#"J Rosenberg \""#);
    }

    #[test]
    fn lists_split_outside_quotes_and_angles() {
        let v: Vec<_> = ListIter::new(r#"<sip:a,b@x>, "x,y" <sip:c>  ,d"#).map(|r| r.unwrap().0).collect();
        assert_eq!(v, vec!["<sip:a,b@x>", r#""x,y" <sip:c>"#, "d"]);
        assert!(ListIter::new("a,,b").any(|r| r.is_err()));
        assert!(ListIter::new("a,").any(|r| r.is_err()));
    }

    /// Every start offset and length up to 40 bytes, with the needle at every position and
    /// high-bit bytes around it (the word scans must never report a borrow or a neighbour).
    #[test]
    fn word_scans_match_plain_scans() {
        let fillers: [&[u8]; 4] = [b"abcdefgh", b"\x80\xff\x01\x00\x7f \t\r", b";;\"\"::\n\n", b"\x0b\x0a\x0c\x3a\x3b\x22\x21\x20"];
        for filler in fillers {
            for len in 0..40 {
                let mut buf: Vec<u8> = filler.iter().copied().cycle().take(len).collect();
                for at in 0..=len {
                    if at < len {
                        buf[at] = b':';
                    }
                    for from in 0..=len {
                        let plain = |x: u8| buf[from..].iter().position(|&c| c == x).map(|p| from + p);
                        assert_eq!(find_byte(&buf, from, b':'), plain(b':'), "{buf:?} {from}");
                        assert_eq!(find_byte(&buf, from, b'\n'), plain(b'\n'), "{buf:?} {from}");
                        let either = buf[from..].iter().position(|&c| c == b';' || c == b'"').map(|p| from + p);
                        assert_eq!(find_either(&buf, from, b';', b'"'), either, "{buf:?} {from}");
                    }
                    let ctl = buf.iter().any(|&c| c < 0x21 || c == 0x7f);
                    assert_eq!(has_space_or_ctl(&buf), ctl, "{buf:?}");
                    assert_eq!(has_space_or_ctl(&buf[at.min(len)..]), buf[at.min(len)..].iter().any(|&c| c < 0x21 || c == 0x7f));
                }
            }
        }
        assert_eq!(find_byte(b"abc", 4, b'a'), None);
    }

    #[test]
    fn trims_are_lws_only() {
        assert_eq!(trim(" \t\r\n a b \r\n"), "a b");
        assert_eq!(trim("\u{a0}x\u{a0}"), "\u{a0}x\u{a0}");
        assert_eq!(trim_lws(b"\x0c5\x0c"), b"\x0c5\x0c");
        assert_eq!(trim_lws(b" \r\n"), b"");
        assert_eq!(trim_start(" é "), "é ");
        assert_eq!(trim_end(" é \t"), " é");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0009"), Some(9));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("-1"), None);
        assert_eq!(parse_u32("+1"), None);
        assert_eq!(parse_u32(""), None);
        assert_eq!(parse_u32("00000000000000000000042"), Some(42));
        assert_eq!(parse_u32_bytes(b"99999999999"), None);
    }
}
