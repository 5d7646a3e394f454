//! The media flows of an application: ports picked by the [`PortAllocator`], binds, sends and
//! closes queued for the driver.

use super::ports::{NoFreePort, PortAllocator};
use super::FlowId;
use crate::collections::HashMap;
use crate::dialog::IdGen;
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// What the driver does for the application's media, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOutput {
    /// Bind a UDP socket on exactly `local` for `flow`. On failure, report it with
    /// [`Media::handle_bind_failed`] and `Application::handle_bind_failed`.
    Bind {
        /// The new flow.
        flow: FlowId,
        /// The address the allocator picked.
        local: SocketAddr,
    },
    /// Send one datagram from `flow` (dropped and counted if the socket is busy or unknown).
    Send {
        /// The flow to send from.
        flow: FlowId,
        /// Where to.
        dest: SocketAddr,
        /// The datagram.
        payload: Bytes,
    },
    /// Close `flow`'s socket.
    Unbind {
        /// The flow to close.
        flow: FlowId,
    },
}

/// Media flows as the application sees them: bind (the port is known at once), send, close. All
/// three are queued as [`MediaOutput`]s for the driver; see the module doc of
/// [`crate::application`].
#[derive(Debug)]
pub struct Media {
    ports: PortAllocator,
    /// Refuse every bind (load workers: calls without media).
    disabled: bool,
    next_flow: u32,
    /// Open flows and their local addresses.
    flows: HashMap<FlowId, SocketAddr>,
    out: VecDeque<MediaOutput>,
}

// ===== impl Media =====

impl Media {
    /// Flows whose ports are drawn from `rng` ([`IdGen::from_os`] in production, a seeded
    /// [`IdGen::new`] in tests).
    pub fn new(rng: IdGen) -> Media {
        Media { ports: PortAllocator::new(rng), disabled: false, next_flow: 0, flows: HashMap::default(), out: VecDeque::new() }
    }

    /// No media at all: every bind fails with [`NoFreePort`] (calls go without media).
    pub fn disabled() -> Media {
        Media { disabled: true, ..Media::new(IdGen::new(0)) }
    }

    fn open(&mut self, local: SocketAddr) -> FlowId {
        self.next_flow = self.next_flow.wrapping_add(1);
        let flow = FlowId(self.next_flow);
        self.flows.insert(flow, local);
        self.out.push_back(MediaOutput::Bind { flow, local });
        flow
    }

    /// Picks a free even port of `ports` on `ip` at random (RTP convention, RFC 3550 §11; a
    /// stranger cannot guess the next call's port from this one's) and, when `with_rtcp`, the odd
    /// port above it too; queues their binds. Returns the RTP flow (and the RTCP flow) with the
    /// RTP address.
    pub fn bind_pair(
        &mut self,
        ip: IpAddr,
        ports: RangeInclusive<u16>,
        with_rtcp: bool,
    ) -> Result<(FlowId, Option<FlowId>, SocketAddr), NoFreePort> {
        if self.disabled {
            return Err(NoFreePort { ports });
        }
        let local = self.ports.allocate(ip, ports, with_rtcp)?;
        let rtp = self.open(local);
        let rtcp = with_rtcp.then(|| self.open(SocketAddr::new(ip, local.port() + 1)));
        Ok((rtp, rtcp, local))
    }

    /// Binds exactly `local` (and the port above it when `with_rtcp`): ports saved before a
    /// restart. `None` if one of them is ours already or the port above does not exist.
    pub fn bind_exact(&mut self, local: SocketAddr, with_rtcp: bool) -> Option<(FlowId, Option<FlowId>, SocketAddr)> {
        if self.disabled {
            return None;
        }
        let rtcp_addr = if with_rtcp { Some(SocketAddr::new(local.ip(), local.port().checked_add(1)?)) } else { None };
        if !self.ports.hold(local) {
            return None;
        }
        if let Some(a) = rtcp_addr {
            if !self.ports.hold(a) {
                self.ports.free(local);
                return None;
            }
        }
        let rtp = self.open(local);
        Some((rtp, rtcp_addr.map(|a| self.open(a)), local))
    }

    /// Queues one datagram from `flow` to `dest`.
    pub fn send(&mut self, flow: FlowId, dest: SocketAddr, payload: Bytes) {
        self.out.push_back(MediaOutput::Send { flow, dest, payload });
    }

    /// Closes a flow; its port is free again. Unknown flows (closed, or whose bind failed) are
    /// ignored.
    pub fn close(&mut self, flow: FlowId) {
        if let Some(local) = self.flows.remove(&flow) {
            self.ports.free(local);
            self.out.push_back(MediaOutput::Unbind { flow });
        }
    }

    /// The driver could not bind `flow`: forget it, and skip its port in later picks.
    pub fn handle_bind_failed(&mut self, flow: FlowId) {
        if let Some(local) = self.flows.remove(&flow) {
            self.ports.mark_foreign(local);
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<MediaOutput> {
        self.out.pop_front()
    }

    /// The local address of an open flow.
    pub fn local(&self, flow: FlowId) -> Option<SocketAddr> {
        self.flows.get(&flow).copied()
    }

    /// Open flows with their local addresses.
    pub fn flows(&self) -> impl Iterator<Item = (FlowId, SocketAddr)> + '_ {
        self.flows.iter().map(|(f, a)| (*f, *a))
    }

    /// How many flows are open.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True with no open flow.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_sends_and_closes_are_queued_in_order_and_the_port_is_known_at_once() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut m = Media::new(IdGen::new(5));
        let (rtp, rtcp, local) = m.bind_pair(ip, 30000..=30999, true).unwrap();
        let rtcp = rtcp.unwrap();
        assert_eq!(local.port() % 2, 0);
        assert_eq!(m.local(rtcp), Some(SocketAddr::new(ip, local.port() + 1)));
        let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
        m.send(rtp, dest, Bytes::from_static(b"x"));
        m.close(rtp);
        m.close(rtp);
        let out: Vec<MediaOutput> = std::iter::from_fn(|| m.poll_output()).collect();
        assert_eq!(
            out,
            vec![
                MediaOutput::Bind { flow: rtp, local },
                MediaOutput::Bind { flow: rtcp, local: SocketAddr::new(ip, local.port() + 1) },
                MediaOutput::Send { flow: rtp, dest, payload: Bytes::from_static(b"x") },
                MediaOutput::Unbind { flow: rtp },
            ]
        );
        // A failed bind forgets the flow: closing it later queues nothing.
        m.handle_bind_failed(rtcp);
        m.close(rtcp);
        assert_eq!(m.poll_output(), None);
        assert!(m.is_empty());
        assert!(Media::disabled().bind_pair(ip, 30000..=30999, true).is_err());
    }
}
