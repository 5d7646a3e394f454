//! [`Net`]: nodes (an [`Endpoint`] and an [`Application`] each) on an in-memory network with a
//! virtual clock and seeded loss, latency, jitter, reordering and duplication.

use super::media::MemoryMedia;
use crate::application::{Application, Io};
use crate::collections::HashMap;
use crate::endpoint::Endpoint;
use bytes::Bytes;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use std::any::Any;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What the network does to every datagram (str0m's netem in miniature). The default is a perfect
/// wire: no delay, no loss, delivered in the order sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// One-way delay of every datagram.
    pub latency: Duration,
    /// Up to this much more delay, drawn uniformly per datagram (datagrams sent close together
    /// may swap).
    pub jitter: Duration,
    /// Share of datagrams lost, 0.0 to 1.0.
    pub loss: f64,
    /// Share of datagrams held back one more `latency` (at least 1 ms), so the ones sent after
    /// them overtake.
    pub reorder: f64,
    /// Share of datagrams delivered twice (the copy after its own delay).
    pub duplicate: f64,
}

impl Default for Link {
    fn default() -> Link {
        Link { latency: Duration::ZERO, jitter: Duration::ZERO, loss: 0.0, reorder: 0.0, duplicate: 0.0 }
    }
}

/// What the network did, for asserts and for the record of a lossy run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to the network (before loss).
    pub sent: u64,
    /// Dropped by [`Link::loss`] or by [`Net::cut_off`].
    pub lost: u64,
    /// Extra copies made by [`Link::duplicate`].
    pub duplicated: u64,
    /// Delivered to a node's SIP address or media flow.
    pub delivered: u64,
    /// Arrived where nothing is bound (a closed media port, an unknown address).
    pub unreachable: u64,
}

/// The handle of one node of a [`Net`], typed by its application so [`Net::app`] needs no cast.
pub struct NodeId<A> {
    index: usize,
    app: PhantomData<fn() -> A>,
}

impl<A> Clone for NodeId<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for NodeId<A> {}

impl<A> fmt::Debug for NodeId<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.index)
    }
}

/// An application the net can also hand back as its own type.
trait AnyApp: Application {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<A: Application + Any> AnyApp for A {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// One host on the network: what the driver owns for one process.
struct Node {
    name: String,
    sip: SocketAddr,
    endpoint: Endpoint,
    media: MemoryMedia,
    app: Box<dyn AnyApp>,
    span: tracing::Span,
    /// The earliest of the endpoint's and the application's `poll_timeout`, as of the end of the
    /// node's last input: they only change through inputs, so asking them before every step (a
    /// third of a lossy run's time in debug builds) is not needed.
    deadline: Option<Instant>,
    /// Set by [`Net::app_mut`], which may change the application behind the cached deadline.
    stale: bool,
}

impl Node {
    /// Carries out the application's media outputs; a bind that failed goes back to the
    /// application (which may queue more). True if a bind failed.
    fn apply_media(&mut self, wall_clock: std::time::Duration, now: Instant) -> bool {
        let mut any = false;
        loop {
            let failed = self.media.apply();
            if failed.is_empty() {
                return any;
            }
            any = true;
            for flow in failed {
                self.app.handle_bind_failed(&mut Io { endpoint: &mut self.endpoint, media: &mut self.media, wall_clock }, flow, now);
            }
        }
    }

    fn poll_deadline(&self) -> Option<Instant> {
        [self.endpoint.poll_timeout(), self.app.poll_timeout()].into_iter().flatten().min()
    }

    fn deadline(&self) -> Option<Instant> {
        if self.stale {
            self.poll_deadline()
        } else {
            self.deadline
        }
    }
}

/// A datagram in flight, ordered by arrival time and then by the order it was sent.
struct InFlight {
    at: Instant,
    seq: u64,
    src: SocketAddr,
    dest: SocketAddr,
    payload: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The wire: what is in flight and the seeded chance that decides each datagram's fate.
struct Wire {
    rng: ChaCha8Rng,
    link: Link,
    cut: HashSet<IpAddr>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    stats: NetStats,
}

impl Wire {
    fn send(&mut self, now: Instant, src: SocketAddr, dest: SocketAddr, payload: Bytes) {
        self.stats.sent += 1;
        let link = self.link;
        if self.cut.contains(&src.ip()) || self.cut.contains(&dest.ip()) || link.loss > 0.0 && self.rng.random_bool(link.loss.min(1.0)) {
            self.stats.lost += 1;
            return;
        }
        let copies = if link.duplicate > 0.0 && self.rng.random_bool(link.duplicate.min(1.0)) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = link.latency;
            if !link.jitter.is_zero() {
                delay += link.jitter.mul_f64(self.rng.random::<f64>());
            }
            if link.reorder > 0.0 && self.rng.random_bool(link.reorder.min(1.0)) {
                delay += link.latency.max(Duration::from_millis(1));
            }
            self.seq += 1;
            self.queue.push(Reverse(InFlight { at: now + delay, seq: self.seq, src, dest, payload: payload.clone() }));
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(d)| d.at)
    }
}

/// Nodes on an in-memory network, driven on a virtual clock: quinn-proto's `Pair` for any number of
/// SIP hosts, with str0m's netem on the wire. Each node is what the tokio driver
/// (`driver::run`) runs for one process: an [`Endpoint`] with its SIP address, an
/// [`Application`] on top, and media flows ([`MemoryMedia`]) bound to addresses of the same
/// network. The run-loop contract is the driver's:
///
/// 1. one input: a datagram to the endpoint ([`Endpoint::handle_datagram`]) or to the
///    application's media flow ([`Application::handle_media`]), or a timer
///    ([`Endpoint::handle_timeout`] then [`Application::handle_timeout`]), or a command
///    ([`Net::with`]);
/// 2. drain `poll_event` into the application and `poll_transmit` (SIP and media) onto the wire,
///    until neither gives anything;
/// 3. sleep until the earliest of the endpoint's and the application's `poll_timeout`.
///
/// Unlike the driver, which takes up to 64 queued datagrams before it drains, the net drains after
/// each datagram: the contract allows both, and one at a time keeps a run's order exact.
///
/// The clock never sleeps: [`Net::step`] jumps to the next datagram arrival or the next deadline,
/// whichever is first. Datagrams are delivered by destination address, to the node whose SIP
/// address it is or that has a media flow bound there; each suffers [`Link`]'s loss, delay and
/// reordering, drawn from a generator seeded at [`Net::new`], so a run is repeatable.
///
/// Nodes may share an IP address when their SIP ports and media port ranges do not overlap; a
/// distinct loopback address per node (127.0.0.2, 127.0.0.3, ...) is simplest.
pub struct Net {
    start: Instant,
    now: Instant,
    /// Wall-clock time (since the Unix epoch) at `start`; it runs with the virtual clock.
    wall: Duration,
    nodes: Vec<Node>,
    /// The nodes on each IP address.
    hosts: HashMap<IpAddr, Vec<usize>>,
    wire: Wire,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<(&str, SocketAddr)> = self.nodes.iter().map(|n| (n.name.as_str(), n.sip)).collect();
        f.debug_struct("Net")
            .field("elapsed", &self.elapsed())
            .field("nodes", &nodes)
            .field("in_flight", &self.wire.queue.len())
            .field("stats", &self.wire.stats)
            .finish()
    }
}

/// Steps [`Net::run_for`] and [`Net::run_until`] take at one instant before they call the run
/// stuck (a node that keeps asking to be woken now, or two that answer each other forever).
/// Legitimate bursts at one instant, on a link without latency, are a few hundred steps.
const MAX_STEPS_PER_INSTANT: u32 = 100_000;

// ===== impl Net =====

impl Net {
    /// An empty network whose virtual clock starts at `start` (the caller reads the clock: the
    /// harness never does), with a perfect [`Link`] and the generator keyed from `seed`.
    pub fn new(start: Instant, seed: u64) -> Net {
        Net {
            start,
            now: start,
            // 2027-01-15: a fixed wall time keeps call records and nonces repeatable.
            wall: Duration::from_secs(1_800_000_000),
            nodes: Vec::new(),
            hosts: HashMap::default(),
            wire: Wire {
                rng: ChaCha8Rng::seed_from_u64(seed),
                link: Link::default(),
                cut: HashSet::new(),
                queue: BinaryHeap::new(),
                seq: 0,
                stats: NetStats::default(),
            },
        }
    }

    /// Sets what the wire does to the datagrams sent from now on.
    pub fn set_link(&mut self, link: Link) {
        self.wire.link = link;
    }

    /// Loses every datagram from or to `ip` (`true`) until called again with `false`: a host that
    /// went silent, or a cable pulled.
    pub fn cut_off(&mut self, ip: IpAddr, cut: bool) {
        if cut {
            self.wire.cut.insert(ip);
        } else {
            self.wire.cut.remove(&ip);
        }
    }

    /// Adds a node listening on `sip`, and starts its application ([`Application::start`]) with
    /// I/O, as the driver does before its loop. What it sends leaves at the current instant.
    /// Panics if another node already listens on `sip` (a mistake in the test's set-up).
    pub fn add<A: Application + 'static>(&mut self, name: &str, sip: SocketAddr, endpoint: Endpoint, app: A) -> NodeId<A> {
        // Two nodes on one address would make delivery depend on the order they were added.
        assert!(self.nodes.iter().all(|n| n.sip != sip), "two nodes at {sip}");
        let index = self.nodes.len();
        let span = tracing::debug_span!("node", name);
        let media = MemoryMedia::default();
        self.nodes.push(Node { name: name.to_owned(), sip, endpoint, media, app: Box::new(app), span, deadline: None, stale: true });
        self.hosts.entry(sip.ip()).or_default().push(index);
        let now = self.now;
        self.input(index, |app, io| app.start(io, now));
        NodeId { index, app: PhantomData }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since [`Net::new`].
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The wall-clock time the applications see ([`Io::wall_clock`]): a fixed date at the start,
    /// running with the virtual clock.
    pub fn wall_clock(&self) -> Duration {
        self.wall + self.elapsed()
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.wire.stats
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.wire.queue.len()
    }

    /// The application of `node`.
    pub fn app<A: Application + 'static>(&self, node: NodeId<A>) -> &A {
        // A `NodeId<A>` is only made by `add::<A>`, for the node it indexes.
        self.nodes[node.index].app.as_any().downcast_ref().expect("a NodeId names a node of its own type")
    }

    /// The application of `node`, to change it between inputs without I/O (see [`Net::with`]).
    pub fn app_mut<A: Application + 'static>(&mut self, node: NodeId<A>) -> &mut A {
        self.nodes[node.index].stale = true;
        self.nodes[node.index].app.as_any_mut().downcast_mut().expect("a NodeId names a node of its own type")
    }

    /// The endpoint of `node` (transaction counts, stats).
    pub fn endpoint<A>(&self, node: NodeId<A>) -> &Endpoint {
        &self.nodes[node.index].endpoint
    }

    /// The media flows of `node`: which ports are open, what went where.
    pub fn media<A>(&self, node: NodeId<A>) -> &MemoryMedia {
        &self.nodes[node.index].media
    }

    /// The media flows of `node`, to change (e.g. which ports "another process" holds).
    pub fn media_mut<A>(&mut self, node: NodeId<A>) -> &mut MemoryMedia {
        &mut self.nodes[node.index].media
    }

    /// The SIP address of `node`.
    pub fn addr<A>(&self, node: NodeId<A>) -> SocketAddr {
        self.nodes[node.index].sip
    }

    /// Runs `command` on `node`'s application with I/O at the current instant, then drains what it
    /// produced: the driver's `driver::Command` (a prompt line, a control-socket request).
    pub fn with<A: Application + 'static, R>(&mut self, node: NodeId<A>, command: impl FnOnce(&mut A, &mut Io<'_>, Instant) -> R) -> R {
        let now = self.now;
        self.input(node.index, |app, io| {
            let app = app.as_any_mut().downcast_mut().expect("a NodeId names a node of its own type");
            command(app, io, now)
        })
    }

    /// Puts a datagram on the wire as if `src` had sent it (a stray, forged or replayed message);
    /// it suffers the link like any other.
    pub fn inject(&mut self, src: SocketAddr, dest: SocketAddr, payload: Bytes) {
        self.wire.send(self.now, src, dest, payload);
    }

    /// The next instant something happens: a datagram arrives or a node's timer is due.
    pub fn next_event(&self) -> Option<Instant> {
        let deadlines = self.nodes.iter().filter_map(Node::deadline);
        self.wire.next_arrival().into_iter().chain(deadlines).min()
    }

    /// Does the next thing: delivers one datagram if one is due, else fires the timers that are due,
    /// moving the clock forward to whichever comes first. Returns `false` when nothing is left to
    /// do (no datagram in flight, no timer set).
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_event() else { return false };
        self.now = self.now.max(next);
        if self.wire.next_arrival().is_some_and(|at| at <= self.now) {
            if let Some(Reverse(d)) = self.wire.queue.pop() {
                self.deliver(d);
            }
            return true;
        }
        let now = self.now;
        for index in 0..self.nodes.len() {
            if self.nodes[index].deadline().is_some_and(|t| t <= now) {
                self.input(index, |app, io| {
                    io.endpoint.handle_timeout(now);
                    app.handle_timeout(io, now);
                });
            }
        }
        true
    }

    /// Runs for `duration` of virtual time: every datagram and timer due until then, in order.
    /// Panics when the run is stuck at one instant (100,000 steps without the clock moving): a
    /// bug in some node, which the harness reports rather than hide.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        self.run_until(duration, |_| false);
        self.now = end;
    }

    /// Runs until `done` holds (checked before every step), for at most `limit` of virtual time.
    /// Returns whether `done` held; the clock stops where it did, or at the limit. Panics like
    /// [`Net::run_for`] when the run is stuck at one instant.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        let (mut instant, mut steps) = (self.now, 0u32);
        loop {
            if done(self) {
                return true;
            }
            if self.next_event().is_none_or(|t| t > end) {
                self.now = end;
                return done(self);
            }
            self.step();
            if self.now == instant {
                steps += 1;
                assert!(steps < MAX_STEPS_PER_INSTANT, "the network is stuck at {:?}: {self:?}", self.elapsed());
            } else {
                (instant, steps) = (self.now, 0);
            }
        }
    }

    fn deliver(&mut self, d: InFlight) {
        let Some(index) = self.hosts.get(&d.dest.ip()).and_then(|on_ip| {
            on_ip.iter().copied().find(|&i| self.nodes[i].sip == d.dest || self.nodes[i].media.flow_at(d.dest).is_some())
        }) else {
            self.wire.stats.unreachable += 1;
            tracing::trace!(dest = %d.dest, "nothing bound there: datagram dropped");
            return;
        };
        self.wire.stats.delivered += 1;
        let now = self.now;
        if self.nodes[index].sip == d.dest {
            self.input(index, |_, io| io.endpoint.handle_datagram(d.src, d.payload, now));
        } else if let Some(flow) = self.nodes[index].media.flow_at(d.dest) {
            self.input(index, |app, io| app.handle_media(io, flow, d.src, d.payload, now));
        }
    }

    /// Gives node `index` one input, then drains it (step 2 of the run loop).
    fn input<R>(&mut self, index: usize, f: impl FnOnce(&mut dyn AnyApp, &mut Io<'_>) -> R) -> R {
        let wall_clock = self.wall_clock();
        let now = self.now;
        let node = &mut self.nodes[index];
        let _entered = node.span.clone().entered();
        let r = f(&mut *node.app, &mut Io { endpoint: &mut node.endpoint, media: &mut node.media, wall_clock });
        loop {
            // Binds before the datagrams that name the ports, as the driver does.
            let mut progressed = node.apply_media(wall_clock, now);
            while let Some(ev) = node.endpoint.poll_event() {
                node.app.handle_event(&mut Io { endpoint: &mut node.endpoint, media: &mut node.media, wall_clock }, ev, now);
                node.apply_media(wall_clock, now);
                progressed = true;
            }
            while let Some(t) = node.endpoint.poll_transmit() {
                self.wire.send(now, node.sip, t.dest, t.payload);
                progressed = true;
            }
            while let Some(m) = node.media.poll_transmit() {
                self.wire.send(now, m.source, m.dest, m.payload);
                progressed = true;
            }
            if !progressed {
                node.deadline = node.poll_deadline();
                node.stale = false;
                return r;
            }
        }
    }
}
