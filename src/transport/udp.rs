//! The UDP socket (I/O): binds, receives datagrams into `Bytes`, sends [`super::Transmit`]s.
//!
//! Datagrams move in batches: on Linux one `recvmmsg(2)` takes up to [`BATCH`] queued datagrams
//! and one `sendmmsg(2)` sends up to [`BATCH`] (see `mmsg`); elsewhere the same calls loop over
//! `recv_from`/`send_to`. The receive slots are one buffer reused by every call; each datagram is
//! then copied into a `Bytes` of exactly its size. That copy is the one allocation per datagram
//! left, on purpose: a transaction keeps its request for as long as it lives (a ringing INVITE,
//! seconds), and a `Bytes` cut from a shared block would keep the whole block alive with it. (A
//! 64 KiB arena split per datagram was tried: no change in instructions per call that callgrind
//! could tell from run-to-run noise, and up to a block pinned per held request.)

use super::Transmit;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Largest datagram we accept (RFC 3261 §18.1.1: UDP messages can be up to 65,535 bytes).
pub const MAX_DATAGRAM: usize = 65_535;

/// Datagrams received or sent by one system call at most.
#[cfg(target_os = "linux")]
pub const BATCH: usize = super::mmsg::BATCH;
/// Datagrams received or sent by one system call at most.
#[cfg(not(target_os = "linux"))]
pub const BATCH: usize = 32;

/// Kernel buffer asked for in each direction: bursts at thousands of calls per second outrun the
/// default (208 KiB on Linux) before the loop is anywhere near busy; sipp and Kamailio ask for the
/// same 4 MiB. The kernel caps it at `net.core.rmem_max` / `wmem_max`.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A bound UDP socket for SIP.
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    local: SocketAddr,
    /// [`BATCH`] slots of [`MAX_DATAGRAM`] bytes, reused by every receive (zeroed pages the
    /// kernel has not written to cost no memory).
    buf: Vec<u8>,
    /// Slot, length and source of each datagram of the last receive (reused).
    meta: Vec<(usize, usize, SocketAddr)>,
    /// Slots the next receive offers (see `mmsg::recv_want`).
    want: usize,
    /// Destinations an ICMP error said are unreachable, not yet taken
    /// ([`UdpTransport::take_unreachable`]); only with [`UdpTransport::report_unreachable`].
    unreachable: Vec<SocketAddr>,
}

/// At most this many unreachable destinations are kept between two takes.
const MAX_UNREACHABLE: usize = 64;

impl UdpTransport {
    /// Binds `addr` (port 0 picks an ephemeral port) with [`SOCKET_BUFFER`]-sized kernel buffers.
    pub async fn bind(addr: SocketAddr) -> io::Result<UdpTransport> {
        Self::bind_with(addr, false).await
    }

    /// [`UdpTransport::bind`] with `SO_REUSEPORT`: each worker of `serve --workers N` binds the
    /// same address (the first with the port asked, the others with the port it got) and the
    /// kernel spreads arriving datagrams over their sockets by source address.
    pub async fn bind_shared(addr: SocketAddr) -> io::Result<UdpTransport> {
        Self::bind_with(addr, true).await
    }

    async fn bind_with(addr: SocketAddr, reuse_port: bool) -> io::Result<UdpTransport> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if reuse_port {
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReusePort, &true).map_err(io::Error::from)?;
        }
        // Best effort: a smaller buffer still works, it only drops earlier under a burst.
        if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER).and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER)) {
            tracing::debug!(error = %e, "socket buffer size not raised");
        }
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        Self::from_std(socket.into())
    }

    /// Takes over a bound, non-blocking std socket (e.g. from [`UdpTransport::into_std`]: a tokio
    /// socket belongs to the runtime that registered it, and a worker thread runs its own).
    /// Call within a tokio runtime.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpTransport> {
        let socket = UdpSocket::from_std(socket)?;
        let local = socket.local_addr()?;
        Ok(UdpTransport {
            socket,
            local,
            buf: vec![0; BATCH * MAX_DATAGRAM],
            meta: Vec::with_capacity(BATCH),
            want: BATCH,
            unreachable: Vec::new(),
        })
    }

    /// The std socket, deregistered from this runtime (see [`UdpTransport::from_std`]).
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        self.socket.into_std()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Asks the kernel to report ICMP errors (port or host unreachable) for what this socket
    /// sends. An unconnected UDP socket on Linux drops them otherwise; with `IP_RECVERR` /
    /// `IPV6_RECVERR` (ip(7), ipv6(7)) the next receive fails with ECONNREFUSED and the error
    /// queue names the destination, which [`UdpTransport::take_unreachable`] then returns.
    /// Elsewhere this is a no-op (Ok): requests to a dead port time out as before.
    pub fn report_unreachable(&mut self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::socket::{setsockopt, sockopt};
            let set = if self.local.is_ipv4() {
                setsockopt(&self.socket, sockopt::Ipv4RecvErr, &true)
            } else {
                setsockopt(&self.socket, sockopt::Ipv6RecvErr, &true)
            };
            set.map_err(io::Error::from)?;
        }
        Ok(())
    }

    /// The destinations reported unreachable since the last call (see
    /// [`UdpTransport::report_unreachable`]).
    pub fn take_unreachable(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.unreachable)
    }

    /// After a receive error that an ICMP error causes: reads the socket's error queue, noting the
    /// original destination of each message that bounced (the queue holds kernel memory until
    /// read, so it is always drained).
    fn drain_errors(&mut self, e: &io::Error) {
        if !matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable) {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            let sock = socket2::SockRef::from(&self.socket);
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            // Bounded: the queue is finite, but a flood of ICMP must not hold the loop here.
            for _ in 0..256 {
                match sock.recv_from_with_flags(&mut buf, nix::libc::MSG_ERRQUEUE) {
                    Ok((_, addr)) => {
                        if let Some(dest) = addr.as_socket() {
                            tracing::debug!(%dest, error = %e, "ICMP error for a datagram we sent");
                            if self.unreachable.len() < MAX_UNREACHABLE && !self.unreachable.contains(&dest) {
                                self.unreachable.push(dest);
                            }
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// Receives one datagram into a `Bytes` of exactly its size: one copy out of the reused
    /// receive buffer, so a message kept by a transaction holds only its own bytes.
    pub async fn recv(&mut self) -> io::Result<(Bytes, SocketAddr)> {
        match self.socket.recv_from(&mut self.buf[..MAX_DATAGRAM]).await {
            Ok((n, src)) => Ok((Bytes::copy_from_slice(&self.buf[..n]), src)),
            Err(e) => {
                self.drain_errors(&e);
                Err(e)
            }
        }
    }

    /// Like [`UdpTransport::recv`] but without waiting: `None` when no datagram is queued.
    pub fn try_recv(&mut self) -> io::Result<Option<(Bytes, SocketAddr)>> {
        match self.socket.try_recv_from(&mut self.buf[..MAX_DATAGRAM]) {
            Ok((n, src)) => Ok(Some((Bytes::copy_from_slice(&self.buf[..n]), src))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => {
                self.drain_errors(&e);
                Err(e)
            }
        }
    }

    /// Waits for at least one datagram, then appends every queued one (up to [`BATCH`]) to
    /// `out`, taken with one system call on Linux. Returns how many were appended.
    pub async fn recv_batch(&mut self, out: &mut Vec<(Bytes, SocketAddr)>) -> io::Result<usize> {
        loop {
            self.socket.readable().await?;
            let n = self.try_recv_batch(out)?;
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Like [`UdpTransport::recv_batch`] but without waiting: 0 when nothing is queued.
    pub fn try_recv_batch(&mut self, out: &mut Vec<(Bytes, SocketAddr)>) -> io::Result<usize> {
        self.meta.clear();
        match self.recv_slots() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => {
                self.drain_errors(&e);
                return Err(e);
            }
        }
        for &(slot, n, src) in &self.meta {
            let start = slot * MAX_DATAGRAM;
            let Some(bytes) = self.buf.get(start..start + n.min(MAX_DATAGRAM)) else { continue };
            out.push((Bytes::copy_from_slice(bytes), src));
        }
        Ok(self.meta.len())
    }

    /// One `recvmmsg` into the slots; their lengths and sources go to `meta`.
    ///
    /// A call that fills fewer slots than it offered has emptied the queue (on a non-blocking
    /// socket the kernel stops at the first `EAGAIN`, recvmmsg(2)), so it also clears the
    /// socket's readiness, as an `EAGAIN` would: the next receive waits for the next readiness
    /// event instead of asking the kernel once more only to hear `EAGAIN` (at a low rate, one
    /// wasted system call per wake-up). Nothing is missed: tokio clears the readiness only if no
    /// event arrived since it was read before the call, and a datagram queued after the kernel
    /// looked raises a new edge-triggered event. A full batch keeps the readiness, so a burst is
    /// read on at once.
    #[cfg(target_os = "linux")]
    fn recv_slots(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.socket.as_raw_fd();
        let v6 = self.local.is_ipv6();
        let (buf, meta, want) = (&mut self.buf, &mut self.meta, self.want.clamp(1, BATCH));
        let mut got = 0;
        let r = self.socket.try_io(tokio::io::Interest::READABLE, || {
            got = super::mmsg::recv(fd, v6, &mut buf[..], MAX_DATAGRAM, meta, false, want)?;
            if got < want {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => {}
            r => r?,
        }
        self.want = super::mmsg::recv_want(got);
        Ok(())
    }

    /// `recv_from` into each slot until none is queued.
    #[cfg(not(target_os = "linux"))]
    fn recv_slots(&mut self) -> io::Result<()> {
        for (i, slot) in self.buf.chunks_mut(MAX_DATAGRAM).enumerate() {
            match self.socket.try_recv_from(slot) {
                Ok((n, src)) => self.meta.push((i, n, src)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.meta.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends one datagram. Errors are returned for the caller to report (ICMP unreachable shows up
    /// here on Linux as ECONNREFUSED on a later call).
    pub async fn send(&self, t: &Transmit) -> io::Result<()> {
        self.socket.send_to(&t.payload, t.dest).await.map(drop)
    }

    /// Sends every datagram of `batch`, up to [`BATCH`] per system call on Linux, waiting while the
    /// socket's buffer is full. A datagram that cannot be sent is reported to `failed` and skipped.
    /// A send can fail with the error an ICMP message left on the socket (Linux reports a pending
    /// socket error to whichever call comes first): the error queue is then read as after a
    /// receive, so [`UdpTransport::take_unreachable`] names the destination.
    pub async fn send_batch(&mut self, batch: &[Transmit], mut failed: impl FnMut(&Transmit, io::Error)) {
        let mut next = 0;
        while let Some(rest) = batch.get(next..).filter(|r| !r.is_empty()) {
            match self.send_some(rest) {
                Ok(n) => next += n.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.socket.writable().await {
                        rest.iter().for_each(|t| failed(t, io::Error::new(e.kind(), e.to_string())));
                        return;
                    }
                }
                Err(e) => {
                    self.drain_errors(&e);
                    if let Some(t) = rest.first() {
                        failed(t, e);
                    }
                    next += 1;
                }
            }
        }
    }

    /// Sends from the start of `rest` (non-blocking): how many went.
    #[cfg(target_os = "linux")]
    fn send_some(&self, rest: &[Transmit]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = self.socket.as_raw_fd();
        self.socket.try_io(tokio::io::Interest::WRITABLE, || super::mmsg::send(fd, rest))
    }

    /// Sends from the start of `rest` (non-blocking), one `send_to` each: how many went.
    #[cfg(not(target_os = "linux"))]
    fn send_some(&self, rest: &[Transmit]) -> io::Result<usize> {
        let mut n = 0;
        for t in rest.iter().take(BATCH) {
            match self.socket.try_send_to(&t.payload, t.dest) {
                Ok(_) => n += 1,
                Err(e) if n == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(n)
    }
}
