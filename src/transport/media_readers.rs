//! Media sockets read by a fixed set of reader threads (Linux): one thread per core, each owning
//! its sockets in one `epoll` set, reading every ready socket with `recvmmsg` (up to
//! [`mmsg::BATCH`] datagrams a call) and handing what one wake-up read to the driver as one
//! channel message. A socket goes to thread `(port / 2) % threads`, so an RTP port and its RTCP
//! neighbour share a thread.
//!
//! Closing is synchronous: [`Readers::remove`] takes the socket out of its thread's set under
//! the thread's lock (a thread reads only while it holds that lock), so when it returns the
//! reader holds no reference to the socket and the caller's drop closes it. The port is free
//! before the allocator can hand it out again (a socket closed later made a re-bind of the same
//! port fail, and some calls end `relay-port-taken`).

use super::mmsg;
use crate::application::FlowId;
use crate::collections::HashMap;
use bytes::Bytes;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// Per flow (the epoll token): the socket and whether it is IPv6. Read only under the lock.
    sockets: Mutex<HashMap<u64, (Arc<UdpSocket>, bool)>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, (Arc<UdpSocket>, bool)>> {
        // A reader that panicked left a consistent map (it only reads it).
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The reader threads of one driver (spawned on first use).
pub(crate) struct Readers {
    threads: Vec<Option<Arc<Shared>>>,
    tx: mpsc::Sender<Batch>,
    /// Reader wake-ups and datagrams read, over all threads (for the exit log line).
    stats: Arc<(AtomicU64, AtomicU64)>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("threads", &self.threads.len()).finish()
    }
}

impl Readers {
    /// `threads` reader threads (at least one) that send batches on `tx`.
    pub(crate) fn new(threads: usize, tx: mpsc::Sender<Batch>) -> Readers {
        Readers { threads: (0..threads.max(1)).map(|_| None).collect(), tx, stats: Arc::default() }
    }

    /// One reader per core.
    pub(crate) fn per_core(tx: mpsc::Sender<Batch>) -> Readers {
        Readers::new(std::thread::available_parallelism().map_or(1, |n| n.get()), tx)
    }

    fn index(&self, port: u16) -> usize {
        usize::from(port / 2) % self.threads.len()
    }

    fn thread(&mut self, i: usize) -> io::Result<&Arc<Shared>> {
        if self.threads[i].is_none() {
            let shared = Arc::new(Shared {
                epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
                wake: EventFd::new()?,
                stop: AtomicBool::new(false),
                sockets: Mutex::new(HashMap::default()),
            });
            shared.epoll.add(&shared.wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
            let (s, tx, stats) = (shared.clone(), self.tx.clone(), self.stats.clone());
            std::thread::Builder::new().name(format!("media-reader-{i}")).spawn(move || read_loop(&s, &tx, &stats))?;
            self.threads[i] = Some(shared);
        }
        self.threads[i].as_ref().ok_or_else(|| io::Error::other("no reader"))
    }

    /// Reads `socket` (non-blocking, bound) as `flow` from now on.
    pub(crate) fn add(&mut self, flow: FlowId, socket: Arc<UdpSocket>) -> io::Result<()> {
        let local = socket.local_addr()?;
        let shared = self.thread(self.index(local.port()))?.clone();
        let mut sockets = shared.lock();
        shared.epoll.add(&*socket, EpollEvent::new(EpollFlags::EPOLLIN, u64::from(flow.0)))?;
        sockets.insert(u64::from(flow.0), (socket, local.is_ipv6()));
        Ok(())
    }

    /// Stops reading `flow` (bound on `port`): when this returns, no reader holds its socket.
    pub(crate) fn remove(&mut self, flow: FlowId, port: u16) {
        let i = self.index(port);
        let Some(shared) = &self.threads[i] else { return };
        let mut sockets = shared.lock();
        if let Some((socket, _)) = sockets.remove(&u64::from(flow.0)) {
            let _ = shared.epoll.delete(&*socket);
        }
    }

    /// Reader wake-ups that read something, and datagrams read.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (self.stats.0.load(Ordering::Relaxed), self.stats.1.load(Ordering::Relaxed))
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

/// A reader thread: wait for ready sockets, read each (a few `recvmmsg` at most), send what was
/// read as one batch.
fn read_loop(shared: &Shared, tx: &mpsc::Sender<Batch>, stats: &(AtomicU64, AtomicU64)) {
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; mmsg::BATCH * SLOT];
    let mut meta = Vec::with_capacity(mmsg::BATCH);
    // Offsets into `data` of the datagrams of one wake-up.
    let mut found: Vec<(FlowId, SocketAddr, usize, usize)> = Vec::new();
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
        {
            let sockets = shared.lock();
            for ev in &events[..n] {
                let token = ev.data();
                let Some((socket, v6)) = sockets.get(&token) else { continue };
                let flow = FlowId(token as u32);
                for _ in 0..CALLS_PER_SOCKET {
                    meta.clear();
                    let Ok(got) = mmsg::recv(socket.as_raw_fd(), *v6, &mut buf, SLOT, &mut meta) else { break };
                    for &(i, len, src) in &meta {
                        let at = i * SLOT;
                        let len = len.min(SLOT);
                        found.push((flow, src, data.len(), len));
                        data.extend_from_slice(&buf[at..at + len]);
                    }
                    if got < mmsg::BATCH {
                        break;
                    }
                }
            }
        }
        if found.is_empty() {
            continue;
        }
        stats.0.fetch_add(1, Ordering::Relaxed);
        stats.1.fetch_add(found.len() as u64, Ordering::Relaxed);
        // One allocation for the payloads of the whole wake-up; each datagram is a slice of it.
        let data = Bytes::from(data);
        let batch: Batch = found.drain(..).map(|(flow, src, at, len)| (flow, src, data.slice(at..at + len))).collect();
        if tx.blocking_send(batch).is_err() {
            return;
        }
    }
}
