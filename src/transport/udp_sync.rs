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
    /// Whether the socket is in non-blocking mode ([`SyncUdp::recv_ready`] puts it there,
    /// [`SyncUdp::recv_batch`] takes it back; a loop that uses one of them switches once).
    nonblocking: bool,
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
        Ok(SyncUdp {
            socket,
            local,
            buf: vec![0; BATCH * MAX_DATAGRAM],
            meta: Vec::with_capacity(BATCH),
            timeout: None,
            nonblocking: false,
        })
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
        self.set_nonblocking(false)?;
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
        Ok(self.take_slots(out))
    }

    /// Appends every datagram already queued (up to [`BATCH`]) to `out` without waiting: one
    /// system call on Linux, which returns at once when none is queued. For a loop that sleeps
    /// on its own schedule (a paced load worker) and then takes what arrived meanwhile. Returns how
    /// many were appended; [`BATCH`] means more may be queued.
    pub fn recv_ready(&mut self, out: &mut Vec<(Bytes, SocketAddr)>) -> io::Result<usize> {
        self.set_nonblocking(true)?;
        self.meta.clear();
        match self.recv_slots() {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => return Ok(0),
            Err(e) => return Err(e),
        }
        Ok(self.take_slots(out))
    }

    /// Copies the datagrams the last receive put in the slots to `out`; returns how many.
    fn take_slots(&self, out: &mut Vec<(Bytes, SocketAddr)>) -> usize {
        for &(slot, n, src) in &self.meta {
            let start = slot * MAX_DATAGRAM;
            let Some(bytes) = self.buf.get(start..start + n.min(MAX_DATAGRAM)) else { continue };
            out.push((Bytes::copy_from_slice(bytes), src));
        }
        self.meta.len()
    }

    fn set_nonblocking(&mut self, on: bool) -> io::Result<()> {
        if self.nonblocking != on {
            self.socket.set_nonblocking(on)?;
            self.nonblocking = on;
        }
        Ok(())
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
        let (socket, meta, nonblocking) = (&self.socket, &mut self.meta, self.nonblocking);
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
        socket.set_nonblocking(nonblocking)
    }

    /// Sends every datagram of `batch`, up to [`BATCH`] per system call on Linux (blocking while
    /// the socket's buffer is full; after [`SyncUdp::recv_ready`] the socket does not block, and a
    /// datagram that does not fit is reported to `failed`). A datagram that cannot be sent (e.g. the error an ICMP
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// `recv_ready` returns at once with nothing queued, takes every queued datagram in order with
    /// its source, and `recv_batch` afterwards waits again (the socket is back in blocking mode).
    #[test]
    fn recv_ready_takes_what_is_queued_without_waiting() {
        let mut sock = SyncUdp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = Vec::new();
        assert_eq!(sock.recv_ready(&mut out).unwrap(), 0);
        for payload in [&b"one"[..], b"two", b"three"] {
            peer.send_to(payload, sock.local_addr()).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while out.len() < 3 && Instant::now() < deadline {
            sock.recv_ready(&mut out).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let got: Vec<&[u8]> = out.iter().map(|(b, _)| &b[..]).collect();
        assert_eq!(got, [&b"one"[..], b"two", b"three"]);
        assert!(out.iter().all(|(_, src)| *src == peer.local_addr().unwrap()));
        out.clear();
        assert_eq!(sock.recv_batch(&mut out, Duration::from_millis(20)).unwrap(), 0);
        peer.send_to(b"four", sock.local_addr()).unwrap();
        assert_eq!(sock.recv_batch(&mut out, Duration::from_secs(5)).unwrap(), 1);
        assert_eq!(&out[0].0[..], b"four");
    }
}
