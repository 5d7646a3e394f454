//! Stand-ins for the driver's I/O, for tests and examples that run the sans-IO layers in memory.
//!
//! [`MemoryMedia`] is a [`MediaIo`] with no sockets: binds hand out flows and ports, sends are
//! recorded, so a test drives a `B2bua` or a relay on a virtual clock and
//! then asserts which ports are open and where datagrams went.

use crate::driver::{FlowId, MediaIo};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// Media sockets in memory: each bind takes the next even port at or above the range's start
/// (RTP on the even port, RTCP on the odd one above it, RFC 3550 §11); sends are recorded.
#[derive(Debug, Default)]
pub struct MemoryMedia {
    next_flow: u32,
    next_port: u16,
    /// The flows bound and not yet closed, with their local addresses.
    pub open: HashMap<FlowId, SocketAddr>,
    /// Every datagram sent: from which flow, to where.
    pub sent: Vec<(FlowId, SocketAddr)>,
}

impl MediaIo for MemoryMedia {
    fn bind_pair(
        &mut self,
        ip: IpAddr,
        ports: RangeInclusive<u16>,
        with_rtcp: bool,
    ) -> std::io::Result<(FlowId, Option<FlowId>, SocketAddr)> {
        let port = self.next_port.max(*ports.start());
        self.next_port = port.saturating_add(2);
        self.next_flow += 2;
        let rtp = FlowId(self.next_flow - 1);
        let rtcp = with_rtcp.then_some(FlowId(self.next_flow));
        self.open.insert(rtp, SocketAddr::new(ip, port));
        if let Some(r) = rtcp {
            self.open.insert(r, SocketAddr::new(ip, port + 1));
        }
        Ok((rtp, rtcp, SocketAddr::new(ip, port)))
    }

    fn send(&mut self, flow: FlowId, dest: SocketAddr, _payload: &[u8]) {
        self.sent.push((flow, dest));
    }

    fn close(&mut self, flow: FlowId) {
        self.open.remove(&flow);
    }
}
