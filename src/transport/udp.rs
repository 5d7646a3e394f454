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
}

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
        Ok(UdpTransport { socket, local, buf: vec![0; MAX_DATAGRAM] })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Receives one datagram into a `Bytes` of exactly its size: one copy out of the reused 64 KiB
    /// receive buffer, so a message kept by a transaction holds only its own bytes.
    pub async fn recv(&mut self) -> io::Result<(Bytes, SocketAddr)> {
        let (n, src) = self.socket.recv_from(&mut self.buf).await?;
        Ok((Bytes::copy_from_slice(&self.buf[..n]), src))
    }

    /// Like [`UdpTransport::recv`] but without waiting: `None` when no datagram is queued.
    pub fn try_recv(&mut self) -> io::Result<Option<(Bytes, SocketAddr)>> {
        match self.socket.try_recv_from(&mut self.buf) {
            Ok((n, src)) => Ok(Some((Bytes::copy_from_slice(&self.buf[..n]), src))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one datagram. Errors are returned for the caller to report (ICMP unreachable shows up
    /// here on Linux as ECONNREFUSED on a later call).
    pub async fn send(&self, t: &Transmit) -> io::Result<()> {
        self.socket.send_to(&t.payload, t.dest).await.map(drop)
    }
}
