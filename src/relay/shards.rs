//! The relay split by port into lanes (issue 16 point 3), sans-IO: each lane is a [`Relay`] of
//! its own behind a lock, so that the thread that reads a lane's ports (the driver's media
//! reader for that lane) forwards their datagrams itself, while the signalling side (the
//! B2BUA on the driver's thread) installs, changes and removes calls and reads their figures.
//!
//! - A port's lane is [`lane_of`]`(port, lanes)`: `(port / 2) % lanes`, so an RTP port and its
//!   RTCP neighbour share one. The B2BUA binds a call's callee pair in the lane of its caller
//!   pair (`application::Media::bind_pair_in_lane`), so all four ports of a call are in one lane
//!   and a datagram is forwarded by the thread that read it.
//! - A call whose two pairs are in different lanes (ports saved before a restart with another
//!   number of lanes) goes to one more shard that no reader owns: its datagrams reach the
//!   driver like any other media and come back through [`ShardedRelay::handle_datagram`].
//! - [`ShardedRelay`] keeps the same interface as [`Relay`] (per call id), so the B2BUA's
//!   rules are unchanged: latching, hold, statistics and inactivity are the lane's [`Relay`]'s.
//! - Each shard keeps the latest time it was given and never goes back from it: its reader and
//!   the driver read the clock each on their own (the relay wants times that never go back).
//! - Locks are taken one at a time (never two shards, never a shard inside a reader's socket
//!   table from the driver side), each for one operation or one reader batch.

use super::{LegPorts, LegStats, Relay, RelayConfig, RelayId, RemoteMedia};
use crate::application::FlowId;
use crate::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::Leg;

/// The lane of `port` among `lanes` (at least one): `(port / 2) % lanes`.
pub fn lane_of(port: u16, lanes: usize) -> usize {
    usize::from(port / 2) % lanes.max(1)
}

/// One lane's relay and its clock.
#[derive(Debug)]
pub struct Shard {
    relay: Relay,
    last: Option<Instant>,
}

impl Shard {
    /// `now`, or the latest time this shard was given if that is later.
    fn clock(&mut self, now: Instant) -> Instant {
        let t = self.last.map_or(now, |l| l.max(now));
        self.last = Some(t);
        t
    }

    /// Whether `flow` is one of this lane's relayed ports.
    pub fn owns(&self, flow: FlowId) -> bool {
        self.relay.owns(flow)
    }

    /// [`Relay::handle_datagram`] in this lane.
    #[must_use]
    pub fn handle_datagram(&mut self, flow: FlowId, source: SocketAddr, payload: &[u8], now: Instant) -> Option<(FlowId, SocketAddr)> {
        let now = self.clock(now);
        self.relay.handle_datagram(flow, source, payload, now)
    }
}

/// The shards of a [`ShardedRelay`], shared with the threads that read the lanes' ports: lanes
/// `0..lanes()`, then the shard of the calls split over two lanes (read by no lane).
#[derive(Debug, Clone)]
pub struct RelayShards {
    shards: Arc<[Mutex<Shard>]>,
}

impl RelayShards {
    /// The number of lanes (reader threads).
    pub fn lanes(&self) -> usize {
        self.shards.len() - 1
    }

    /// Locks shard `i` (a lane, or [`RelayShards::lanes`] for the split calls).
    pub fn lock(&self, i: usize) -> Option<MutexGuard<'_, Shard>> {
        // A thread that panicked holding the lock left a relay that is still consistent enough to
        // forward (each operation is a few field updates); keep going.
        self.shards.get(i).map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A [`Relay`] in lanes (see the module doc); the same interface, per call id.
#[derive(Debug)]
pub struct ShardedRelay {
    shards: RelayShards,
    /// The shard of each call and of each of its flows.
    by_id: HashMap<RelayId, usize>,
    by_flow: HashMap<FlowId, usize>,
}

impl ShardedRelay {
    /// An empty relay in `lanes` lanes (at least one).
    pub fn new(config: RelayConfig, lanes: usize) -> ShardedRelay {
        let shards: Vec<Mutex<Shard>> = (0..=lanes.max(1)).map(|_| Mutex::new(Shard { relay: Relay::new(config), last: None })).collect();
        ShardedRelay { shards: RelayShards { shards: shards.into() }, by_id: HashMap::default(), by_flow: HashMap::default() }
    }

    /// The shards, for the threads that read the lanes.
    pub fn shards(&self) -> RelayShards {
        self.shards.clone()
    }

    /// The number of lanes.
    pub fn lanes(&self) -> usize {
        self.shards.lanes()
    }

    fn with<R>(&self, id: RelayId, f: impl FnOnce(&mut Shard) -> R) -> Option<R> {
        let &i = self.by_id.get(&id)?;
        let mut shard = self.shards.lock(i)?;
        Some(f(&mut shard))
    }

    /// [`Relay::insert`], in the lane of both legs' ports (or the split shard if they differ).
    pub fn insert(&mut self, id: RelayId, caller: LegPorts, callee: LegPorts, now: Instant) {
        self.remove(id);
        let lanes = self.lanes();
        let lane = lane_of(caller.local.port(), lanes);
        let i = if lane_of(callee.local.port(), lanes) == lane { lane } else { lanes };
        if let Some(mut shard) = self.shards.lock(i) {
            let now = shard.clock(now);
            shard.relay.insert(id, caller, callee, now);
        }
        self.by_id.insert(id, i);
        for ports in [caller, callee] {
            for flow in std::iter::once(ports.rtp).chain(ports.rtcp) {
                self.by_flow.insert(flow, i);
            }
        }
    }

    /// [`Relay::set_remote`].
    pub fn set_remote(&mut self, id: RelayId, leg: Leg, remote: RemoteMedia, now: Instant) {
        self.with(id, |s| {
            let now = s.clock(now);
            s.relay.set_remote(id, leg, remote, now);
        });
    }

    /// [`Relay::set_peer_ip`].
    pub fn set_peer_ip(&mut self, id: RelayId, leg: Leg, ip: Option<IpAddr>) {
        self.with(id, |s| s.relay.set_peer_ip(id, leg, ip));
    }

    /// [`Relay::handle_datagram`] for a datagram that reached the driver: a split call's, or one
    /// a lane's reader read before the call was inserted.
    #[must_use]
    pub fn handle_datagram(&mut self, flow: FlowId, source: SocketAddr, payload: &[u8], now: Instant) -> Option<(FlowId, SocketAddr)> {
        let &i = self.by_flow.get(&flow)?;
        self.shards.lock(i)?.handle_datagram(flow, source, payload, now)
    }

    /// Whether `flow` is a relayed port.
    pub fn owns(&self, flow: FlowId) -> bool {
        self.by_flow.contains_key(&flow)
    }

    /// The earliest [`Relay::poll_timeout`] of the shards.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (0..=self.lanes()).filter_map(|i| self.shards.lock(i)?.relay.poll_timeout()).min()
    }

    /// [`Relay::handle_timeout`] of every shard.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(RelayId, Leg)> {
        let mut silent = Vec::new();
        for i in 0..=self.lanes() {
            if let Some(mut s) = self.shards.lock(i) {
                let now = s.clock(now);
                silent.extend(s.relay.handle_timeout(now));
            }
        }
        silent
    }

    /// [`Relay::stats`].
    pub fn stats(&self, id: RelayId) -> Option<(LegStats, LegStats)> {
        self.with(id, |s| s.relay.stats(id)).flatten()
    }

    /// [`Relay::latched`].
    pub fn latched(&self, id: RelayId, leg: Leg) -> Option<SocketAddr> {
        self.with(id, |s| s.relay.latched(id, leg)).flatten()
    }

    /// [`Relay::ports`].
    pub fn ports(&self, id: RelayId) -> Option<(LegPorts, LegPorts)> {
        self.with(id, |s| s.relay.ports(id)).flatten()
    }

    /// [`Relay::remove`]: the final figures; the caller closes the flows.
    pub fn remove(&mut self, id: RelayId) -> Option<(LegStats, LegStats)> {
        let i = self.by_id.remove(&id)?;
        let mut shard = self.shards.lock(i)?;
        let ports = shard.relay.ports(id);
        let stats = shard.relay.remove(id);
        for p in ports.iter().flat_map(|(a, b)| [a, b]) {
            for flow in std::iter::once(p.rtp).chain(p.rtcp) {
                if self.by_flow.get(&flow) == Some(&i) && !shard.relay.owns(flow) {
                    self.by_flow.remove(&flow);
                }
            }
        }
        stats
    }

    /// Calls relayed.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// No call relayed.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The ids of the calls relayed, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = RelayId> + '_ {
        self.by_id.keys().copied()
    }

    /// [`Relay::table_sizes`] summed over the shards, plus this index's own entries (calls,
    /// flows).
    pub fn table_sizes(&self) -> (usize, usize, usize) {
        let mut sum = (self.by_id.len(), self.by_flow.len(), 0);
        for i in 0..=self.lanes() {
            if let Some(s) = self.shards.lock(i) {
                let (c, f, t) = s.relay.table_sizes();
                sum = (sum.0 + c, sum.1 + f, sum.2 + t);
            }
        }
        sum
    }

    /// Calls per shard (lanes, then the split shard): how the calls spread.
    pub fn spread(&self) -> Vec<usize> {
        (0..=self.lanes()).map(|i| self.shards.lock(i).map_or(0, |s| s.relay.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ports(flow: u32, port: u16) -> LegPorts {
        LegPorts { rtp: FlowId(flow), rtcp: Some(FlowId(flow + 1)), local: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0, 0, 0, 7];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    #[test]
    fn a_call_lives_in_its_lane_and_a_split_call_in_the_last_shard() {
        let t0 = Instant::now();
        let mut r = ShardedRelay::new(RelayConfig::default(), 2);
        // 30000, 30004, 30008: lane 0; 30002, 30006, 30010: lane 1.
        r.insert(RelayId(1), ports(1, 30000), ports(3, 30004), t0);
        r.insert(RelayId(2), ports(5, 30002), ports(7, 30006), t0);
        r.insert(RelayId(3), ports(9, 30008), ports(11, 30010), t0);
        assert_eq!(r.spread(), vec![1, 1, 1], "call 3 is split: 30008 lane 0, 30010 lane 1");
        assert_eq!(r.shards().lanes(), 2);
        assert!(r.shards().lock(0).is_some_and(|s| s.owns(FlowId(1)) && !s.owns(FlowId(5))));
        // Media both ways through the lane's shard, as a reader thread sees it.
        let (a, b): (SocketAddr, SocketAddr) = ("192.0.2.1:4000".parse().unwrap(), "192.0.2.2:4000".parse().unwrap());
        r.set_remote(RelayId(1), Leg::Caller, RemoteMedia::sendrecv(a), t0);
        r.set_remote(RelayId(1), Leg::Callee, RemoteMedia::sendrecv(b), t0);
        let shards = r.shards();
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!(shards.lock(0).and_then(|mut s| s.handle_datagram(FlowId(1), a, &rtp(1), t1)), Some((FlowId(3), b)));
        assert_eq!(shards.lock(0).and_then(|mut s| s.handle_datagram(FlowId(3), b, &rtp(1), t1)), Some((FlowId(1), a)));
        // An older time from the driver does not go back.
        r.set_remote(RelayId(1), Leg::Caller, RemoteMedia::sendrecv(a), t0);
        let (x, y) = r.stats(RelayId(1)).unwrap();
        assert_eq!((x.forwarded, y.forwarded), (1, 1));
        assert_eq!(r.latched(RelayId(1), Leg::Callee), Some(b));
        // The split call through the driver's path.
        r.set_remote(RelayId(3), Leg::Caller, RemoteMedia::sendrecv(a), t0);
        r.set_remote(RelayId(3), Leg::Callee, RemoteMedia::sendrecv(b), t0);
        assert!(r.owns(FlowId(9)));
        assert_eq!(r.handle_datagram(FlowId(9), a, &rtp(1), t1), Some((FlowId(11), b)));
        // Inactivity is reported from every shard; removal empties every table.
        let later = t0 + Duration::from_secs(31);
        let mut silent = r.handle_timeout(later);
        silent.sort_by_key(|(id, leg)| (*id, *leg as u8));
        assert_eq!(silent.len(), 6, "{silent:?}");
        for id in [1, 2, 3] {
            assert!(r.remove(RelayId(id)).is_some());
        }
        assert!(r.is_empty() && !r.owns(FlowId(1)));
        let _ = r.handle_timeout(later + Duration::from_secs(60));
        assert_eq!(r.table_sizes(), (0, 0, 0));
        assert_eq!(lane_of(30001, 2), lane_of(30000, 2));
        assert_eq!(lane_of(7, 0), 0);
    }
}
