//! [`MemoryMedia`]: the driver's media sockets in memory.

use crate::collections::HashMap;
use crate::driver::{FlowId, MediaIo};
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// One media datagram a flow sent, waiting for the network ([`MemoryMedia::poll_transmit`]).
#[derive(Debug, Clone)]
pub struct MediaTransmit {
    /// The sending flow's local address.
    pub source: SocketAddr,
    /// Where it goes.
    pub dest: SocketAddr,
    /// The datagram.
    pub payload: Bytes,
}

/// Media sockets in memory. Each bind takes a free even port of the range asked for, going round
/// the range from just past the last port handed out, as the driver does (RTP on the even port,
/// RTCP on the odd one above it, RFC 3550 §11); a bind fails with `AddrInUse` when the range is
/// full. Sends are recorded in [`MemoryMedia::sent`] and queued for [`MemoryMedia::poll_transmit`],
/// which is how [`super::Net`] carries them to the node bound at the destination.
#[derive(Debug, Default)]
pub struct MemoryMedia {
    next_flow: u32,
    cursor: u16,
    /// The flows bound and not yet closed, with their local addresses.
    pub open: HashMap<FlowId, SocketAddr>,
    /// The same flows by local address, to deliver a datagram that arrives there.
    by_addr: HashMap<SocketAddr, FlowId>,
    /// Every datagram sent: from which flow, to where.
    pub sent: Vec<(FlowId, SocketAddr)>,
    outbox: VecDeque<MediaTransmit>,
}

impl MemoryMedia {
    /// The flow bound at `local`, if any: where a datagram to that address is delivered.
    pub fn flow_at(&self, local: SocketAddr) -> Option<FlowId> {
        self.by_addr.get(&local).copied()
    }

    /// The next datagram a flow sent, oldest first. Without a network to drain them they pile up
    /// here; [`super::Net`] drains after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<MediaTransmit> {
        self.outbox.pop_front()
    }

    fn bind(&mut self, addr: SocketAddr) -> FlowId {
        self.next_flow += 1;
        let flow = FlowId(self.next_flow);
        self.open.insert(flow, addr);
        self.by_addr.insert(addr, flow);
        flow
    }

    fn is_free(&self, addr: SocketAddr) -> bool {
        !self.by_addr.contains_key(&addr)
    }
}

impl MediaIo for MemoryMedia {
    fn bind_pair(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) -> io::Result<(FlowId, Option<FlowId>, SocketAddr)> {
        let (start, end) = (*ports.start(), *ports.end());
        let first = start.saturating_add(start % 2);
        let last = if with_rtcp { end.saturating_sub(1) } else { end };
        if first <= last {
            let slots = u32::from((last - first) / 2) + 1;
            let resume = if (first..=last).contains(&self.cursor) { u32::from((self.cursor - first) / 2) } else { 0 };
            for i in 0..slots {
                // In range: `first + 2 * (slots - 1)` is at most `last`.
                let port = first + (((resume + i) % slots) * 2) as u16;
                let (rtp_addr, rtcp_addr) = (SocketAddr::new(ip, port), SocketAddr::new(ip, port.wrapping_add(1)));
                if !self.is_free(rtp_addr) || with_rtcp && !self.is_free(rtcp_addr) {
                    continue;
                }
                let rtp = self.bind(rtp_addr);
                let rtcp = with_rtcp.then(|| self.bind(rtcp_addr));
                self.cursor = port.saturating_add(2);
                return Ok((rtp, rtcp, rtp_addr));
            }
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, format!("no free media port pair in {start}-{end}")))
    }

    fn send(&mut self, flow: FlowId, dest: SocketAddr, payload: &[u8]) {
        self.sent.push((flow, dest));
        if let Some(&source) = self.open.get(&flow) {
            self.outbox.push_back(MediaTransmit { source, dest, payload: Bytes::copy_from_slice(payload) });
        }
    }

    fn close(&mut self, flow: FlowId) {
        if let Some(addr) = self.open.remove(&flow) {
            self.by_addr.remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_go_round_the_range_and_skip_open_ports() {
        let mut m = MemoryMedia::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let (a, _, at) = m.bind_pair(ip, 1000..=1005, true).expect("first pair");
        assert_eq!(at.port(), 1000);
        let (_, _, at) = m.bind_pair(ip, 1000..=1005, true).expect("second pair");
        assert_eq!(at.port(), 1002);
        m.close(a);
        let (_, _, at) = m.bind_pair(ip, 1000..=1005, true).expect("third pair");
        assert_eq!(at.port(), 1004, "round the range, not back to the lowest at once");
        assert!(m.bind_pair(ip, 1000..=1005, true).is_err(), "1000's RTCP port is still open");
        assert_eq!(m.flow_at(SocketAddr::new(ip, 1000)), None);
    }
}
