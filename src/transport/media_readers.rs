//! Media sockets read by a fixed set of reader threads (Linux): one thread per core (or per relay
//! lane), each owning its sockets in one `epoll` set and reading every ready socket with
//! `recvmmsg` (up to [`mmsg::BATCH`] datagrams a call). A socket goes to thread
//! `(port / 2) % threads` ([`crate::relay::lane_of`]), so an RTP port and its RTCP neighbour share
//! a thread.
//!
//! Relaying (issue 16 point 3): when the application relays in lanes
//! ([`crate::relay::RelayShards`], one per thread), thread `i` owns lane `i`: what one `recvmmsg`
//! read on a port of a call of that lane goes through the lane's relay (latching, counting,
//! hold) under its lock, and out with `sendmmsg` from the paired port, which the same thread
//! holds (the B2BUA binds both legs of a call in one lane). Such a datagram never reaches the
//! driver. Everything else (a flow no call of the lane owns: another application's media, a
//! call split over two lanes) is handed to the driver, one channel message per wake-up.
//!
//! An experiment, off by default: with `SWITCHBOARD_RELAY_ANY_THREAD=1` every thread of a
//! driver has all of its sockets in its `epoll` set (`EPOLLEXCLUSIVE`: a datagram wakes one
//! waiting thread), and whichever thread is woken reads and forwards the socket under its lane's
//! lock, as rtpengine's threads share one poller (BENCHMARKS.md "Relay tail latency"). In both
//! modes the lane's lock is held from the `recvmmsg` to the `sendmmsg`, so a flow stays in order.
//!
//! Closing is synchronous: [`Readers::remove`] takes the socket out of its thread's set (every
//! thread's, in the experiment) under the thread's lock (a thread reads and forwards only while
//! it holds that lock), so when it returns no reader holds a reference to the socket and the
//! caller's drop closes it. The port
//! is free before the allocator can hand it out again (a socket closed later made a re-bind of
//! the same port fail, and some calls end `relay-port-taken`).

use super::mmsg;
use crate::application::FlowId;
use crate::collections::HashMap;
use crate::relay::{lane_of, RelayShards, Shard};
use bytes::Bytes;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::mpsc;

/// The datagrams of one reader wake-up: flow, source, payload (slices of one buffer).
pub(crate) type Batch = Vec<(FlowId, SocketAddr, Bytes)>;

/// Room for one datagram (RTP over UDP on an Ethernet path fits; a longer datagram is cut).
const SLOT: usize = 2048;

/// `recvmmsg` calls per ready socket and wake-up at most, so one busy socket cannot starve the
/// others of its thread (level-triggered: what is left wakes the thread again at once).
const CALLS_PER_SOCKET: usize = 4;

/// The epoll token of the thread's wake-up `eventfd` (flow tokens are `u32`).
const WAKE: u64 = u64::MAX;

/// One thread's sockets, its epoll set and how to stop it.
struct Shared {
    epoll: Epoll,
    wake: EventFd,
    stop: AtomicBool,
    /// Per flow (the epoll token): the socket, whether it is IPv6, and its lane. Read only under
    /// the lock.
    sockets: Mutex<HashMap<u64, Entry>>,
    /// Datagrams this thread forwarded itself (relay lane), and those it could not send.
    forwarded: AtomicU64,
    send_drops: AtomicU64,
}

/// A socket in a reader's table: the socket, whether it is IPv6, and its lane.
type Entry = (Arc<UdpSocket>, bool, usize);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // A reader that panicked left a consistent map (it only reads it).
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The reader threads of one driver (spawned on first use).
pub(crate) struct Readers {
    threads: Vec<Option<Arc<Shared>>>,
    /// The relay's lanes, one per thread.
    relay: Option<RelayShards>,
    tx: mpsc::Sender<Batch>,
    /// Reader wake-ups and datagrams read, over all threads (for the exit log line).
    stats: Arc<(AtomicU64, AtomicU64)>,
    /// EXPERIMENT (relay16b): every thread waits on every socket (`EPOLLEXCLUSIVE`), a socket's
    /// datagrams read and forwarded under its lane's lock by whichever thread is woken.
    any_thread: bool,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("threads", &self.threads.len()).finish()
    }
}

impl Readers {
    /// `threads` reader threads (at least one) that send batches on `tx`.
    pub(crate) fn new(threads: usize, tx: mpsc::Sender<Batch>) -> Readers {
        Readers { threads: (0..threads.max(1)).map(|_| None).collect(), relay: None, tx, stats: Arc::default(), any_thread: false }
    }

    /// One reader per relay lane, each forwarding its lane's calls; without a relay in lanes, one
    /// reader per core.
    pub(crate) fn per_core(tx: mpsc::Sender<Batch>, relay: Option<RelayShards>) -> Readers {
        match relay {
            Some(shards) => {
                let mut readers = Readers::new(shards.lanes(), tx);
                readers.relay = Some(shards);
                readers.any_thread = std::env::var_os("SWITCHBOARD_RELAY_ANY_THREAD").is_some_and(|v| v == "1");
                readers
            }
            None => Readers::new(std::thread::available_parallelism().map_or(1, |n| n.get()), tx),
        }
    }

    fn index(&self, port: u16) -> usize {
        lane_of(port, self.threads.len())
    }

    fn thread(&mut self, i: usize) -> io::Result<&Arc<Shared>> {
        if self.threads[i].is_none() {
            let shared = Arc::new(Shared {
                epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
                wake: EventFd::new()?,
                stop: AtomicBool::new(false),
                sockets: Mutex::new(HashMap::default()),
                forwarded: AtomicU64::new(0),
                send_drops: AtomicU64::new(0),
            });
            shared.epoll.add(&shared.wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
            let (s, tx, stats) = (shared.clone(), self.tx.clone(), self.stats.clone());
            let shards = self.relay.clone();
            std::thread::Builder::new().name(format!("media-reader-{i}")).spawn(move || read_loop(&s, &tx, &stats, shards.as_ref()))?;
            self.threads[i] = Some(shared);
        }
        self.threads[i].as_ref().ok_or_else(|| io::Error::other("no reader"))
    }

    /// Reads `socket` (non-blocking, bound) as `flow` from now on.
    pub(crate) fn add(&mut self, flow: FlowId, socket: Arc<UdpSocket>) -> io::Result<()> {
        let local = socket.local_addr()?;
        let lane = self.index(local.port());
        let (readers, flags) = if self.any_thread {
            (0..self.threads.len(), EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE)
        } else {
            (lane..lane + 1, EpollFlags::EPOLLIN)
        };
        for i in readers {
            let shared = self.thread(i)?.clone();
            let mut sockets = shared.lock();
            shared.epoll.add(&*socket, EpollEvent::new(flags, u64::from(flow.0)))?;
            sockets.insert(u64::from(flow.0), (socket.clone(), local.is_ipv6(), lane));
        }
        Ok(())
    }

    /// Stops reading `flow` (bound on `port`): when this returns, no reader holds its socket.
    pub(crate) fn remove(&mut self, flow: FlowId, port: u16) {
        let lane = self.index(port);
        let readers = if self.any_thread { 0..self.threads.len() } else { lane..lane + 1 };
        for shared in self.threads[readers].iter().flatten() {
            let mut sockets = shared.lock();
            if let Some((socket, ..)) = sockets.remove(&u64::from(flow.0)) {
                let _ = shared.epoll.delete(&*socket);
            }
        }
    }

    /// Reader wake-ups that read something, and datagrams read.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (self.stats.0.load(Ordering::Relaxed), self.stats.1.load(Ordering::Relaxed))
    }

    /// Per thread: datagrams it forwarded itself (its relay lane), and those it could not send.
    pub(crate) fn forwarded(&self) -> Vec<(u64, u64)> {
        let get = |s: &Option<Arc<Shared>>| {
            s.as_ref().map_or((0, 0), |s| (s.forwarded.load(Ordering::Relaxed), s.send_drops.load(Ordering::Relaxed)))
        };
        self.threads.iter().map(get).collect()
    }
}

impl Drop for Readers {
    /// Closes every socket at once and tells the threads to stop (they exit at their next
    /// wake-up; not joined, so a thread waiting on a full channel cannot hold the driver).
    fn drop(&mut self) {
        for shared in self.threads.iter().flatten() {
            shared.lock().clear();
            shared.stop.store(true, Ordering::Release);
            let _ = shared.wake.write(1);
        }
    }
}

/// A reader thread: wait for ready sockets, read each (a few `recvmmsg` at most); forward what
/// belongs to a call of the socket's relay lane (`shards`; the socket's table entry names its
/// lane) at once, and send the rest to the driver as one batch per wake-up.
fn read_loop(shared: &Shared, tx: &mpsc::Sender<Batch>, stats: &(AtomicU64, AtomicU64), shards: Option<&RelayShards>) {
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; mmsg::BATCH * SLOT];
    let mut meta = Vec::with_capacity(mmsg::BATCH);
    // Offsets into `data` of the datagrams of one wake-up for the driver.
    let mut found: Vec<(FlowId, SocketAddr, usize, usize)> = Vec::new();
    // What one `recvmmsg` read that the lane forwards: out flow, destination, offset and length
    // in `buf`.
    let mut out: Vec<(FlowId, SocketAddr, usize, usize)> = Vec::with_capacity(mmsg::BATCH);
    // Slots the next `recvmmsg` offers: grows with what the last one took (`mmsg::recv_want`), so
    // at a low rate, where a socket holds one datagram, a call does not prepare 32.
    let mut want = mmsg::recv_want(0);
    loop {
        let n = match shared.epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "media reader stops");
                return;
            }
        };
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let mut data = Vec::new();
        let mut read = 0u64;
        {
            let sockets = shared.lock();
            // The lane's lock is held from the receive to the send, so that when several threads
            // may read a socket (`any_thread`), its datagrams still leave in order. It is kept
            // over the wake-up's sockets while they are in one lane (always, unless
            // `any_thread`): one lock per wake-up, not per ready socket.
            let mut held: Option<(usize, Option<MutexGuard<'_, Shard>>)> = None;
            for ev in &events[..n] {
                let token = ev.data();
                let Some((socket, v6, lane)) = sockets.get(&token) else { continue };
                let flow = FlowId(token as u32);
                if held.as_ref().is_none_or(|(l, _)| l != lane) {
                    // Never two lanes' locks at once: the old one goes before the new is taken.
                    drop(held.take());
                    held = Some((*lane, shards.and_then(|shards| shards.lock(*lane))));
                }
                let shard = held.as_mut().and_then(|(_, g)| g.as_deref_mut());
                // Whether the lane relays this flow is the same for every datagram of the socket.
                let mut relay = shard.filter(|s| s.owns(flow));
                for _ in 0..CALLS_PER_SOCKET {
                    meta.clear();
                    let Ok(got) = mmsg::recv(socket.as_raw_fd(), *v6, &mut buf, SLOT, &mut meta, false, want) else { break };
                    read += meta.len() as u64;
                    let offered = want;
                    want = mmsg::recv_want(got);
                    let now = Instant::now();
                    for &(i, len, src) in &meta {
                        let at = i * SLOT;
                        let len = len.min(SLOT);
                        let payload = buf.get(at..at + len).unwrap_or_default();
                        match relay.as_deref_mut() {
                            Some(s) => {
                                if let Some((to, dest)) = s.handle_datagram(flow, src, payload, now) {
                                    out.push((to, dest, at, len));
                                }
                            }
                            None => {
                                found.push((flow, src, data.len(), len));
                                data.extend_from_slice(payload);
                            }
                        }
                    }
                    forward(&sockets, &buf, &mut out, shared);
                    // Fewer than offered: the socket is empty (level-triggered epoll reports it
                    // again otherwise).
                    if got < offered {
                        break;
                    }
                }
            }
        }
        if read > 0 {
            stats.0.fetch_add(1, Ordering::Relaxed);
            stats.1.fetch_add(read, Ordering::Relaxed);
        }
        if found.is_empty() {
            continue;
        }
        // One allocation for the payloads of the whole wake-up; each datagram is a slice of it.
        let data = Bytes::from(data);
        let batch: Batch = found.drain(..).map(|(flow, src, at, len)| (flow, src, data.slice(at..at + len))).collect();
        if tx.blocking_send(batch).is_err() {
            return;
        }
    }
}

/// Sends what the lane's relay routed (`out`, slices of `buf`) from the out flows' sockets, one
/// `sendmmsg` per out flow and batch; empties `out`. A datagram the socket refuses is dropped and
/// counted (as the driver's non-blocking send does).
fn forward(sockets: &HashMap<u64, Entry>, buf: &[u8], out: &mut Vec<(FlowId, SocketAddr, usize, usize)>, shared: &Shared) {
    if out.is_empty() {
        return;
    }
    // Mostly one out flow (the paired leg's RTP port); RTCP on its own port makes a second. The
    // offset keeps each flow's datagrams in the order they came.
    if out.windows(2).any(|w| w[0].0 != w[1].0) {
        out.sort_unstable_by_key(|&(flow, _, at, _)| (flow.0, at));
    }
    let (mut sent, mut dropped) = (0u64, 0u64);
    let mut rest = &out[..];
    while let Some(&(flow, ..)) = rest.first() {
        let run = rest.iter().take_while(|o| o.0 == flow).count();
        let (group, tail) = rest.split_at(run);
        rest = tail;
        let Some((socket, ..)) = sockets.get(&u64::from(flow.0)) else {
            dropped += run as u64;
            continue;
        };
        // One datagram (the usual case below a few thousand packets/s per lane): `sendto`, which
        // the kernel takes with less copying of headers than a `sendmmsg` of one.
        if let [(_, dest, at, len)] = *group {
            match socket.send_to(buf.get(at..at + len).unwrap_or_default(), dest) {
                Ok(_) => sent += 1,
                Err(_) => dropped += 1,
            }
            continue;
        }
        let mut left = group;
        while !left.is_empty() {
            match mmsg::send_ranges(socket.as_raw_fd(), buf, left) {
                Ok(0) => {
                    dropped += left.len() as u64;
                    break;
                }
                Ok(k) => {
                    sent += k as u64;
                    left = left.get(k..).unwrap_or_default();
                }
                Err(_) => {
                    dropped += 1;
                    left = left.get(1..).unwrap_or_default();
                }
            }
        }
    }
    shared.forwarded.fetch_add(sent, Ordering::Relaxed);
    if dropped > 0 {
        shared.send_drops.fetch_add(dropped, Ordering::Relaxed);
    }
    out.clear();
}
