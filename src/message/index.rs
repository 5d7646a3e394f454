//! Where the headers every transaction lookup reads sit in a message's header table, recorded
//! while framing so the accessors do not rescan the table.

use super::{Header, HeaderName};

/// The headers whose first position is recorded while framing, so `via()`, `call_id()`, `cseq()`,
/// `from()`, `to()` and the Content-Length check do not rescan the header table.
const INDEXED: [HeaderName; 6] =
    [HeaderName::Via, HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::CSeq, HeaderName::ContentLength];

/// First position in the header table of each [`INDEXED`] name, and which of them repeat. One byte
/// per name keeps `Message` small; a name first seen past line 253 is left to a table scan.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeaderIndex {
    /// `headers` index of the first line with that name, or [`HeaderIndex::ABSENT`] or
    /// [`HeaderIndex::UNINDEXED`].
    first: [u8; INDEXED.len()],
    /// Bit `i` set: `INDEXED[i]` appears on more than one line.
    repeated: u8,
}

/// Where a header may be found according to a [`HeaderIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Not an indexed name (or too far down the table): scan the table.
    Scan,
    /// Absent.
    Absent,
    /// On exactly one line, at this table index.
    Once(usize),
    /// First at this table index, and on more lines after it.
    Repeated(usize),
}

// ===== impl HeaderIndex =====

impl HeaderIndex {
    const ABSENT: u8 = u8::MAX;
    const UNINDEXED: u8 = u8::MAX - 1;
    pub(super) const EMPTY: HeaderIndex = HeaderIndex { first: [HeaderIndex::ABSENT; INDEXED.len()], repeated: 0 };

    /// The position of `name` in [`INDEXED`].
    #[inline]
    fn slot(name: HeaderName) -> Option<usize> {
        Some(match name {
            HeaderName::Via => 0,
            HeaderName::From => 1,
            HeaderName::To => 2,
            HeaderName::CallId => 3,
            HeaderName::CSeq => 4,
            HeaderName::ContentLength => 5,
            _ => return None,
        })
    }

    /// Records that table entry `at` is a `name` header; entries must be noted in table order.
    #[inline]
    pub(super) fn note(&mut self, name: HeaderName, at: usize) {
        if let Some(s) = HeaderIndex::slot(name) {
            if self.first[s] == HeaderIndex::ABSENT {
                self.first[s] = u8::try_from(at).ok().filter(|&a| a < HeaderIndex::UNINDEXED).unwrap_or(HeaderIndex::UNINDEXED);
            } else {
                self.repeated |= 1 << s;
            }
        }
    }

    /// The index of a whole table (for built and edited messages).
    pub(super) fn of(headers: &[Header]) -> HeaderIndex {
        let mut ix = HeaderIndex::EMPTY;
        for (at, h) in headers.iter().enumerate() {
            ix.note(h.name, at);
        }
        ix
    }

    #[inline]
    pub(super) fn get(&self, name: HeaderName) -> Lookup {
        let Some(s) = HeaderIndex::slot(name) else {
            return Lookup::Scan;
        };
        match self.first[s] {
            HeaderIndex::ABSENT => Lookup::Absent,
            HeaderIndex::UNINDEXED => Lookup::Scan,
            at if self.repeated & (1 << s) != 0 => Lookup::Repeated(usize::from(at)),
            at => Lookup::Once(usize::from(at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_indexed_list() {
        for (i, &name) in INDEXED.iter().enumerate() {
            assert_eq!(HeaderIndex::slot(name), Some(i));
        }
        assert_eq!(HeaderIndex::slot(HeaderName::Contact), None);
        assert_eq!(HeaderIndex::EMPTY.get(HeaderName::Via), Lookup::Absent);
        assert_eq!(HeaderIndex::EMPTY.get(HeaderName::Contact), Lookup::Scan);
    }
}
