//! The UDP socket (I/O): binds, receives datagrams into `Bytes`, sends [`super::Transmit`]s.

use super::Transmit;
use bytes::Bytes;
use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Largest datagram we accept (RFC 3261 §18.1.1: UDP messages can be up to 65,535 bytes).
pub const MAX_DATAGRAM: usize = 65_535;

/// Kernel buffer asked for in each direction: bursts at thousands of calls per second outrun the
/// default (208 KiB on Linux) before the loop is anywhere near busy; sipp and Kamailio ask for the
/// same 4 MiB. The kernel caps it at `net.core.rmem_max` / `wmem_max`.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A bound UDP socket for SIP.
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    local: SocketAddr,
    buf: Vec<u8>,
    /// Destinations an ICMP error said are unreachable, not yet taken
    /// ([`UdpTransport::take_unreachable`]); only with [`UdpTransport::report_unreachable`].
    unreachable: Vec<SocketAddr>,
}

/// At most this many unreachable destinations are kept between two takes.
const MAX_UNREACHABLE: usize = 64;

impl UdpTransport {
    /// Binds `addr` (port 0 picks an ephemeral port) with [`SOCKET_BUFFER`]-sized kernel buffers.
    pub async fn bind(addr: SocketAddr) -> io::Result<UdpTransport> {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        // Best effort: a smaller buffer still works, it only drops earlier under a burst.
        if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER).and_then(|()| socket.set_send_buffer_size(SOCKET_BUFFER)) {
            tracing::debug!(error = %e, "socket buffer size not raised");
        }
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        let local = socket.local_addr()?;
        Ok(UdpTransport { socket, local, buf: vec![0; MAX_DATAGRAM], unreachable: Vec::new() })
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

    /// Receives one datagram into a `Bytes` of exactly its size: one copy out of the reused 64 KiB
    /// receive buffer, so a message kept by a transaction holds only its own bytes.
    pub async fn recv(&mut self) -> io::Result<(Bytes, SocketAddr)> {
        match self.socket.recv_from(&mut self.buf).await {
            Ok((n, src)) => Ok((Bytes::copy_from_slice(&self.buf[..n]), src)),
            Err(e) => {
                self.drain_errors(&e);
                Err(e)
            }
        }
    }

    /// Like [`UdpTransport::recv`] but without waiting: `None` when no datagram is queued.
    pub fn try_recv(&mut self) -> io::Result<Option<(Bytes, SocketAddr)>> {
        match self.socket.try_recv_from(&mut self.buf) {
            Ok((n, src)) => Ok(Some((Bytes::copy_from_slice(&self.buf[..n]), src))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => {
                self.drain_errors(&e);
                Err(e)
            }
        }
    }

    /// Sends one datagram. Errors are returned for the caller to report (ICMP unreachable shows up
    /// here on Linux as ECONNREFUSED on a later call).
    pub async fn send(&self, t: &Transmit) -> io::Result<()> {
        self.socket.send_to(&t.payload, t.dest).await.map(drop)
    }
}
