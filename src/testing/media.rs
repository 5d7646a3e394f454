//! [`MemoryMedia`]: the driver's media sockets in memory.

use crate::application::{FlowId, Media, MediaOutput};
use crate::collections::HashMap;
use crate::dialog::IdGen;
use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

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

/// Media sockets in memory: the driver's part for the application's [`Media`] (which it holds,
/// so `Io { media: &mut memory_media, .. }` works; its ports come from a seeded allocator).
/// [`MemoryMedia::apply`] carries out the queued [`MediaOutput`]s as the driver does after each
/// input: binds (refused on the ports in [`MemoryMedia::taken`], as if another process held
/// them), closes, and sends, which are recorded in [`MemoryMedia::sent`] and queued for
/// [`MemoryMedia::poll_transmit`], which is how [`super::Net`] carries them to the node bound at
/// the destination.
#[derive(Debug)]
pub struct MemoryMedia {
    media: Media,
    /// The flows bound and not yet closed, with their local addresses.
    pub open: HashMap<FlowId, SocketAddr>,
    /// The same flows by local address, to deliver a datagram that arrives there.
    by_addr: HashMap<SocketAddr, FlowId>,
    /// Every datagram sent: from which flow, to where.
    pub sent: Vec<(FlowId, SocketAddr)>,
    /// Ports "another process" holds: a bind there fails.
    pub taken: HashSet<u16>,
    outbox: VecDeque<MediaTransmit>,
}

impl Default for MemoryMedia {
    /// Ports drawn from a fixed seed.
    fn default() -> MemoryMedia {
        MemoryMedia::new(1)
    }
}

impl MemoryMedia {
    /// Ports drawn from `seed`.
    pub fn new(seed: u64) -> MemoryMedia {
        MemoryMedia {
            media: Media::new(IdGen::new(seed)),
            open: HashMap::default(),
            by_addr: HashMap::default(),
            sent: Vec::new(),
            taken: HashSet::new(),
            outbox: VecDeque::new(),
        }
    }

    /// The flow bound at `local`, if any: where a datagram to that address is delivered.
    pub fn flow_at(&self, local: SocketAddr) -> Option<FlowId> {
        self.by_addr.get(&local).copied()
    }

    /// Carries out what the application queued, as the driver does after each input. Returns the
    /// application's flows whose bind failed (already forgotten by [`Media`]; spares are replaced
    /// there); the caller hands each to the application's `handle_bind_failed`.
    #[must_use]
    pub fn apply(&mut self) -> Vec<FlowId> {
        let mut failed = Vec::new();
        while let Some(out) = self.media.poll_output() {
            match out {
                MediaOutput::Bind { flow, local } if self.taken.contains(&local.port()) || self.by_addr.contains_key(&local) => {
                    if self.media.handle_bind_failed(flow) {
                        failed.push(flow);
                    }
                }
                MediaOutput::Bind { flow, local } => {
                    self.open.insert(flow, local);
                    self.by_addr.insert(local, flow);
                }
                MediaOutput::Send { flow, dest, payload } => {
                    self.sent.push((flow, dest));
                    if let Some(&source) = self.open.get(&flow) {
                        self.outbox.push_back(MediaTransmit { source, dest, payload });
                    }
                }
                MediaOutput::Unbind { flow } => {
                    if let Some(addr) = self.open.remove(&flow) {
                        self.by_addr.remove(&addr);
                    }
                }
            }
        }
        failed
    }

    /// The next datagram a flow sent, oldest first. Without a network to drain them they pile up
    /// here; [`super::Net`] drains after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<MediaTransmit> {
        self.outbox.pop_front()
    }
}

impl Deref for MemoryMedia {
    type Target = Media;
    fn deref(&self) -> &Media {
        &self.media
    }
}

impl DerefMut for MemoryMedia {
    fn deref_mut(&mut self) -> &mut Media {
        &mut self.media
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn binds_take_effect_when_applied_and_a_taken_port_fails() {
        let mut m = MemoryMedia::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let (a, rtcp, at) = m.bind_pair(ip, 1000..=1005, true).expect("first pair");
        assert_eq!(m.flow_at(at), None, "not bound before the driver's turn");
        assert!(m.apply().is_empty());
        assert_eq!(m.flow_at(at), Some(a));
        m.send(a, "127.0.0.1:9".parse().expect("address"), Bytes::from_static(b"x"));
        m.close(a);
        assert!(m.apply().is_empty());
        assert_eq!((m.flow_at(at), m.poll_transmit().map(|t| t.source)), (None, Some(at)));
        assert_eq!(m.open.values().copied().collect::<Vec<_>>(), vec![SocketAddr::new(ip, at.port() + 1)]);
        // Another process holds the next pick: the bind fails and the flow is forgotten.
        m.close(rtcp.expect("rtcp"));
        m.taken.extend([1000, 1001, 1002, 1003, 1004, 1005]);
        let (b, _, _) = m.bind_pair(ip, 1000..=1005, true).expect("a pick");
        assert!(m.apply().contains(&b));
        assert_eq!(m.local(b), None);
    }
}
