//! A blocking UDP socket that moves datagrams in batches (I/O), for a thread that owns its socket
//! and runs no async runtime (the `softphone load` workers).
//!
//! The same batching as [`super::udp::UdpTransport`]: on Linux one `recvmmsg(2)` waits for the
//! first datagram (up to a timeout, `SO_RCVTIMEO`) and takes every queued one with it
//! (`MSG_WAITFORONE`), so a wake-up is one system call however many datagrams it finds and none
//! ends in a failing receive; one `sendmmsg(2)` sends up to [`BATCH`] datagrams. Elsewhere the same
//! calls loop over `recv_from`/`send_to`. Received datagrams are copied into `Bytes` of their own
//! size, out of one receive buffer reused by every call (see `udp` for why the copy stays).

use super::udp::{BATCH, MAX_DATAGRAM, SOCKET_BUFFER};
use super::Transmit;
use bytes::Bytes;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// A bound, blocking UDP socket that receives and sends in batches.
#[derive(Debug)]
pub struct SyncUdp {
    socket: UdpSocket,
    local: SocketAddr,
    /// [`BATCH`] slots of [`MAX_DATAGRAM`] bytes, reused by every receive.
    buf: Vec<u8>,
    /// Slot, length and source of each datagram of the last receive (reused).
    meta: Vec<(usize, usize, SocketAddr)>,
    /// The receive timeout last set on the socket (set again only when it changes).
    timeout: Option<Duration>,
}

/// The shortest receive timeout set: the kernel cannot wait less than a tick anyway, and a zero
/// `SO_RCVTIMEO` would mean "wait for ever".
const MIN_WAIT: Duration = Duration::from_micros(100);

impl SyncUdp {
    /// Binds `addr` (port 0 picks an ephemeral port), blocking, with [`SOCKET_BUFFER`]-sized
    /// kernel buffers (best effort).
    pub fn bind(addr: SocketAddr) -> io::Result<SyncUdp> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER).and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER)) {
            tracing::debug!(error = %e, "socket buffer size not raised");
        }
        socket.bind(&addr.into())?;
        let socket: UdpSocket = socket.into();
        let local = socket.local_addr()?;
        Ok(SyncUdp { socket, local, buf: vec![0; BATCH * MAX_DATAGRAM], meta: Vec::with_capacity(BATCH), timeout: None })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits up to `wait` for a datagram, then appends it and every other queued one (up to
    /// [`BATCH`]) to `out`: one system call on Linux. Returns how many were appended; 0 when
    /// `wait` passed with nothing (or a signal interrupted the wait).
    pub fn recv_batch(&mut self, out: &mut Vec<(Bytes, SocketAddr)>, wait: Duration) -> io::Result<usize> {
        let wait = wait.max(MIN_WAIT);
        if self.timeout != Some(wait) {
            self.socket.set_read_timeout(Some(wait))?;
            self.timeout = Some(wait);
        }
        self.meta.clear();
        match self.recv_slots() {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => return Ok(0),
            Err(e) => return Err(e),
        }
        for &(slot, n, src) in &self.meta {
            let start = slot * MAX_DATAGRAM;
            let Some(bytes) = self.buf.get(start..start + n.min(MAX_DATAGRAM)) else { continue };
            out.push((Bytes::copy_from_slice(bytes), src));
        }
        Ok(self.meta.len())
    }

    /// One `recvmmsg` (`MSG_WAITFORONE`) into the slots; their lengths and sources go to `meta`.
    #[cfg(target_os = "linux")]
    fn recv_slots(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        super::mmsg::recv(self.socket.as_raw_fd(), self.local.is_ipv6(), &mut self.buf[..], MAX_DATAGRAM, &mut self.meta, true, BATCH)
            .map(drop)
    }

    /// A blocking `recv_from` into the first slot, then non-blocking ones until none is queued.
    #[cfg(not(target_os = "linux"))]
    fn recv_slots(&mut self) -> io::Result<()> {
        let (socket, meta) = (&self.socket, &mut self.meta);
        let mut slots = self.buf.chunks_mut(MAX_DATAGRAM).enumerate();
        if let Some((i, slot)) = slots.next() {
            let (n, src) = socket.recv_from(slot)?;
            meta.push((i, n, src));
        }
        socket.set_nonblocking(true)?;
        for (i, slot) in slots {
            match socket.recv_from(slot) {
                Ok((n, src)) => meta.push((i, n, src)),
                Err(_) => break,
            }
        }
        socket.set_nonblocking(false)
    }

    /// Sends every datagram of `batch`, up to [`BATCH`] per system call on Linux (blocking while
    /// the socket's buffer is full). A datagram that cannot be sent (e.g. the error an ICMP
    /// message left on the socket) is reported to `failed` and skipped; the transaction layer
    /// retransmits, as after a loss in the network.
    pub fn send_batch(&self, batch: &[Transmit], mut failed: impl FnMut(&Transmit, io::Error)) {
        let mut next = 0;
        while let Some(rest) = batch.get(next..).filter(|r| !r.is_empty()) {
            match self.send_some(rest) {
                Ok(n) => next += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(t) = rest.first() {
                        failed(t, e);
                    }
                    next += 1;
                }
            }
        }
    }

    /// Sends from the start of `rest`: how many went.
    #[cfg(target_os = "linux")]
    fn send_some(&self, rest: &[Transmit]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        super::mmsg::send(self.socket.as_raw_fd(), rest)
    }

    /// Sends from the start of `rest`, one `send_to` each: how many went.
    #[cfg(not(target_os = "linux"))]
    fn send_some(&self, rest: &[Transmit]) -> io::Result<usize> {
        let mut n = 0;
        for t in rest.iter().take(BATCH) {
            match self.socket.send_to(&t.payload, t.dest) {
                Ok(_) => n += 1,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }
}
