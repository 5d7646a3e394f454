//! The dispatcher: a Call-ID-sticky SIP load balancer in front of several instances (issue 17
//! point 3), sans-IO (datagram + now in, datagrams out; a probe timer).
//!
//! ```text
//!   phone ──► dispatcher ──► backend (rendezvous over the live set, bounded load)
//!          ◄──            ◄──  responses: our Via popped (RFC 3261 §16.7 step 3)
//!   phone ◄── dispatcher ◄── backend  (in-dialog requests, INVITEs to registered phones)
//! ```
//!
//! It forwards requests statelessly (RFC 3261 §16.11): its own Via on top with a branch derived
//! from the received one (so a retransmission or a CANCEL takes the same branch), Max-Forwards
//! decremented, nothing kept per transaction. It keeps only the live calls it counted (Call-ID ->
//! backend, from the INVITEs and BYEs it forwards) for bounded-load hashing ([`balance`]).
//!
//! - **Choice.** A new call goes to the first backend of its Call-ID's rendezvous ranking
//!   ([`crate::cluster::rank`]) under the bounded-load cap; other requests without our Route go
//!   to the call's counted backend, else to the rendezvous owner among the live backends.
//! - **Record-Route.** Dialog-creating requests get `Record-Route: <sip:US;lr;sbt=TOKEN;sb-backend=ADDR>`
//!   (§16.6 step 4), so in-dialog requests come back to the owner even when the bounded-load rule
//!   moved the call off its hash. When that backend is dead, they go to the rendezvous owner among
//!   the live ones: the adopter after failover (point 4).
//! - **Trust.** A request whose top Route names us must carry a token minted by the cluster for
//!   its Call-ID, one of its tags and its backend ([`crate::proxy::token`], key from the shared
//!   deployment secret): otherwise 403. A per-source rate limit
//!   ([`crate::transport::rate_limit`]) stands in front of the instances.
//! - **Path.** A REGISTER gets `Path: <sip:US;lr>` (RFC 3327 §4.1), so the instance that takes
//!   a call for that phone sends it here, from any instance.
//! - **Probes.** OPTIONS to every backend every interval ([`probe`]); each change of the live set
//!   raises the epoch and is output as a [`Membership`] to publish (point 2).

pub mod balance;
pub mod probe;

use crate::cluster::{self, Membership};
use crate::collections::HashMap;
use crate::message::{HeaderName, Message, Method, Uri};
use crate::proxy::forward::{forward_request, is_us, our_uri, ForwardSpec};
use crate::proxy::token::{RouteKey, PARAM as TOKEN_PARAM};
use crate::transport::rate_limit::{RateLimit, RateLimiter, Verdict};
use crate::transport::{classify, response_destination, stamp_received, DatagramKind, Transmit, DEFAULT_PORT};
use bytes::Bytes;
use probe::{Health, ProbeConfig};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The Record-Route parameter naming the backend that owns the dialog.
pub const BACKEND_PARAM: &str = "sb-backend";
/// Branch prefix of our forwarded requests (after the magic cookie).
const FORWARD_MARK: &str = "sbd";
/// Branch prefix of our probes (after the magic cookie).
const PROBE_MARK: &str = "sbp";
/// Default bounded-load slack (issue 17 point 3).
pub const DEFAULT_EPSILON: f64 = 0.25;
/// A counted call with no BYE seen for this long is forgotten (its BYE was lost).
pub const DEFAULT_CALL_TTL: Duration = Duration::from_secs(4 * 3600);

/// One backend: its URI as configured (`sip:IP:PORT`, the member name) and its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `sip:IP:PORT`, as in `--backend` and in the published membership.
    pub uri: String,
    /// Where to send.
    pub addr: SocketAddr,
}

impl Backend {
    /// Parses `sip:IP:PORT` (port 5060 when absent). Host names are refused: the dispatcher does
    /// not resolve.
    pub fn parse(uri: &str) -> Result<Backend, String> {
        let bad = || format!("backend must be sip:IP:PORT, got {uri:?}");
        let Ok(Uri::Sip(u)) = Uri::parse(uri) else { return Err(bad()) };
        let ip = u.host.ip().ok_or_else(bad)?;
        if u.user.is_some() || u.secure {
            return Err(bad());
        }
        let addr = SocketAddr::new(ip, u.port.unwrap_or(DEFAULT_PORT));
        Ok(Backend { uri: member_name(addr), addr })
    }
}

/// The member name of a backend address: `sip:IP:PORT` (IPv6 in brackets).
pub fn member_name(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("sip:{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("sip:[{}]:{}", a.ip(), a.port()),
    }
}

/// Settings of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// Our address (Via, Record-Route, Path).
    pub local: SocketAddr,
    /// The backends, in configured order.
    pub backends: Vec<Backend>,
    /// OPTIONS probing.
    pub probe: ProbeConfig,
    /// Bounded-load slack ε: no backend holds more than (1 + ε) × the mean of live calls.
    pub epsilon: f64,
    /// Per-source-IP limit on requests from outside the cluster; `None` is no limit.
    pub rate_limit: Option<RateLimit>,
    /// Mints and checks our Record-Route tokens (the cluster's key).
    pub route_key: RouteKey,
    /// Seed of our branches and probe ids.
    pub seed: u64,
    /// Counted calls older than this are forgotten.
    pub call_ttl: Duration,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this datagram.
    Send(Transmit),
    /// The live set changed: publish it (Redis key and channel `sb:members`).
    Publish(Membership),
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Requests forwarded to a backend.
    pub to_backends: u64,
    /// Requests forwarded from a backend outwards.
    pub from_backends: u64,
    /// Responses forwarded.
    pub responses: u64,
    /// Requests refused with 403 for a bad or missing route token.
    pub bad_tokens: u64,
    /// Requests dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Datagrams dropped unparsed or unroutable.
    pub dropped: u64,
    /// New calls placed off their hash by the bounded-load rule.
    pub rebalanced: u64,
}

#[derive(Debug, Clone)]
struct Counted {
    backend: usize,
    since: Instant,
}

/// The dispatcher core. See the module docs.
#[derive(Debug)]
pub struct Dispatcher {
    cfg: DispatchConfig,
    health: Vec<Health>,
    epoch: u64,
    calls: HashMap<String, Counted>,
    loads: Vec<usize>,
    /// New calls placed on each backend, and the most live calls each (and all) held at once.
    placed: Vec<u64>,
    peaks: Vec<usize>,
    peak_total: usize,
    limiter: Option<RateLimiter>,
    next_probe: Instant,
    probe_seq: u64,
    stats: DispatchStats,
}

impl Dispatcher {
    /// A dispatcher with every backend live, epoch 1; the first probes go out at `now`.
    pub fn new(cfg: DispatchConfig, now: Instant) -> Dispatcher {
        let n = cfg.backends.len();
        Dispatcher {
            health: (0..n).map(|_| Health::new()).collect(),
            epoch: 1,
            calls: HashMap::default(),
            loads: vec![0; n],
            placed: vec![0; n],
            peaks: vec![0; n],
            peak_total: 0,
            limiter: cfg.rate_limit.map(RateLimiter::new),
            next_probe: now,
            probe_seq: 0,
            stats: DispatchStats::default(),
            cfg,
        }
    }

    /// The live set with the current epoch.
    pub fn membership(&self) -> Membership {
        let live = self.cfg.backends.iter().zip(&self.health).filter(|(_, h)| h.live).map(|(b, _)| b.uri.clone()).collect();
        Membership { epoch: self.epoch, live }
    }

    /// Raises the epoch to at least `floor` (the driver found a higher one published, by an earlier
    /// run or another dispatcher) and returns the membership to publish again.
    pub fn raise_epoch(&mut self, floor: u64) -> Membership {
        self.epoch = self.epoch.max(floor);
        self.membership()
    }

    /// Counters.
    pub fn stats(&self) -> &DispatchStats {
        &self.stats
    }

    /// Live calls counted per backend (configured order).
    pub fn loads(&self) -> &[usize] {
        &self.loads
    }

    /// New calls placed on each backend so far.
    pub fn placed(&self) -> &[u64] {
        &self.placed
    }

    /// The most live calls each backend held at once, and the most all of them held at once.
    pub fn peaks(&self) -> (&[usize], usize) {
        (&self.peaks, self.peak_total)
    }

    /// When [`Dispatcher::on_timer`] wants to run next.
    pub fn next_timer(&self) -> Instant {
        self.next_probe
    }

    /// Probe round: counts unanswered probes as failures, sends new ones, forgets stale calls.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Output>) {
        if now < self.next_probe {
            return;
        }
        self.next_probe = now + self.cfg.probe.interval;
        let mut changed = false;
        for i in 0..self.cfg.backends.len() {
            if self.health[i].pending.take().is_some() {
                changed |= self.health[i].record(false, &self.cfg.probe);
            }
            self.probe_seq += 1;
            let branch = format!("{}{PROBE_MARK}{:x}-{i}-{}", crate::message::BRANCH_COOKIE, self.cfg.seed & 0xffff_ffff, self.probe_seq);
            let b = &self.cfg.backends[i];
            let msg = Message::request(Method::Options, &b.uri)
                .header(HeaderName::Via, crate::transport::via_value(self.cfg.local, &branch))
                .header(HeaderName::MaxForwards, 70)
                .header(HeaderName::From, format_args!("<sip:dispatcher@{}>;tag=sbd{:x}", host_port(self.cfg.local), self.cfg.seed))
                .header(HeaderName::To, format_args!("<{}>", b.uri))
                .header(HeaderName::CallId, format_args!("sbprobe-{i}-{}-{:x}", self.probe_seq, self.cfg.seed))
                .header(HeaderName::CSeq, format_args!("{} OPTIONS", self.probe_seq % 1_000_000 + 1))
                .finish();
            self.health[i].pending = Some(branch);
            out.push(Output::Send(Transmit { dest: b.addr, payload: msg.as_bytes().clone() }));
        }
        if changed {
            self.liveness_changed(out);
        }
        let ttl = self.cfg.call_ttl;
        let stale: Vec<String> = self.calls.iter().filter(|(_, c)| now.duration_since(c.since) > ttl).map(|(k, _)| k.clone()).collect();
        for k in stale {
            self.forget(&k);
        }
    }

    /// Handles one received datagram.
    pub fn on_datagram(&mut self, data: Bytes, source: SocketAddr, now: Instant, out: &mut Vec<Output>) {
        if classify(&data) != DatagramKind::Sip {
            return;
        }
        let from_backend = self.backend_at(source);
        if from_backend.is_none() && !data.starts_with(b"SIP/") {
            if let Some(l) = &mut self.limiter {
                if let Verdict::Drop { log, dropped } = l.check(source.ip(), now) {
                    self.stats.rate_limited += 1;
                    if log {
                        tracing::warn!(%source, dropped, "rate limit: requests dropped");
                    }
                    return;
                }
            }
        }
        let Ok(msg) = Message::parse(data) else {
            self.stats.dropped += 1;
            return;
        };
        if msg.is_request() {
            self.on_request(msg, source, from_backend, now, out);
        } else {
            self.on_response(&msg, source, out);
        }
    }

    /// The live set changed: a new epoch to publish, and the calls counted on a dead backend
    /// counted on their adopter (the rendezvous owner among the live ones, issue 17 point 4).
    fn liveness_changed(&mut self, out: &mut Vec<Output>) {
        self.epoch += 1;
        let dead: Vec<String> = self.calls.iter().filter(|(_, c)| !self.health[c.backend].live).map(|(k, _)| k.clone()).collect();
        for id in dead {
            let adopter = self.ranking(&id).first().copied();
            if let (Some(a), Some(c)) = (adopter, self.calls.get_mut(&id)) {
                self.loads[c.backend] = self.loads[c.backend].saturating_sub(1);
                c.backend = a;
                self.loads[a] += 1;
            }
        }
        let m = self.membership();
        tracing::info!(epoch = m.epoch, live = %m.live.join(" "), "live set changed");
        out.push(Output::Publish(m));
    }

    fn backend_at(&self, addr: SocketAddr) -> Option<usize> {
        self.cfg.backends.iter().position(|b| b.addr == addr)
    }

    fn backend_named(&self, text: &str) -> Option<usize> {
        let addr: SocketAddr = text.parse().ok()?;
        self.backend_at(addr)
    }

    fn live_indices(&self) -> Vec<usize> {
        (0..self.cfg.backends.len()).filter(|&i| self.health[i].live).collect()
    }

    /// The rendezvous ranking of `call_id` over the live backends (indices into the backends).
    fn ranking(&self, call_id: &str) -> Vec<usize> {
        let live = self.live_indices();
        let names: Vec<&str> = live.iter().map(|&i| self.cfg.backends[i].uri.as_str()).collect();
        cluster::rank(cluster::key(call_id), &names).into_iter().map(|j| live[j]).collect()
    }

    fn forget(&mut self, call_id: &str) {
        if let Some(c) = self.calls.remove(call_id) {
            self.loads[c.backend] = self.loads[c.backend].saturating_sub(1);
        }
    }

    fn on_response(&mut self, msg: &Message, source: SocketAddr, out: &mut Vec<Output>) {
        let Ok(via) = msg.via() else {
            self.stats.dropped += 1;
            return;
        };
        let ours = via.host.ip() == Some(self.cfg.local.ip()) && via.port.unwrap_or(DEFAULT_PORT) == self.cfg.local.port();
        let branch = via.branch().unwrap_or("").to_owned();
        if !ours {
            self.stats.dropped += 1;
            return;
        }
        if branch.starts_with(&format!("{}{PROBE_MARK}", crate::message::BRANCH_COOKIE)) {
            if let Some(i) = self.backend_at(source) {
                tracing::debug!(%source, %branch, pending = ?self.health[i].pending, status = ?msg.status(), "probe reply");
                if self.health[i].pending.as_deref() == Some(branch.as_str()) {
                    self.health[i].pending = None;
                    let status = msg.status().unwrap_or(500);
                    let ok = probe::reply_is_ok(status);
                    let draining = status == 503;
                    if self.health[i].draining != draining {
                        tracing::info!(backend = %self.cfg.backends[i].uri, draining, "backend draining changed");
                        self.health[i].draining = draining;
                    }
                    if self.health[i].record(ok, &self.cfg.probe) {
                        self.liveness_changed(out);
                    }
                }
            }
            return;
        }
        let stripped = crate::proxy::forward::strip_top_via(msg);
        let Some(dest) = response_destination(&stripped) else {
            self.stats.dropped += 1;
            return;
        };
        // A failed INVITE ends the call we counted (§13.2.2.3).
        let failed_invite = msg.status().is_some_and(|s| s >= 300) && msg.cseq().is_ok_and(|c| c.method == Method::Invite);
        if let (true, Ok(id)) = (failed_invite, msg.call_id()) {
            let id = id.to_owned();
            self.forget(&id);
        }
        self.stats.responses += 1;
        out.push(Output::Send(Transmit { dest, payload: stripped.as_bytes().clone() }));
    }

    fn on_request(&mut self, msg: Message, source: SocketAddr, from_backend: Option<usize>, now: Instant, out: &mut Vec<Output>) {
        let msg = stamp_received(&msg, source);
        let method = msg.method().cloned().unwrap_or(Method::Options);
        let (Ok(call_id), Ok(from)) = (msg.call_id(), msg.from()) else {
            self.stats.dropped += 1;
            return;
        };
        let call_id = call_id.to_owned();
        let from_tag = from.tag().unwrap_or("").to_owned();
        let to_tag = msg.to().ok().and_then(|t| t.tag()).map(str::to_owned);
        if msg.max_forwards().ok().flatten() == Some(0) {
            self.reply(&msg, 483, "Too Many Hops", out);
            return;
        }
        // Our Route on top: check its token (the security issue's trust rule).
        let top_route = msg.routes().next().and_then(|r| r.ok()).map(|r| (r.uri_text.to_owned(), r.uri));
        let ours = top_route.as_ref().is_some_and(|(t, _)| is_us(t, self.cfg.local));
        let mut routed_backend = None;
        if let Some((_, Uri::Sip(u))) = top_route.as_ref().filter(|_| ours) {
            let token = u.params.value(TOKEN_PARAM).unwrap_or("");
            let backend = u.params.value(BACKEND_PARAM).unwrap_or("");
            let tags: Vec<String> =
                [Some(from_tag.as_str()), to_tag.as_deref()].into_iter().flatten().map(|t| bound_tag(t, backend)).collect();
            let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
            if !self.cfg.route_key.verify(&call_id, &tag_refs, token) {
                self.stats.bad_tokens += 1;
                tracing::info!(%source, %call_id, "refused: route naming us without a cluster token");
                self.reply(&msg, 403, "Forbidden (bad route token)", out);
                return;
            }
            routed_backend = Some(self.backend_named(backend));
        }
        if method == Method::Bye {
            self.forget(&call_id);
        }
        if let Some(b) = from_backend {
            self.outwards(&msg, &method, &call_id, &from_tag, b, ours, out);
            return;
        }
        // Inwards: which backend.
        let target = match routed_backend {
            Some(Some(b)) if self.health[b].live => Some(b),
            _ => self.inward_choice(&method, &call_id, to_tag.is_some(), now),
        };
        let Some(b) = target else {
            self.reply(&msg, 503, "No Backend Available", out);
            return;
        };
        let record_route = to_tag.is_none() && creates_dialog(&method);
        let token_and_backend = record_route.then(|| self.rr_params(&call_id, &from_tag, b));
        let branch = self.branch(&msg);
        let uri = msg.request_uri_str().unwrap_or("").to_owned();
        let fwd = forward_request(
            &msg,
            &ForwardSpec {
                request_uri: &uri,
                local: self.cfg.local,
                branch: &branch,
                record_route,
                pop_route: ours,
                consume_realm: None,
                route_token: token_and_backend.as_deref(),
                asserted_identity: None,
            },
        );
        let fwd = if method == Method::Register { with_path(&fwd, &our_uri(self.cfg.local)) } else { fwd };
        self.stats.to_backends += 1;
        out.push(Output::Send(Transmit { dest: self.cfg.backends[b].addr, payload: fwd.as_bytes().clone() }));
    }

    /// The backend of a request from a phone without our Route: the counted call's, else a new
    /// call's bounded-load choice, else the rendezvous owner.
    fn inward_choice(&mut self, method: &Method, call_id: &str, in_dialog: bool, now: Instant) -> Option<usize> {
        if let Some(c) = self.calls.get(call_id) {
            if self.health[c.backend].live {
                return Some(c.backend);
            }
        }
        let ranking = self.ranking(call_id);
        if *method == Method::Invite && !in_dialog {
            // A draining backend (probe answered 503) takes no new call.
            let open: Vec<usize> = ranking.iter().copied().filter(|&b| !self.health[b].draining).collect();
            let b = balance::choose(&open, &self.loads, self.cfg.epsilon)?;
            if open.first() != Some(&b) {
                self.stats.rebalanced += 1;
            }
            self.forget(call_id);
            self.loads[b] += 1;
            self.placed[b] += 1;
            self.peaks[b] = self.peaks[b].max(self.loads[b]);
            self.peak_total = self.peak_total.max(self.loads.iter().sum());
            self.calls.insert(call_id.to_owned(), Counted { backend: b, since: now });
            return Some(b);
        }
        ranking.first().copied()
    }

    /// A request from backend `b` towards a phone (in-dialog, or a new call to a registered
    /// contact): to the next Route, else the Request-URI.
    #[allow(clippy::too_many_arguments)]
    fn outwards(&mut self, msg: &Message, method: &Method, call_id: &str, from_tag: &str, b: usize, pop: bool, out: &mut Vec<Output>) {
        let next_route = msg.routes().filter_map(Result::ok).nth(usize::from(pop)).map(|r| r.uri_text.to_owned());
        let uri = msg.request_uri_str().unwrap_or("").to_owned();
        let Some(dest) = uri_addr(next_route.as_deref().unwrap_or(&uri)) else {
            self.stats.dropped += 1;
            self.reply(msg, 404, "Not Found (unresolvable)", out);
            return;
        };
        let in_dialog = msg.to().ok().and_then(|t| t.tag()).is_some();
        let record_route = !in_dialog && creates_dialog(method);
        let token_and_backend = record_route.then(|| self.rr_params(call_id, from_tag, b));
        let branch = self.branch(msg);
        let fwd = forward_request(
            msg,
            &ForwardSpec {
                request_uri: &uri,
                local: self.cfg.local,
                branch: &branch,
                record_route,
                pop_route: pop,
                consume_realm: None,
                route_token: token_and_backend.as_deref(),
                asserted_identity: None,
            },
        );
        self.stats.from_backends += 1;
        out.push(Output::Send(Transmit { dest, payload: fwd.as_bytes().clone() }));
    }

    /// `TOKEN;sb-backend=ADDR`: the token bound to the dialog and the backend, and the backend,
    /// as the tail of our Record-Route URI after `sbt=`.
    fn rr_params(&self, call_id: &str, from_tag: &str, b: usize) -> String {
        let backend = self.cfg.backends[b].addr.to_string();
        let token = self.cfg.route_key.mint(call_id, &bound_tag(from_tag, &backend));
        format!("{token};{BACKEND_PARAM}={backend}")
    }

    /// Our branch for a forwarded request, derived from the received top Via (§16.11): a
    /// retransmission, a CANCEL of the INVITE and the ACK of its non-2xx answer get the same
    /// one, so the backend's transaction matches them (§9.1, §17.2.3).
    fn branch(&self, msg: &Message) -> String {
        let mut h = cluster::hash(msg.via().ok().and_then(|v| v.branch()).unwrap_or("").as_bytes());
        if !msg.via().ok().is_some_and(|v| v.has_rfc3261_branch()) {
            // RFC 2543 peers: the transaction is Call-ID, CSeq number and From tag (§17.2.3).
            let cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
            h ^= cluster::hash(
                format!("{}|{cseq}|{}", msg.call_id().unwrap_or(""), msg.from().ok().and_then(|f| f.tag()).unwrap_or("")).as_bytes(),
            );
        }
        format!("{}{FORWARD_MARK}{:016x}", crate::message::BRANCH_COOKIE, cluster::mix(h ^ self.cfg.seed))
    }

    fn reply(&mut self, req: &Message, code: u16, reason: &str, out: &mut Vec<Output>) {
        if req.method() == Some(&Method::Ack) {
            return;
        }
        let resp = req.response_to(code, reason, Some("sbd")).finish();
        if let Some(dest) = response_destination(&resp) {
            out.push(Output::Send(Transmit { dest, payload: resp.as_bytes().clone() }));
        }
    }
}

/// The tag a token is minted over: the dialog tag bound to the backend, so a token cannot be
/// replayed to steer the dialog to another backend.
fn bound_tag(tag: &str, backend: &str) -> String {
    format!("{tag}\u{0}{backend}")
}

fn creates_dialog(m: &Method) -> bool {
    matches!(m, Method::Invite | Method::Subscribe | Method::Refer)
}

/// The address of a SIP URI with an IP host (no resolution here).
fn uri_addr(text: &str) -> Option<SocketAddr> {
    match Uri::parse(text).ok()? {
        Uri::Sip(u) => {
            let ip: IpAddr = u.host.ip()?;
            Some(SocketAddr::new(ip, u.port.unwrap_or(DEFAULT_PORT)))
        }
        _ => None,
    }
}

fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// A copy of `msg` with `Path: <uri>` before its other headers (RFC 3327 §4.1: a proxy adds its
/// Path value on top).
fn with_path(msg: &Message, uri: &str) -> Message {
    let (Some(method), Some(ruri)) = (msg.method().cloned(), msg.request_uri_str()) else { return msg.clone() };
    let mut b = Message::request(method, ruri);
    let mut added = false;
    for h in msg.headers() {
        let spelling = if h.name == HeaderName::Other { std::str::from_utf8(h.raw_name).unwrap_or("X-Invalid") } else { h.name.as_str() };
        if !added && h.name == HeaderName::CallId {
            b.push_raw(HeaderName::Other, "Path", format!("<{uri}>").as_bytes());
            added = true;
        }
        if !matches!(h.name, HeaderName::ContentLength | HeaderName::ContentType) {
            b.push_raw(h.name, spelling, h.value);
        }
    }
    crate::proxy::forward::finish_like(b, msg)
}

#[cfg(test)]
mod tests;
