//! Character classes and small lexical rules of RFC 3261 §25.1, shared by the header parsers.
//!
//! Header values reach the typed parsers as the raw bytes between the colon and the end of the
//! (possibly folded) header line, so a CR or LF inside a value can only come from a fold: every
//! whitespace helper here treats SP, HTAB, CR and LF alike as LWS.

use super::error::ValueError;

/// `token` characters: `alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"`.
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
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

/// Strips LWS on both sides.
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_lws(c as u8))
}

/// Strips leading LWS.
#[inline]
pub(crate) fn trim_start(s: &str) -> &str {
    s.trim_start_matches(|c: char| c.is_ascii() && is_lws(c as u8))
}

/// The byte length of a `quoted-string` at the start of `s` (which must begin with `"`), closing
/// quote included. `quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)`.
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                let next = *s.get(i + 1)?;
                if next == b'\r' || next == b'\n' || next > 0x7f {
                    return None;
                }
                i += 2;
            }
            _ => i += 1,
        }
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
        // Fast path: no quote, angle or comma left means one element to the end.
        if memchr::memchr3(b'"', b'<', b',', &bytes[start..]).is_none() {
            i = bytes.len();
        }
        while i < bytes.len() {
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
                b',' if !in_angle => break,
                _ => i += 1,
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
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
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

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0009"), Some(9));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("-1"), None);
    }
}
