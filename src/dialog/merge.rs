//! Merged requests (RFC 3261 §8.2.2.2): the same request reaching us twice over different paths,
//! e.g. through a forking proxy whose branches converge. The copies share From tag, Call-ID and
//! CSeq but carry different top Via branches; the second copy gets `482 Loop Detected`.

use crate::collections::HashMap;
use crate::message::{HeaderName, Message, Method};
use std::time::{Duration, Instant};

/// Remembers requests without a To tag for a while and flags a copy that came by another branch.
///
/// Feed every out-of-dialog request to [`MergeDetector::check`] before handling it; a `Some` answer
/// is the 482 to send instead. ACK and CANCEL are never merged (they share the INVITE's CSeq).
#[derive(Debug, Clone)]
pub struct MergeDetector {
    window: Duration,
    seen: HashMap<Key, Seen>,
    next_sweep: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    from_tag: Box<str>,
    call_id: Box<str>,
    seq: u32,
    method: Method,
}

#[derive(Debug, Clone)]
struct Seen {
    branch: Box<str>,
    until: Instant,
}

impl MergeDetector {
    /// Remembers each request for `window`; 64*T1 (32 s) covers every retransmission of a request
    /// (the lifetime of a server transaction, §17.2).
    pub fn new(window: Duration) -> MergeDetector {
        MergeDetector { window, seen: HashMap::default(), next_sweep: None }
    }

    /// Checks `req`: `Some(482)` when a request with the same From tag, Call-ID and CSeq arrived
    /// earlier over a different branch (§8.2.2.2); `None` otherwise (the request is then
    /// remembered). Requests with a To tag, ACK, CANCEL and requests missing those headers pass.
    #[must_use]
    pub fn check(&mut self, req: &Message, now: Instant) -> Option<Message> {
        self.sweep(now);
        let method = req.method()?;
        if matches!(method, Method::Ack | Method::Cancel) || req.to_tag().ok()?.is_some() {
            return None;
        }
        let key = Key {
            from_tag: req.from_tag().ok()??.into(),
            call_id: req.call_id().ok()?.into(),
            seq: req.cseq().ok()?.seq,
            method: method.clone(),
        };
        // Without an RFC 3261 branch, the whole top Via value stands for the path (§17.2.3).
        let via = req.via().ok()?;
        let branch: Box<str> = match via.branch() {
            Some(b) if via.has_rfc3261_branch() => b.into(),
            _ => String::from_utf8_lossy(req.header(HeaderName::Via)?).into(),
        };
        match self.seen.get(&key) {
            Some(s) if s.until > now && s.branch != branch => {
                Some(req.response_to(482, "Loop Detected", Some(&super::derived_tag(req))).finish())
            }
            _ => {
                self.seen.insert(key, Seen { branch, until: now + self.window });
                None
            }
        }
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// When [`MergeDetector::handle_timeout`] should next run: the next sweep while anything is
    /// remembered, so the table empties once requests stop coming (issue 13: nothing per call
    /// outlives the call), not only when the next request arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep.filter(|_| !self.seen.is_empty())
    }

    /// Forgets expired entries if a sweep is due. Calling it early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sweep(now);
    }

    /// Forgets expired entries, at most once per window.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.seen.retain(|_, s| s.until > now);
        self.next_sweep = Some(now + self.window);
    }
}
