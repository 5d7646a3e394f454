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

/// A port pair as [`Media::bind_pair`] returns it: the RTP flow, the RTCP flow, the RTP address.
type Pair = (FlowId, Option<FlowId>, SocketAddr);

/// Which spare pool a bind draws from: the IP, the range and whether RTCP comes along.
type PoolKey = (IpAddr, u16, u16, bool);

/// Spare pairs of one [`PoolKey`]: bound ahead of need, so a call gets a pair the driver has
/// already bound (a port another process holds costs a spare, not a call).
#[derive(Debug, Default)]
struct Pool {
    /// Bound (the driver bound every flow and reported no failure).
    ready: VecDeque<Pair>,
    /// Queued for the driver: per pair (by RTP flow), the pair and its binds not yet carried out.
    pending: HashMap<FlowId, (Pair, u8)>,
}

/// Media flows as the application sees them: bind (the port is known at once), send, close. All
/// three are queued as [`MediaOutput`]s for the driver; see the module doc of
/// [`crate::application`].
///
/// With [`Media::with_spares`], each range an application binds from keeps that many spare pairs
/// bound ahead of need, and [`Media::bind_pair`] hands out a spare the driver has already bound
/// (then queues a replacement). A spare whose bind fails is replaced without the application
/// hearing of it. The driver's part of that contract: it reports a failed bind
/// ([`Media::handle_bind_failed`]) before it polls the next output, so a bind it polled without
/// a report since has succeeded.
#[derive(Debug)]
pub struct Media {
    ports: PortAllocator,
    /// Refuse every bind (load workers: calls without media).
    disabled: bool,
    next_flow: u32,
    /// Open flows (the application's and the spares) and their local addresses.
    flows: HashMap<FlowId, SocketAddr>,
    out: VecDeque<MediaOutput>,
    /// Spare pairs kept per pool.
    spares: usize,
    pools: HashMap<PoolKey, Pool>,
    /// Spare flows: their pool and their pair's RTP flow.
    spare_of: HashMap<FlowId, (PoolKey, FlowId)>,
    /// Spare binds polled by the driver and not yet known to have succeeded.
    polled: Vec<FlowId>,
}

// ===== impl Media =====

impl Media {
    /// Flows whose ports are drawn from `rng` ([`IdGen::from_os`] in production, a seeded
    /// [`IdGen::new`] in tests), without spares.
    pub fn new(rng: IdGen) -> Media {
        Media {
            ports: PortAllocator::new(rng),
            disabled: false,
            next_flow: 0,
            flows: HashMap::default(),
            out: VecDeque::new(),
            spares: 0,
            pools: HashMap::default(),
            spare_of: HashMap::default(),
            polled: Vec::new(),
        }
    }

    /// Keeps `n` spare pairs bound per range (see the type's doc). The tokio driver keeps a few,
    /// so a port another process holds does not end a call.
    pub fn with_spares(mut self, n: usize) -> Media {
        self.spares = n;
        self
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

    /// Picks a pair and queues its binds.
    fn pick(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) -> Result<Pair, NoFreePort> {
        self.pick_with(ip, ports, with_rtcp, true)
    }

    /// [`Media::pick`]; `forget_foreign: false` after a failed bind (see
    /// [`PortAllocator::allocate_unmarked`]).
    fn pick_with(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool, forget_foreign: bool) -> Result<Pair, NoFreePort> {
        let local =
            if forget_foreign { self.ports.allocate(ip, ports, with_rtcp)? } else { self.ports.allocate_unmarked(ip, ports, with_rtcp)? };
        let rtp = self.open(local);
        let rtcp = with_rtcp.then(|| self.open(SocketAddr::new(ip, local.port() + 1)));
        Ok((rtp, rtcp, local))
    }

    /// Queues spares for `key` until it has [`Media::with_spares`] of them (or the range is full).
    fn top_up(&mut self, key: PoolKey) {
        self.top_up_with(key, true);
    }

    /// [`Media::top_up`]; `forget_foreign: false` replaces a spare whose bind failed without
    /// forgetting which ports were found taken, so the replacements end when the range does.
    fn top_up_with(&mut self, key: PoolKey, forget_foreign: bool) {
        let (ip, start, end, with_rtcp) = key;
        loop {
            let pool = self.pools.entry(key).or_default();
            if pool.ready.len() + pool.pending.len() >= self.spares {
                return;
            }
            let Ok(pair) = self.pick_with(ip, start..=end, with_rtcp, forget_foreign) else { return };
            let binds = 1 + u8::from(pair.1.is_some());
            self.pools.entry(key).or_default().pending.insert(pair.0, (pair, binds));
            for f in std::iter::once(pair.0).chain(pair.1) {
                self.spare_of.insert(f, (key, pair.0));
            }
        }
    }

    /// Spare binds the driver polled without reporting a failure since: done.
    fn confirm_polled(&mut self) {
        // Indexed rather than taken, so the list keeps its buffer: the driver polls after every
        // input, and most polls find nothing to confirm.
        for i in 0..self.polled.len() {
            let flow = self.polled[i];
            let Some(&(key, rtp)) = self.spare_of.get(&flow) else { continue };
            let Some(pool) = self.pools.get_mut(&key) else { continue };
            if let Some((pair, left)) = pool.pending.get_mut(&rtp) {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    let pair = *pair;
                    pool.pending.remove(&rtp);
                    pool.ready.push_back(pair);
                }
            }
        }
        self.polled.clear();
    }

    /// Picks a free even port of `ports` on `ip` at random (RTP convention, RFC 3550 §11; a
    /// stranger cannot guess the next call's port from this one's) and, when `with_rtcp`, the odd
    /// port above it too. Returns the RTP flow (and the RTCP flow) with the RTP address. With
    /// spares, the pair is one the driver has bound already; otherwise its binds are queued.
    pub fn bind_pair(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) -> Result<Pair, NoFreePort> {
        if self.disabled {
            return Err(NoFreePort { ports });
        }
        if self.spares == 0 {
            return self.pick(ip, ports, with_rtcp);
        }
        let key = (ip, *ports.start(), *ports.end(), with_rtcp);
        let spare = self.pools.get_mut(&key).and_then(|p| p.ready.pop_front());
        let pair = match spare {
            Some(pair) => {
                for f in std::iter::once(pair.0).chain(pair.1) {
                    self.spare_of.remove(&f);
                }
                pair
            }
            // None bound yet (the first bind from this range, or a burst): pick one now.
            None => self.pick(ip, ports, with_rtcp)?,
        };
        self.top_up(key);
        Ok(pair)
    }

    /// [`Media::bind_pair`] restricted to one lane, `(lanes, lane)`: a pair whose even port has
    /// `(port / 2) % lanes == lane` ([`crate::relay::lane_of`]). The B2BUA binds a call's callee leg
    /// in its caller leg's lane, so one relay thread reads and forwards both. A spare of that lane
    /// is taken if one is ready; otherwise one is picked in the lane.
    pub fn bind_pair_in_lane(
        &mut self,
        ip: IpAddr,
        ports: RangeInclusive<u16>,
        with_rtcp: bool,
        lane: (usize, usize),
    ) -> Result<Pair, NoFreePort> {
        if self.disabled {
            return Err(NoFreePort { ports });
        }
        let key = (ip, *ports.start(), *ports.end(), with_rtcp);
        let in_lane = |p: &Pair| crate::relay::lane_of(p.2.port(), lane.0) == lane.1;
        let spare = self.pools.get_mut(&key).and_then(|p| {
            let at = p.ready.iter().position(in_lane)?;
            p.ready.remove(at)
        });
        let pair = match spare {
            Some(pair) => {
                for f in std::iter::once(pair.0).chain(pair.1) {
                    self.spare_of.remove(&f);
                }
                pair
            }
            None => {
                let local = self.ports.allocate_in_lane(ip, ports, with_rtcp, lane)?;
                let rtp = self.open(local);
                let rtcp = with_rtcp.then(|| self.open(SocketAddr::new(ip, local.port() + 1)));
                (rtp, rtcp, local)
            }
        };
        if self.spares > 0 {
            self.top_up(key);
        }
        Ok(pair)
    }

    /// A lane (of `lanes`, see [`Media::bind_pair_in_lane`]) with at least `want` spare pairs of
    /// this range ready, if one has: the B2BUA takes both legs of a call from one lane, and
    /// from spares (already bound) when it can.
    pub fn lane_with_spares(&self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool, lanes: usize, want: usize) -> Option<usize> {
        let pool = self.pools.get(&(ip, *ports.start(), *ports.end(), with_rtcp))?;
        let mut count: HashMap<usize, usize> = HashMap::default();
        for p in &pool.ready {
            let n = count.entry(crate::relay::lane_of(p.2.port(), lanes)).or_default();
            *n += 1;
            if *n >= want {
                return Some(crate::relay::lane_of(p.2.port(), lanes));
            }
        }
        None
    }

    /// Has spares of this range bound ahead of the first [`Media::bind_pair`] (an application
    /// calls it when it starts); nothing without spares.
    pub fn reserve(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) {
        if !self.disabled && self.spares > 0 {
            self.top_up((ip, *ports.start(), *ports.end(), with_rtcp));
        }
    }

    /// True if [`Media::bind_pair`] on this range would hand out a pair already bound, or if there
    /// is nothing to wait for (no spares kept). An application that may wait a turn (a softphone
    /// dialling at start) asks, and binds on its next input if not.
    pub fn ready_to_bind(&self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) -> bool {
        let key = (ip, *ports.start(), *ports.end(), with_rtcp);
        self.disabled || self.spares == 0 || self.pools.get(&key).is_some_and(|p| !p.ready.is_empty())
    }

    /// Binds exactly `local` (and the port above it when `with_rtcp`): ports saved before a
    /// restart. `None` if one of them is ours already or the port above does not exist.
    pub fn bind_exact(&mut self, local: SocketAddr, with_rtcp: bool) -> Option<Pair> {
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

    /// The driver could not bind `flow` (another process holds its port): forget the flow and
    /// skip the port in later picks. Returns true if the flow is the application's (tell it with
    /// `Application::handle_bind_failed`); a spare is replaced here, and its pair closed.
    pub fn handle_bind_failed(&mut self, flow: FlowId) -> bool {
        if let Some(local) = self.flows.remove(&flow) {
            self.ports.mark_foreign(local);
        }
        let Some((key, rtp)) = self.spare_of.remove(&flow) else { return true };
        let pair = self.pools.get_mut(&key).and_then(|p| p.pending.remove(&rtp)).map(|(pair, _)| pair);
        for f in pair.into_iter().flat_map(|p| std::iter::once(p.0).chain(p.1)) {
            self.spare_of.remove(&f);
            self.close(f);
        }
        // Replaced at once (a softphone waits for its spares before it dials), but without
        // forgetting the ports found taken: with a range whose every port is taken (by other
        // processes, or by our own sockets the driver closed and the runtime has not dropped yet)
        // forgetting them made this bind, fail and replace for ever inside one driver turn, which
        // then never dropped those sockets (100% CPU, SIGTERM ignored).
        self.top_up_with(key, false);
        false
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<MediaOutput> {
        if !self.polled.is_empty() {
            self.confirm_polled();
        }
        let out = self.out.pop_front()?;
        if let MediaOutput::Bind { flow, .. } = out {
            if self.spare_of.contains_key(&flow) {
                self.polled.push(flow);
            }
        }
        Some(out)
    }

    /// The local address of an open flow.
    pub fn local(&self, flow: FlowId) -> Option<SocketAddr> {
        self.flows.get(&flow).copied()
    }

    /// The application's open flows (not the spares) with their local addresses.
    pub fn flows(&self) -> impl Iterator<Item = (FlowId, SocketAddr)> + '_ {
        self.flows.iter().filter(|(f, _)| !self.spare_of.contains_key(f)).map(|(f, a)| (*f, *a))
    }

    /// How many of the application's flows are open.
    pub fn len(&self) -> usize {
        self.flows.len() - self.spare_of.len()
    }

    /// True with none of the application's flows open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spare pairs bound and ready.
    pub fn spares_ready(&self) -> usize {
        self.pools.values().map(|p| p.ready.len()).sum()
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
        assert!(m.handle_bind_failed(rtcp), "the application's flow");
        m.close(rtcp);
        assert_eq!(m.poll_output(), None);
        assert!(m.is_empty());
        assert!(Media::disabled().bind_pair(ip, 30000..=30999, true).is_err());
    }

    #[test]
    fn spares_are_bound_ahead_and_a_failed_spare_is_replaced_quietly() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut m = Media::new(IdGen::new(9)).with_spares(2);
        // The first bind from a range picks on the spot and queues two spares.
        let (first, _, _) = m.bind_pair(ip, 30000..=30999, true).unwrap();
        let binds: Vec<MediaOutput> = std::iter::from_fn(|| m.poll_output()).collect();
        assert_eq!(binds.len(), 6, "the call's pair and two spares: {binds:?}");
        assert_eq!((m.len(), m.spares_ready()), (2, 2));
        // The next bind gets a spare (nothing new to bind for it) and queues a replacement.
        let (second, _, local) = m.bind_pair(ip, 30000..=30999, true).unwrap();
        assert!(binds.contains(&MediaOutput::Bind { flow: second, local }), "a spare the driver bound already");
        assert_ne!(first, second);
        // The replacement's RTP bind fails: the pair goes, another is queued, and the application
        // is not told.
        let Some(MediaOutput::Bind { flow: taken, .. }) = m.poll_output() else { panic!("a bind") };
        assert!(!m.handle_bind_failed(taken));
        let rest: Vec<MediaOutput> = std::iter::from_fn(|| m.poll_output()).collect();
        assert_eq!(rest.iter().filter(|o| matches!(o, MediaOutput::Bind { .. })).count(), 3, "{rest:?}");
        assert_eq!((m.len(), m.spares_ready()), (4, 2));
        // Reserved at start: ready once the driver has carried out the binds.
        let mut m = Media::new(IdGen::new(9)).with_spares(1);
        m.reserve(ip, 40000..=40999, true);
        assert!(!m.ready_to_bind(ip, 40000..=40999, true));
        while m.poll_output().is_some() {}
        assert!(m.ready_to_bind(ip, 40000..=40999, true));
        assert!(Media::new(IdGen::new(9)).ready_to_bind(ip, 40000..=40999, true), "nothing to wait for without spares");
    }

    /// Drains the outputs; true if none of them binds `local` (it was bound already).
    fn binds_nothing_new(m: &mut Media, local: SocketAddr) -> bool {
        std::iter::from_fn(|| m.poll_output()).all(|o| !matches!(o, MediaOutput::Bind { local: l, .. } if l == local))
    }

    #[test]
    fn a_pair_in_a_lane_comes_from_the_spares_of_that_lane_or_is_picked_in_it() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut m = Media::new(IdGen::new(11)).with_spares(4);
        m.reserve(ip, 30000..=30999, true);
        while m.poll_output().is_some() {}
        for lane in [0, 1, 2, 3, 0, 1, 2, 3] {
            let (_, rtcp, local) = m.bind_pair_in_lane(ip, 30000..=30999, true, (4, lane)).unwrap();
            assert_eq!(crate::relay::lane_of(local.port(), 4), lane);
            assert_eq!(rtcp.and_then(|f| m.local(f)).map(|a| a.port()), Some(local.port() + 1));
            while m.poll_output().is_some() {}
        }
        assert_eq!((m.len(), m.spares_ready()), (16, 4));
        // Four spares in two lanes: one lane has two of them.
        let lane = m.lane_with_spares(ip, 30000..=30999, true, 2, 2).expect("a lane with two spares");
        for _ in 0..2 {
            let (_, _, local) = m.bind_pair_in_lane(ip, 30000..=30999, true, (2, lane)).unwrap();
            assert!(binds_nothing_new(&mut m, local), "a spare of that lane");
        }
        assert_eq!(m.lane_with_spares(ip, 30000..=30999, true, 2, 5), None);
        let mut off = Media::new(IdGen::new(1));
        assert!(off.bind_pair_in_lane(ip, 30000..=30001, true, (2, 1)).is_err(), "the only pair is in lane 0");
    }

    #[test]
    fn a_range_whose_every_port_is_taken_ends_within_one_turn() {
        // Every bind fails (another process, or our own sockets not dropped yet, holds each port
        // of a small range): the driver's turn must end, or it never drops those sockets.
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut m = Media::new(IdGen::new(3)).with_spares(4);
        let _ = m.bind_pair(ip, 30000..=30015, true);
        let mut steps = 0;
        while let Some(out) = m.poll_output() {
            steps += 1;
            assert!(steps < 1_000, "the driver's turn never ends");
            if let MediaOutput::Bind { flow, .. } = out {
                let _ = m.handle_bind_failed(flow);
            }
        }
        assert!(steps < 100, "{steps} outputs in one turn");
    }
}
