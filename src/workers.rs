//! The hand-off between the workers of `serve --workers N` (issue 16 point 1; I/O: tokio channels).
//!
//! Every worker binds the same SIP address with `SO_REUSEPORT`
//! ([`crate::transport::udp::UdpTransport::bind_shared`]); the kernel spreads datagrams over the
//! sockets by source address, not by call. So a worker reads the Call-ID of each datagram it
//! receives ([`call_id_of`], a scan of the header lines, no parse) and keeps it when
//! [`crate::cluster::worker_of`] names it, or hands it, with its source address, to the worker
//! named, through that worker's channel: one hand-off at most, and no lock on the way (a channel
//! per worker). A datagram without a readable Call-ID stays where it arrived (the endpoint answers
//! or drops it as before).
//!
//! **A REGISTER request is handled where it lands** ([`is_register`]), with no hand-off (issue 16:
//! with one source, as sipp or a single upstream proxy, the hand-off of half the REGISTERs cost
//! a wake-up of the other worker's thread each, twice the CPU per registration of one worker),
//! because nothing it touches belongs to one worker:
//! - its server transaction (RFC 3261 §17.2.2) lives on the worker that received it, and its
//!   retransmissions come from the same source address and port to the same local address, so
//!   `SO_REUSEPORT`'s hash of that 4-tuple puts them on the same socket, hence the same worker,
//!   where they are absorbed (the socket set does not change while the service runs);
//! - the registrar is shared, sharded by address-of-record behind mutexes
//!   (`crate::registrar::shared`), as are the users, the digest nonce-count replay table (a nonce
//!   minted by any worker is checked by any worker: the key is shared) and the store writer;
//! - the per-source rate limit is one set of buckets shared by the workers
//!   ([`crate::transport::rate_limit::SharedRateLimiter`]), so a source whose REGISTERs all stay
//!   on one worker still gets the whole configured rate; likewise the failed-authentication
//!   back-off is one table ([`crate::service::guard::SharedGuard`]): failures on any worker
//!   count toward one limit, and a block holds on every worker.
//!
//! A REGISTER holds no dialog and starts none, so no later request needs it on the Call-ID's
//! worker. Responses (a REGISTER this service sent) still go by Call-ID to the worker whose
//! client transaction waits for them. Cost of the rule: all the REGISTERs of one source address
//! (one upstream proxy in front of many phones) are handled by one worker; requests that start
//! calls still spread by Call-ID. A retransmission from another source port than its request
//! (a NAT rebinding within the transaction's lifetime) may land on another worker, which has no
//! transaction for it and applies it again (the registrar then refuses the same CSeq, §10.3
//! step 7): the one case the Call-ID hand-off covered and this rule does not.
//!
//! What a worker sends leaves from its own socket, which has the same local address.

use crate::cluster::worker_of;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A datagram handed to another worker, with where it came from.
pub type Handed = (Bytes, SocketAddr);

/// Datagrams a worker's hand-off queue holds; beyond it (that worker far behind) a datagram is
/// dropped and counted, and the sender's retransmission tries again, as with a full socket buffer.
pub const QUEUE: usize = 8192;

/// Counters shared by the workers (the control socket's `workers` answer).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Datagrams handed to another worker.
    pub handed_off: AtomicU64,
    /// Datagrams dropped because the owner's queue was full.
    pub handoff_drops: AtomicU64,
    /// Per worker: datagrams it handled (its own, and those handed to it).
    pub handled: Vec<AtomicU64>,
}

/// One worker's end of the hand-off.
#[derive(Debug)]
pub struct Shard {
    index: usize,
    peers: Vec<mpsc::Sender<Handed>>,
    inbox: mpsc::Receiver<Handed>,
    stats: Arc<WorkerStats>,
}

/// The `n` shards of one service (index `i` at position `i`) and their shared counters.
pub fn shards(n: usize) -> (Vec<Shard>, Arc<WorkerStats>) {
    let n = n.max(1);
    let stats = Arc::new(WorkerStats { handled: (0..n).map(|_| AtomicU64::new(0)).collect(), ..WorkerStats::default() });
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(QUEUE)).unzip();
    let shards = receivers
        .into_iter()
        .enumerate()
        .map(|(index, inbox)| Shard { index, peers: senders.clone(), inbox, stats: stats.clone() })
        .collect();
    (shards, stats)
}

impl Shard {
    /// This worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers.
    pub fn count(&self) -> usize {
        self.peers.len()
    }

    /// A datagram received on this worker's socket: `Some` (given back) when this worker owns it,
    /// `None` when it went to its owner.
    pub fn dispatch(&self, bytes: Bytes, source: SocketAddr) -> Option<Bytes> {
        let owner = match is_register(&bytes) {
            true => self.index,
            false => call_id_of(&bytes).map_or(self.index, |id| worker_of(id, self.count())),
        };
        if owner == self.index {
            self.stats.handled[self.index].fetch_add(1, Ordering::Relaxed);
            return Some(bytes);
        }
        match self.peers[owner].try_send((bytes, source)) {
            Ok(()) => {
                self.stats.handed_off.fetch_add(1, Ordering::Relaxed);
                self.stats.handled[owner].fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.handoff_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
        None
    }

    /// The next datagram handed to this worker.
    pub async fn recv(&mut self) -> Option<Handed> {
        self.inbox.recv().await
    }

    /// A datagram handed to this worker, if one is queued.
    pub fn try_recv(&mut self) -> Option<Handed> {
        self.inbox.try_recv().ok()
    }
}

/// True for a REGISTER request: its request line starts with the method, which is
/// case-sensitive (RFC 3261 §7.1). Handled where it lands (see the module docs).
pub fn is_register(datagram: &[u8]) -> bool {
    datagram.starts_with(b"REGISTER ")
}

/// The Call-ID of a SIP datagram, read from its header lines (`Call-ID` or the compact `i`, any
/// case, RFC 3261 §20.8 and §7.3.3), trimmed; `None` when there is none before the blank line.
/// A scan, not a parse: the owner's endpoint parses the datagram (and refuses it if it must).
pub fn call_id_of(datagram: &[u8]) -> Option<&str> {
    let end = find(datagram, b"\r\n\r\n").unwrap_or(datagram.len());
    for line in datagram[..end].split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            let value = std::str::from_utf8(line[colon + 1..].trim_ascii()).ok()?;
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_id_is_read_in_any_form() {
        let long = b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCall-ID:  abc@h \r\nCSeq: 1 INVITE\r\n\r\nv=0\r\ni: body\r\n";
        assert_eq!(call_id_of(long), Some("abc@h"));
        assert_eq!(call_id_of(b"SIP/2.0 200 OK\r\ni:x1\r\n\r\n"), Some("x1"));
        assert_eq!(call_id_of(b"SIP/2.0 200 OK\r\ncall-id\t: y\r\n"), Some("y"));
        assert_eq!(call_id_of(b"OPTIONS sip:a SIP/2.0\r\nTo: <sip:i:x>\r\n\r\ni: late\r\n"), None);
        assert_eq!(call_id_of(b"\r\n\r\n"), None);
        assert_eq!(call_id_of(b""), None);
        assert_eq!(call_id_of(b"X\r\nCall-ID: \xff\r\n\r\n"), None);
    }

    #[tokio::test]
    async fn a_datagram_goes_to_its_owner_once() {
        let (mut shards, stats) = shards(4);
        let src: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
        let mut handed = 0;
        for i in 0..200 {
            let id = format!("{i}@h");
            let bytes = Bytes::from(format!("BYE sip:a SIP/2.0\r\nCall-ID: {id}\r\n\r\n"));
            let owner = worker_of(&id, 4);
            match shards[0].dispatch(bytes, src) {
                Some(_) => assert_eq!(owner, 0),
                None => {
                    handed += 1;
                    let (got, from) = shards[owner].try_recv().expect("handed to its owner");
                    assert_eq!((call_id_of(&got), from), (Some(id.as_str()), src));
                }
            }
        }
        assert!(handed > 100);
        assert_eq!(stats.handed_off.load(Ordering::Relaxed), handed);
        assert_eq!(stats.handled.iter().map(|h| h.load(Ordering::Relaxed)).sum::<u64>(), 200);
        assert!(shards.iter_mut().all(|s| s.try_recv().is_none()));
    }

    #[tokio::test]
    async fn a_register_stays_where_it_lands_and_its_responses_go_by_call_id() {
        let (mut shards, stats) = shards(2);
        let src: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
        for i in 0..40 {
            let id = format!("{i}@h");
            let landing = i % 2;
            let register = Bytes::from(format!("REGISTER sip:h SIP/2.0\r\nCall-ID: {id}\r\nCSeq: 1 REGISTER\r\n\r\n"));
            assert_eq!(shards[landing].dispatch(register.clone(), src), Some(register), "kept on {landing}");
            // A response to a REGISTER goes to its client transaction's worker, by Call-ID.
            let response = Bytes::from(format!("SIP/2.0 200 OK\r\nCall-ID: {id}\r\nCSeq: 1 REGISTER\r\n\r\n"));
            let kept = shards[landing].dispatch(response, src).is_some();
            assert_eq!(kept, worker_of(&id, 2) == landing);
            // Methods are case-sensitive: a lower-case "register" is not a REGISTER.
            let lower = Bytes::from(format!("register sip:h SIP/2.0\r\nCall-ID: {id}\r\n\r\n"));
            assert_eq!(shards[landing].dispatch(lower, src).is_some(), worker_of(&id, 2) == landing);
        }
        let handed = stats.handed_off.load(Ordering::Relaxed);
        assert!(handed > 20, "only the responses and the lower-case ones moved: {handed}");
        let mut moved = 0;
        for s in shards.iter_mut() {
            while let Some((got, _)) = s.try_recv() {
                assert!(!got.starts_with(b"REGISTER "));
                moved += 1;
            }
        }
        assert_eq!(moved, handed);
    }
}
