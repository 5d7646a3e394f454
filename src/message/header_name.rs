//! Header names: the ones this stack understands, their compact forms (RFC 3261 §7.3.3, §20),
//! and case-insensitive lookup without allocation.

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canon:literal $(, $compact:literal)? ;)*) => {
        /// A header name this stack knows, or [`HeaderName::Other`] for any extension header (kept
        /// byte for byte under its own spelling). Matching is case-insensitive and compact forms map to
        /// their long form (`v` is [`HeaderName::Via`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any header this stack does not interpret.
            Other,
        }

        impl HeaderName {
            /// The canonical long spelling, e.g. `Call-ID`; `""` for [`HeaderName::Other`].
            pub fn as_str(self) -> &'static str {
                match self {
                    $( HeaderName::$variant => $canon, )*
                    HeaderName::Other => "",
                }
            }

            /// The compact form (RFC 3261 §7.3.3), if the header has one.
            pub fn compact(self) -> Option<char> {
                match self {
                    $( $( HeaderName::$variant => Some($compact), )? )*
                    _ => None,
                }
            }

            /// Looks a name up, ignoring ASCII case; compact forms included. Unknown names give
            /// [`HeaderName::Other`].
            pub fn from_bytes(name: &[u8]) -> HeaderName {
                match lookup(name) {
                    Some(k) if name.eq_ignore_ascii_case(k.canon.as_bytes()) => k.name,
                    Some(_) => HeaderName::Other,
                    None if name.len() == 1 => compact_form(name[0]),
                    None => HeaderName::Other,
                }
            }
        }

        /// Every long name, in declaration order; [`TABLE`] indexes into it.
        const KNOWN: &[Known] = &[ $( Known::new(HeaderName::$variant, $canon), )* ];

        /// Compact forms by letter (`a` = 0); [`HeaderName::Other`] where there is none.
        const COMPACT: [HeaderName; 26] = {
            let mut t = [HeaderName::Other; 26];
            $( $( t[($compact as u32 - 'a' as u32) as usize] = HeaderName::$variant; )? )*
            t
        };
    };
}

/// One known long name: the canonical spelling and, for the framing fast path, its lowercase bytes
/// packed into little-endian words (zero-padded) with the case bit (0x20) of each letter.
struct Known {
    name: HeaderName,
    canon: &'static str,
    /// The lowercase name, zero-padded to 24 bytes, as little-endian words.
    lower: [u64; 3],
    /// 0x20 at each byte where the name has a letter.
    case_bits: [u64; 3],
    /// 0xff at each byte the name covers.
    mask: [u64; 3],
}

impl Known {
    const fn new(name: HeaderName, canon: &'static str) -> Known {
        let b = canon.as_bytes();
        assert!(!b.is_empty() && b.len() <= 24, "header names are 1 to 24 bytes");
        let (mut lower, mut case_bits, mut mask) = ([0u64; 3], [0u64; 3], [0u64; 3]);
        let mut i = 0;
        while i < b.len() {
            let shift = 8 * (i % 8);
            lower[i / 8] |= (b[i].to_ascii_lowercase() as u64) << shift;
            if b[i].is_ascii_alphabetic() {
                case_bits[i / 8] |= 0x20 << shift;
            }
            mask[i / 8] |= 0xff << shift;
            i += 1;
        }
        Known { name, canon, lower, case_bits, mask }
    }

    /// Whether the window words `w` (24 bytes, little-endian) start with this name, ASCII case
    /// ignored: setting the case bit of exactly the bytes where the name has a letter folds case
    /// there and nowhere else, so the comparison is exact for any input bytes.
    #[inline]
    fn starts(&self, w: [u64; 3]) -> bool {
        let diff = |i: usize| (w[i] | self.case_bits[i]) & self.mask[i] ^ self.lower[i];
        diff(0) | diff(1) | diff(2) == 0
    }
}

/// 24 bytes as three little-endian words.
#[inline]
fn words(win: &[u8; 24]) -> [u64; 3] {
    let word = |i: usize| u64::from_le_bytes([win[i], win[i + 1], win[i + 2], win[i + 3], win[i + 4], win[i + 5], win[i + 6], win[i + 7]]);
    [word(0), word(8), word(16)]
}

/// Size of the perfect-hash table of long names (a power of two).
const TABLE_SIZE: usize = 128;

/// A hash of (length, first byte, last byte), case-folded with `| 0x20`. The multipliers were picked
/// so that no two known names share a slot; [`TABLE`] fails to compile if a new name collides (then
/// pick new multipliers).
const fn slot(len: usize, first: u8, last: u8) -> usize {
    (len.wrapping_mul(3) + (first | 0x20) as usize * 14 + (last | 0x20) as usize * 7) & (TABLE_SIZE - 1)
}

/// `slot` -> 1 + index into [`KNOWN`], or 0 for an empty slot.
const TABLE: [u8; TABLE_SIZE] = {
    let mut t = [0u8; TABLE_SIZE];
    let mut i = 0;
    while i < KNOWN.len() {
        let b = KNOWN[i].canon.as_bytes();
        let s = slot(b.len(), b[0], b[b.len() - 1]);
        assert!(t[s] == 0, "two header names share a hash slot: change the multipliers in `slot`");
        t[s] = (i + 1) as u8;
        i += 1;
    }
    t
};

/// The only known long name `name` can be (same hash slot and length), not yet compared.
#[inline]
fn lookup(name: &[u8]) -> Option<&'static Known> {
    let (&first, &last) = (name.first()?, name.last()?);
    let k = TABLE[slot(name.len(), first, last)];
    let known = KNOWN.get(usize::from(k).checked_sub(1)?)?;
    (known.canon.len() == name.len()).then_some(known)
}

/// A one-letter compact form (RFC 3261 §7.3.3), case-insensitive.
#[inline]
fn compact_form(c: u8) -> HeaderName {
    match (c | 0x20).checked_sub(b'a') {
        Some(i) if i < 26 => COMPACT[usize::from(i)],
        _ => HeaderName::Other,
    }
}

impl HeaderName {
    /// The framing loop's fast path for a header line starting `win` (24 bytes of the buffer; the
    /// first is a token character): when the first ':' lies in the window right after the name
    /// (no WSP before it), returns the header and the offset of that ':'. A name other than a known
    /// one comes back as [`HeaderName::Other`], not yet checked to be a token. `None` sends the
    /// caller to the general path ([`HeaderName::from_bytes_in`] after a search for the ':'), which
    /// gives the same answer.
    #[inline]
    pub(crate) fn at_line_start(win: &[u8; 24]) -> Option<(HeaderName, usize)> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        const COLON: u64 = ONES * b':' as u64;
        let w = words(win);
        // "Has a zero byte" after XOR with ':': the lowest set bit marks the first ':' of a word.
        let hits = |x: u64| {
            let x = x ^ COLON;
            x.wrapping_sub(ONES) & !x & HIGH
        };
        let colon = match (hits(w[0]), hits(w[1]), hits(w[2])) {
            (h, _, _) if h != 0 => h.trailing_zeros() / 8,
            (_, h, _) if h != 0 => 8 + h.trailing_zeros() / 8,
            (_, _, h) if h != 0 => 16 + h.trailing_zeros() / 8,
            _ => return None,
        } as usize;
        // `win[0]` is a token character, so `colon >= 1`.
        let last = *win.get(colon.checked_sub(1)?)?;
        if last == b' ' || last == b'\t' {
            return None;
        }
        let name = match TABLE[slot(colon, win[0], last)] {
            _ if colon == 1 => compact_form(win[0]),
            0 => HeaderName::Other,
            k => match KNOWN.get(usize::from(k) - 1) {
                Some(known) if known.canon.len() == colon && known.starts(w) => known.name,
                _ => HeaderName::Other,
            },
        };
        Some((name, colon))
    }

    /// [`HeaderName::from_bytes`] for the framing loop, on the name `buf[start..end]`: compared a
    /// word at a time when the buffer holds 24 bytes from `start` (see [`Known::starts`]).
    #[inline]
    pub(crate) fn from_bytes_in(buf: &[u8], start: usize, end: usize) -> HeaderName {
        let name = &buf[start..end];
        let Some(k) = lookup(name) else {
            return if name.len() == 1 { compact_form(name[0]) } else { HeaderName::Other };
        };
        let matched = match buf.get(start..).and_then(|w| w.first_chunk::<24>()) {
            Some(win) => k.starts(words(win)),
            None => name.eq_ignore_ascii_case(k.canon.as_bytes()),
        };
        if matched {
            k.name
        } else {
            HeaderName::Other
        }
    }
}

header_names! {
    /// `Via` / `v` (RFC 3261 §20.42).
    Via => "Via", 'v';
    /// `From` / `f` (§20.20).
    From => "From", 'f';
    /// `To` / `t` (§20.39).
    To => "To", 't';
    /// `Call-ID` / `i` (§20.8).
    CallId => "Call-ID", 'i';
    /// `CSeq` (§20.16).
    CSeq => "CSeq";
    /// `Contact` / `m` (§20.10).
    Contact => "Contact", 'm';
    /// `Max-Forwards` (§20.22).
    MaxForwards => "Max-Forwards";
    /// `Content-Length` / `l` (§20.14).
    ContentLength => "Content-Length", 'l';
    /// `Content-Type` / `c` (§20.15).
    ContentType => "Content-Type", 'c';
    /// `Content-Encoding` / `e` (§20.12).
    ContentEncoding => "Content-Encoding", 'e';
    /// `Route` (§20.34).
    Route => "Route";
    /// `Record-Route` (§20.30).
    RecordRoute => "Record-Route";
    /// `Expires` (§20.19).
    Expires => "Expires";
    /// `Min-Expires` (§20.23).
    MinExpires => "Min-Expires";
    /// `Allow` (§20.5).
    Allow => "Allow";
    /// `Supported` / `k` (§20.37).
    Supported => "Supported", 'k';
    /// `Require` (§20.32).
    Require => "Require";
    /// `Proxy-Require` (§20.29).
    ProxyRequire => "Proxy-Require";
    /// `Unsupported` (§20.40).
    Unsupported => "Unsupported";
    /// `Authorization` (§20.7).
    Authorization => "Authorization";
    /// `Proxy-Authorization` (§20.28).
    ProxyAuthorization => "Proxy-Authorization";
    /// `WWW-Authenticate` (§20.44).
    WwwAuthenticate => "WWW-Authenticate";
    /// `Proxy-Authenticate` (§20.27).
    ProxyAuthenticate => "Proxy-Authenticate";
    /// `Authentication-Info` (§20.6).
    AuthenticationInfo => "Authentication-Info";
    /// `Session-Expires` / `x` (RFC 4028 §4).
    SessionExpires => "Session-Expires", 'x';
    /// `Min-SE` (RFC 4028 §5).
    MinSe => "Min-SE";
    /// `Reason` (RFC 3326).
    Reason => "Reason";
    /// `User-Agent` (§20.41).
    UserAgent => "User-Agent";
    /// `Server` (§20.35).
    Server => "Server";
    /// `Date` (§20.17).
    Date => "Date";
    /// `Subject` / `s` (§20.36).
    Subject => "Subject", 's';
    /// `Accept` (§20.1).
    Accept => "Accept";
    /// `Event` / `o` (RFC 6665).
    Event => "Event", 'o';
    /// `Allow-Events` / `u` (RFC 6665).
    AllowEvents => "Allow-Events", 'u';
    /// `Refer-To` / `r` (RFC 3515).
    ReferTo => "Refer-To", 'r';
    /// `Referred-By` / `b` (RFC 3892).
    ReferredBy => "Referred-By", 'b';
    /// `Retry-After` (§20.33).
    RetryAfter => "Retry-After";
    /// `Warning` (§20.43).
    Warning => "Warning";
    /// `Timestamp` (§20.38).
    Timestamp => "Timestamp";
    /// `RSeq` (RFC 3262).
    RSeq => "RSeq";
    /// `RAck` (RFC 3262).
    RAck => "RAck";
}

impl HeaderName {
    /// Headers that may appear at most once in a message (RFC 3261 §7.3.1: only list-valued headers
    /// may repeat).
    pub fn is_single(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Expires
                | HeaderName::MinExpires
                | HeaderName::SessionExpires
                | HeaderName::MinSe
                | HeaderName::Date
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn lookup_is_case_insensitive_with_compact_forms() {
        assert_eq!(HeaderName::from_bytes(b"MaX-fOrWaRdS"), HeaderName::MaxForwards);
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"I"), HeaderName::CallId);
        for (c, h) in [
            ('i', HeaderName::CallId),
            ('m', HeaderName::Contact),
            ('f', HeaderName::From),
            ('t', HeaderName::To),
            ('v', HeaderName::Via),
            ('l', HeaderName::ContentLength),
            ('c', HeaderName::ContentType),
            ('k', HeaderName::Supported),
            ('s', HeaderName::Subject),
            ('e', HeaderName::ContentEncoding),
            ('o', HeaderName::Event),
            ('u', HeaderName::AllowEvents),
            ('r', HeaderName::ReferTo),
            ('b', HeaderName::ReferredBy),
            ('x', HeaderName::SessionExpires),
        ] {
            assert_eq!(HeaderName::from_bytes(c.to_string().as_bytes()), h);
            assert_eq!(h.compact(), Some(c));
        }
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"www-authenticate").as_str(), "WWW-Authenticate");
    }

    /// The plain definition the table lookups must agree with.
    fn reference(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return super::KNOWN
                .iter()
                .map(|k| k.name)
                .find(|h| h.compact().is_some_and(|c| name[0].eq_ignore_ascii_case(&(c as u8))))
                .unwrap_or(HeaderName::Other);
        }
        super::KNOWN.iter().find(|k| name.eq_ignore_ascii_case(k.canon.as_bytes())).map_or(HeaderName::Other, |k| k.name)
    }

    /// Every known name in several spellings and near misses (a byte changed, dropped or added,
    /// `-` swapped for CR, which folds onto it under `| 0x20`), through every lookup path: the
    /// public one, the framing one with and without 24 bytes of window, and the line-start one.
    #[test]
    fn fast_lookups_agree_with_the_definition() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for k in super::KNOWN {
            let c = k.canon.as_bytes();
            names.push(c.to_vec());
            names.push(c.to_ascii_lowercase());
            names.push(c.to_ascii_uppercase());
            names.push(c.iter().enumerate().map(|(i, b)| if i % 2 == 0 { b.to_ascii_uppercase() } else { *b }).collect());
            for i in 0..c.len() {
                for repl in [b'\r', b'\x0d' ^ 0x20, b'_', b'-', c[i] ^ 0x20, c[i] ^ 0x01, 0xc3] {
                    let mut v = c.to_vec();
                    v[i] = repl;
                    names.push(v);
                }
                let mut v = c.to_vec();
                v.remove(i);
                names.push(v);
            }
            names.push([c, b"x"].concat());
        }
        for c in b'\0'..=b'\x7f' {
            names.push(vec![c]);
        }
        for name in &names {
            let want = reference(name);
            assert_eq!(HeaderName::from_bytes(name), want, "{:?}", String::from_utf8_lossy(name));
            // Framing path: name at the start of a buffer, with a short and a long tail.
            for tail in [&b":"[..], b": value that is long enough for the window\r\n"] {
                let line = [name.as_slice(), tail].concat();
                assert_eq!(HeaderName::from_bytes_in(&line, 0, name.len()), want, "{:?}", String::from_utf8_lossy(&line));
                if let Some(win) = line.first_chunk::<24>() {
                    if name.contains(&b':') || name.ends_with(b" ") || name.ends_with(b"\t") {
                        continue;
                    }
                    assert_eq!(HeaderName::at_line_start(win), Some((want, name.len())), "{:?}", String::from_utf8_lossy(&line));
                }
            }
        }
        // WSP before the ':' or no ':' in the window: the general path decides.
        assert_eq!(HeaderName::at_line_start(b"Via :SIP/2.0/UDP host;br"), None);
        assert_eq!(HeaderName::at_line_start(b"Proxy-Authorization-Extr"), None);
    }
}
