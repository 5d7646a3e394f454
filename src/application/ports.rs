//! The media port allocator: which local UDP ports the application's media flows use.
//!
//! RTP takes an even port and RTCP the odd port above it (RFC 3550 §11). The allocator picks
//! the even port at random within the configured range, so a stranger who sees one call's relay
//! port cannot guess the next call's (an in-order choice makes RTP injection easy). It knows
//! which ports it handed out and not yet freed, so a pick never costs a system call, and it
//! remembers the ports another process turned out to hold ([`PortAllocator::mark_foreign`]) so
//! it does not pick them again.

use crate::collections::HashSet;
use crate::dialog::IdGen;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// Random tries at a port pair before the search walks the range from a random start.
const RANDOM_TRIES: u32 = 16;

/// No free port (pair) left in the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoFreePort {
    /// The range searched.
    pub ports: RangeInclusive<u16>,
}

impl std::fmt::Display for NoFreePort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no free media port pair in {}-{}", self.ports.start(), self.ports.end())
    }
}

impl std::error::Error for NoFreePort {}

/// The even ports of a search: `first + 2 * slot` for `slot < slots`.
#[derive(Debug, Clone, Copy)]
struct EvenPorts {
    first: u16,
    slots: u32,
}

impl EvenPorts {
    /// The even ports of `ports` that leave room for an RTCP neighbour when `with_rtcp`.
    fn of(ports: &RangeInclusive<u16>, with_rtcp: bool) -> Option<EvenPorts> {
        let (start, end) = (*ports.start(), *ports.end());
        let first = start.checked_add(start % 2)?;
        let last = if with_rtcp { end.checked_sub(1)? } else { end };
        (first <= last).then(|| EvenPorts { first, slots: u32::from((last - first) / 2) + 1 })
    }

    fn port(self, slot: u32) -> u16 {
        // slot < slots, so this stays within `first..=last`.
        self.first + ((slot % self.slots) * 2) as u16
    }

    /// The order a search tries ports in: [`RANDOM_TRIES`] random slots (cheap even when the range
    /// is mostly taken: each try succeeds with the free share's odds), then every slot once from
    /// a random start, so a free pair is always found. Each port costs a hash lookup.
    fn search(self, rng: &mut IdGen) -> impl Iterator<Item = u16> {
        let slots = u64::from(self.slots);
        // below(slots) < slots <= u32::MAX + 1 / 2, so the casts keep every value.
        let start = rng.below(slots) as u32;
        let random: Vec<u32> = (0..RANDOM_TRIES.min(self.slots)).map(|_| rng.below(slots) as u32).collect();
        random.into_iter().chain((0..self.slots).map(move |i| start.wrapping_add(i) % self.slots)).map(move |slot| self.port(slot))
    }
}

/// Hands out media ports at random within a range and tracks which are held.
///
/// Sans-IO: it binds nothing. The driver binds what it picked (see [`super::MediaOutput`]).
#[derive(Debug)]
pub struct PortAllocator {
    rng: IdGen,
    /// Ports handed out and not yet freed.
    held: HashSet<SocketAddr>,
    /// Ports another process held when the driver tried to bind them.
    foreign: HashSet<SocketAddr>,
}

impl PortAllocator {
    /// An allocator drawing from `rng`: [`IdGen::from_os`] in production, a seeded
    /// [`IdGen::new`] in tests (equal seeds, equal picks).
    pub fn new(rng: IdGen) -> PortAllocator {
        PortAllocator { rng, held: HashSet::default(), foreign: HashSet::default() }
    }

    /// Picks a free even port of `ports` on `ip` (and, when `with_rtcp`, the odd one above it
    /// too) and holds it (them). Returns the even port's address.
    ///
    /// When every pair is held or foreign, the foreign marks are forgotten and the search runs
    /// once more: another process may have let its ports go since.
    pub fn allocate(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) -> Result<SocketAddr, NoFreePort> {
        self.allocate_with(ip, ports, with_rtcp, true, None)
    }

    /// [`PortAllocator::allocate`] restricted to the even ports of one lane: `(lanes, lane)` takes
    /// only ports with `(port / 2) % lanes == lane` (the relay's reader thread of that port, see
    /// [`crate::relay::lane_of`]), so both legs of a call are read by one thread.
    pub fn allocate_in_lane(
        &mut self,
        ip: IpAddr,
        ports: RangeInclusive<u16>,
        with_rtcp: bool,
        lane: (usize, usize),
    ) -> Result<SocketAddr, NoFreePort> {
        self.allocate_with(ip, ports, with_rtcp, true, Some(lane))
    }

    /// [`PortAllocator::allocate`] that keeps the foreign marks when every pair is held or
    /// foreign: for replacing a pair whose bind just failed, so that a range whose every port is
    /// taken ends the search instead of starting it again and again within one driver turn.
    pub fn allocate_unmarked(&mut self, ip: IpAddr, ports: RangeInclusive<u16>, with_rtcp: bool) -> Result<SocketAddr, NoFreePort> {
        self.allocate_with(ip, ports, with_rtcp, false, None)
    }

    fn allocate_with(
        &mut self,
        ip: IpAddr,
        ports: RangeInclusive<u16>,
        with_rtcp: bool,
        forget_foreign: bool,
        lane: Option<(usize, usize)>,
    ) -> Result<SocketAddr, NoFreePort> {
        let Some(even) = EvenPorts::of(&ports, with_rtcp) else { return Err(NoFreePort { ports }) };
        for _ in 0..2 {
            let taken = |p: u16| {
                let a = SocketAddr::new(ip, p);
                self.held.contains(&a) || self.foreign.contains(&a)
            };
            let in_lane = |p: u16| lane.is_none_or(|(lanes, lane)| crate::relay::lane_of(p, lanes) == lane);
            let found = even.search(&mut self.rng).find(|&p| in_lane(p) && !(taken(p) || with_rtcp && taken(p + 1)));
            if let Some(port) = found {
                let addr = SocketAddr::new(ip, port);
                self.held.insert(addr);
                if with_rtcp {
                    self.held.insert(SocketAddr::new(ip, port + 1));
                }
                return Ok(addr);
            }
            if !forget_foreign || self.foreign.is_empty() {
                break;
            }
            self.foreign.clear();
        }
        Err(NoFreePort { ports })
    }

    /// Holds exactly `addr` (a port saved before a restart); `false` if it is already held.
    pub fn hold(&mut self, addr: SocketAddr) -> bool {
        self.foreign.remove(&addr);
        self.held.insert(addr)
    }

    /// Frees a port: it may be picked again.
    pub fn free(&mut self, addr: SocketAddr) {
        self.held.remove(&addr);
    }

    /// The driver could not bind `addr` (another process holds it): frees it and skips it in
    /// later picks.
    pub fn mark_foreign(&mut self, addr: SocketAddr) {
        self.held.remove(&addr);
        self.foreign.insert(addr);
    }

    /// Ports held.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_search_covers_every_even_port_in_range_and_starts_at_random() {
        let mut rng = IdGen::new(7);
        let even = EvenPorts::of(&(30001..=30011), true).unwrap();
        // 30002..=30010: the last even port leaves room for its RTCP neighbour.
        let order: Vec<u16> = even.search(&mut rng).collect();
        assert!(order.iter().all(|p| p % 2 == 0 && (30002..=30010).contains(p)));
        let walk = &order[RANDOM_TRIES.min(5) as usize..];
        assert_eq!(walk.iter().copied().collect::<std::collections::BTreeSet<_>>().len(), 5, "{order:?}");
        assert_eq!(EvenPorts::of(&(30000..=30000), true).map(|e| e.slots), None);
        assert_eq!(EvenPorts::of(&(30000..=30000), false).map(|e| e.slots), Some(1));
        assert_eq!(EvenPorts::of(&(65534..=65535), true).map(|e| e.search(&mut rng).collect::<Vec<_>>()), Some(vec![65534, 65534]));
        // A large range: the first pick is not always the same (chance of a false failure: 5000^-19).
        let wide = EvenPorts::of(&(30000..=39999), true).unwrap();
        let firsts: std::collections::HashSet<u16> = (0..20).filter_map(|_| wide.search(&mut rng).next()).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }

    #[test]
    fn picks_are_seeded_held_until_freed_and_skip_foreign_ports() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let picks = |seed| {
            let mut a = PortAllocator::new(IdGen::new(seed));
            (0..3).map(|_| a.allocate(ip, 30000..=39999, true).unwrap().port()).collect::<Vec<_>>()
        };
        assert_eq!(picks(1), picks(1), "equal seeds, equal picks");
        // Three pairs in the range: all taken after three picks, one free after a free.
        let mut a = PortAllocator::new(IdGen::new(2));
        let got: Vec<SocketAddr> = (0..3).map(|_| a.allocate(ip, 30000..=30005, true).unwrap()).collect();
        assert_eq!(got.iter().map(|a| a.port()).collect::<std::collections::BTreeSet<_>>(), [30000, 30002, 30004].into());
        assert_eq!(a.held(), 6);
        assert!(a.allocate(ip, 30000..=30005, true).is_err());
        a.free(got[1]);
        a.free(SocketAddr::new(ip, got[1].port() + 1));
        assert_eq!(a.allocate(ip, 30000..=30005, true), Ok(got[1]));
        // A foreign port is skipped while another pair is free ...
        let mut a = PortAllocator::new(IdGen::new(3));
        a.mark_foreign(SocketAddr::new(ip, 30000));
        assert_eq!(a.allocate(ip, 30000..=30003, true).map(|a| a.port()), Ok(30002));
        // ... and tried again once nothing else is left.
        assert_eq!(a.allocate(ip, 30000..=30003, true).map(|a| a.port()), Ok(30000));
        assert!(!a.hold(SocketAddr::new(ip, 30000)), "already held");
    }

    #[test]
    fn a_lane_restricts_the_pick_to_its_ports() {
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut a = PortAllocator::new(IdGen::new(4));
        for lane in [0, 1, 2, 0, 1, 2] {
            let p = a.allocate_in_lane(ip, 30000..=30999, true, (3, lane)).unwrap().port();
            assert_eq!((usize::from(p / 2) % 3, p % 2), (lane, 0), "{p}");
        }
        // 30000..=30007 has pairs 30000, 30002, 30004, 30006: lanes 0, 1, 0, 1 of two.
        let mut a = PortAllocator::new(IdGen::new(5));
        let ones: std::collections::BTreeSet<u16> =
            (0..2).map(|_| a.allocate_in_lane(ip, 30000..=30007, true, (2, 1)).unwrap().port()).collect();
        assert_eq!(ones, [30002, 30006].into());
        assert!(a.allocate_in_lane(ip, 30000..=30007, true, (2, 1)).is_err(), "lane 1 is full");
        assert!(a.allocate_in_lane(ip, 30000..=30007, true, (2, 0)).is_ok(), "lane 0 is not");
    }
}
