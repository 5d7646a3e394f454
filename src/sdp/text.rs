//! [`Text`]: a cheap, shareable, UTF-8 string backed by [`Bytes`].

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// An immutable UTF-8 string that shares the buffer it was parsed from.
///
/// Every text field of a parsed [`SessionDescription`](super::SessionDescription)
/// is a `Text` that points into the original SDP body, so parsing copies no
/// text. Cloning is a reference-count increment.
///
/// A `Text` is always valid UTF-8: it can only be built from a `&'static str`,
/// a `String`, [`Text::from_utf8`], or by the parser from a body it has checked.
#[derive(Clone, Default)]
pub struct Text(Bytes);

impl Text {
    /// An empty text.
    pub const fn new() -> Text {
        Text(Bytes::new())
    }

    /// Wraps `bytes` after checking that they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Text, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }

    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        // The invariant guarantees UTF-8, so the fallback is never taken; it
        // only exists so that this crate needs neither `unsafe` nor a panic.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The underlying shared buffer.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// Consumes the text and returns the underlying buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Returns `part` as a `Text` that shares `whole`'s buffer when `part`
    /// lies inside `whole` (the parser's case), or a copy of it otherwise.
    pub(super) fn slice_of(whole: &Bytes, part: &str) -> Text {
        let base = whole.as_ptr() as usize;
        let start = (part.as_ptr() as usize).checked_sub(base);
        match start {
            Some(start) if start.checked_add(part.len()).is_some_and(|end| end <= whole.len()) => {
                // The range lies inside `whole`, so its bytes are `part`'s
                // bytes: valid UTF-8.
                Text(whole.slice(start..start + part.len()))
            }
            _ => Text(Bytes::copy_from_slice(part.as_bytes())),
        }
    }

    /// Returns `part` (a sub-slice of `self`) as a `Text` sharing this buffer.
    pub(super) fn sub(&self, part: &str) -> Text {
        Text::slice_of(&self.0, part)
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s))
    }
}

impl From<Text> for Bytes {
    fn from(t: Text) -> Bytes {
        t.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.0 == other.0
    }
}

impl Eq for Text {}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Hash like `str` so that `Borrow<str>` lookups work.
        self.as_str().hash(state);
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn text_basics() {
        let t = Text::from("PCMU");
        assert_eq!(t, "PCMU");
        assert_eq!("PCMU", t);
        assert_eq!(t.as_str(), "PCMU");
        assert_eq!(t.len(), 4);
        assert_eq!(format!("{t}"), "PCMU");
        assert_eq!(format!("{t:?}"), "\"PCMU\"");
        assert_eq!(Text::from(String::from("PCMU")), t);
        assert!(Text::new().is_empty());
        let mut set = HashSet::new();
        set.insert(t.clone());
        assert!(set.contains("PCMU"));
    }

    #[test]
    fn from_utf8_rejects_invalid() {
        assert!(Text::from_utf8(Bytes::from_static(b"\xff")).is_err());
        assert_eq!(Text::from_utf8(Bytes::from_static(b"ok")).ok(), Some(Text::from("ok")));
    }

    #[test]
    fn slice_of_shares_or_copies() {
        let whole = Bytes::from_static(b"hello world");
        let s = std::str::from_utf8(&whole).unwrap_or_default();
        let t = Text::slice_of(&whole, s.get(6..).unwrap_or_default());
        assert_eq!(t, "world");
        assert_eq!(t.bytes().as_ptr(), whole.as_ptr().wrapping_add(6));
        let other = Text::slice_of(&whole, "elsewhere");
        assert_eq!(other, "elsewhere");
    }
}
