//! A stateful proxy core (RFC 3261 §16), sans-IO over the [`Endpoint`].
//!
//! ```text
//!   server transaction (caller)          client transactions (one per target)
//!   ───────────────────────────          ────────────────────────────────────
//!   request ── forward() ──────────────► copy with our Via, Max-Forwards-1, Record-Route
//!   1xx   ◄── forwarded at once ───────── 180/183
//!   2xx   ◄── forwarded at once ───────── 2xx  (then CANCEL to the other branches)
//!   best  ◄── when all branches ended ── 3xx-6xx, 408 on timeout (§16.7 best response)
//! ```
//!
//! Each branch is a client transaction owned by [`Owner::Proxy`] with its server transaction as
//! `upstream`: the endpoint's events for it name where its responses go, so the proxy keeps no
//! table of branches beside its contexts.
//!
//! Routing decisions (which targets) are the caller's: [`Proxy::forward`] takes them. An INVITE
//! branch without any response for `branch_timeout`, or without a final one for `ringing_timeout`
//! (Timer C, §16.8), ends as 408, so a caller never waits out the full Timer B in silence. A
//! non-INVITE branch runs until its own Timer F (64*T1), retransmitting all along, and when every
//! branch of a non-INVITE request timed out we send no 408 (RFC 4320 §4.2): the request's server
//! transaction is dropped, as the client's has expired by then.

pub mod forward;
pub mod token;

use crate::collections::HashMap;
use crate::dialog::IdGen;
use crate::endpoint::{Endpoint, Owner};
use crate::message::{Message, Method};
use crate::transaction::TransactionId;
use forward::{forward_request, is_us, strip_top_via, ForwardSpec};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Our address (Via, Record-Route).
    pub local: SocketAddr,
    /// A branch with no response at all after this ends as 408.
    pub branch_timeout: Duration,
    /// A ringing branch with no final response after this is cancelled (Timer C, §16.8: > 3 min).
    pub ringing_timeout: Duration,
    /// Seed for branches.
    pub seed: u64,
    /// The realm we challenge with, when the service authenticates: its Proxy-Authorization values
    /// are removed before forwarding (see [`ForwardSpec::consume_realm`]).
    pub realm: Option<String>,
    /// Mints the token of our Record-Route, checked when in-dialog requests come back
    /// ([`token`]).
    pub route_key: token::RouteKey,
}

/// Where to send a forwarded request: the target URI and the address to reach it (for a registered
/// phone, where its REGISTER came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The new Request-URI.
    pub uri: String,
    /// The next hop.
    pub dest: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    Trying,
    Ringing,
    Done(u16),
}

#[derive(Debug)]
struct Branch {
    tx: TransactionId,
    state: BranchState,
    /// Our own timeout (INVITE only: a non-INVITE branch ends on its transaction's Timer F).
    deadline: Option<Instant>,
    response: Option<Message>,
}

#[derive(Debug)]
struct Context {
    request: Message,
    branches: Vec<Branch>,
    answered: bool,
    finished: bool,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests forwarded statefully.
    pub forwarded: u64,
    /// Branches that ended on our timeout (408).
    pub branch_timeouts: u64,
    /// ACKs for 2xx relayed statelessly along a record-routed dialog (§16.11).
    pub relayed: u64,
}

/// The proxy.
#[derive(Debug)]
pub struct Proxy {
    config: ProxyConfig,
    ids: IdGen,
    contexts: HashMap<TransactionId, Context>,
    stats: ProxyStats,
    /// The other instances of the cluster (issue 17 point 4): a top Route naming one of them is
    /// popped like our own, so an adopter relays a dead instance's dialogs.
    peers: Vec<SocketAddr>,
}

/// §16.7 step 6: the best final response among the branches' (6xx first, else the lowest class;
/// 503 becomes 500).
fn best_status(codes: &[u16]) -> u16 {
    if let Some(&c) = codes.iter().filter(|&&c| c >= 600).min() {
        return c;
    }
    match codes.iter().min_by_key(|&&c| (c / 100, c)) {
        Some(503) => 500,
        Some(&c) => c,
        None => 408,
    }
}

/// CANCEL for a ringing branch (§16.10). A failure means the branch's transaction has just ended
/// (a final response crossed the CANCEL): nothing left to cancel, so it is only logged.
fn cancel_branch(ep: &mut Endpoint, tx: TransactionId, now: Instant) {
    if let Err(e) = ep.cancel(tx, now) {
        tracing::debug!(?tx, error = %e, "CANCEL of a branch not sent");
    }
}
impl Proxy {
    /// A proxy with no transactions yet.
    pub fn new(config: ProxyConfig) -> Proxy {
        let ids = IdGen::new(config.seed);
        Proxy { config, ids, contexts: HashMap::default(), stats: ProxyStats::default(), peers: Vec::new() }
    }

    /// Adds cluster members (issue 17 point 4) whose Record-Route this proxy pops as its own: in
    /// `--mode proxy` an instance keeps no dialog state, so adopting a dead instance's calls needs
    /// only their route set, which every in-dialog request carries.
    pub fn add_peers(&mut self, peers: &[SocketAddr]) {
        for p in peers {
            if !self.peers.contains(p) && *p != self.config.local {
                self.peers.push(*p);
            }
        }
    }

    /// Whether the top Route names us or a cluster peer.
    fn pops(&self, request: &Message) -> bool {
        std::iter::once(&self.config.local).chain(&self.peers).any(|a| routed_through(request, *a))
    }

    /// The counters.
    pub fn stats(&self) -> ProxyStats {
        self.stats
    }

    /// Calls (forwarded requests) in progress.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// True when nothing is in progress.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// Forwarded requests in progress, for leak tests: 0 once every forwarded request is answered.
    /// (A branch's client transaction is owned through the endpoint: `Owner::Proxy`.)
    pub fn table_sizes(&self) -> usize {
        self.contexts.len()
    }

    /// Forwards `request` (received on server transaction `server_tx`) to every target in parallel
    /// (§16.6, forking). `targets` must not be empty.
    pub fn forward(&mut self, ep: &mut Endpoint, server_tx: TransactionId, request: &Message, targets: &[Target], now: Instant) {
        self.forward_as(ep, server_tx, request, targets, None, now);
    }

    /// [`Proxy::forward`] for an in-dialog request whose top Route the caller has already found
    /// naming us or a peer (admission's token check parsed it): that Route comes off (§16.4)
    /// without parsing the Route list a second time.
    pub fn forward_routed(&mut self, ep: &mut Endpoint, server_tx: TransactionId, request: &Message, targets: &[Target], now: Instant) {
        self.forward_with(ep, server_tx, request, targets, None, Some(true), now);
    }

    /// [`Proxy::forward`] on behalf of an authenticated caller: every branch carries
    /// `P-Asserted-Identity: asserted` instead of any the request had (RFC 3325 §5).
    pub fn forward_as(
        &mut self,
        ep: &mut Endpoint,
        server_tx: TransactionId,
        request: &Message,
        targets: &[Target],
        asserted: Option<&str>,
        now: Instant,
    ) {
        self.forward_with(ep, server_tx, request, targets, asserted, None, now);
    }

    /// [`Proxy::forward_as`], with `pop_route` when the caller knows whether the top Route is ours
    /// (`None`: look).
    #[allow(clippy::too_many_arguments)]
    fn forward_with(
        &mut self,
        ep: &mut Endpoint,
        server_tx: TransactionId,
        request: &Message,
        targets: &[Target],
        asserted: Option<&str>,
        pop_route: Option<bool>,
        now: Instant,
    ) {
        let is_invite = request.method() == Some(&Method::Invite);
        // §16.6 step 4: our Record-Route carries a token for this dialog (see `token`).
        let token = is_invite.then(|| {
            let call_id = request.call_id().unwrap_or_default();
            let from_tag = request.from().ok().and_then(|f| f.tag().map(str::to_owned)).unwrap_or_default();
            self.config.route_key.mint(call_id, &from_tag)
        });
        let pop_route = pop_route.unwrap_or_else(|| self.pops(request));
        let mut ctx = Context { request: request.clone(), branches: Vec::new(), answered: false, finished: false };
        for t in targets {
            let branch = self.ids.branch();
            let spec = ForwardSpec {
                request_uri: &t.uri,
                local: self.config.local,
                branch: &branch,
                record_route: is_invite,
                pop_route,
                consume_realm: self.config.realm.as_deref(),
                route_token: token.as_deref(),
                asserted_identity: asserted,
            };
            let msg = forward_request(request, &spec);
            match ep.send_request(msg, t.dest, Owner::Proxy { upstream: Some(server_tx) }, now) {
                Ok(tx) => {
                    ctx.branches.push(Branch {
                        tx,
                        state: BranchState::Trying,
                        deadline: is_invite.then(|| now + self.config.branch_timeout),
                        response: None,
                    });
                    self.stats.forwarded += 1;
                }
                Err(e) => tracing::debug!(error = ?e, dest = %t.dest, "branch not started"),
            }
        }
        if ctx.branches.is_empty() {
            ep.respond_or_log(server_tx, request.response_to(500, "Server Internal Error", None).finish(), now);
            return;
        }
        self.contexts.insert(server_tx, ctx);
    }

    /// A response on our client transaction `tx`, a branch of server transaction `server_tx` (its
    /// owner's `upstream`). A 2xx that arrives after the call was decided (a retransmission, or
    /// another fork's answer, which the INVITE client transaction passes on in its Accepted state,
    /// RFC 6026 §7.2) still goes upstream through the server transaction, itself Accepted (§16.7
    /// step 5). The answer to a CANCEL we sent on a branch (§9.1) goes nowhere.
    pub fn handle_response(&mut self, ep: &mut Endpoint, tx: TransactionId, server_tx: TransactionId, response: &Message, now: Instant) {
        if response.cseq().is_ok_and(|c| c.method == Method::Cancel) {
            return;
        }
        let Some(code) = response.status() else { return };
        let Some(ctx) = self.contexts.get_mut(&server_tx) else {
            if (200..300).contains(&code) {
                ep.respond_or_log(server_tx, strip_top_via(response), now);
            }
            return;
        };
        let ringing_deadline = (ctx.request.method() == Some(&Method::Invite)).then(|| now + self.config.ringing_timeout);
        let Some(branch) = ctx.branches.iter_mut().find(|b| b.tx == tx) else { return };
        match code {
            100 => {
                if branch.state == BranchState::Trying {
                    branch.state = BranchState::Ringing;
                    branch.deadline = ringing_deadline;
                }
            }
            101..=199 => {
                branch.state = BranchState::Ringing;
                branch.deadline = ringing_deadline;
                if !ctx.finished {
                    ep.respond_or_log(server_tx, strip_top_via(response), now);
                }
            }
            200..=299 => {
                branch.state = BranchState::Done(code);
                // Every 2xx goes upstream (§16.7 step 5); the first one ends the other branches.
                ep.respond_or_log(server_tx, strip_top_via(response), now);
                if !ctx.answered {
                    ctx.answered = true;
                    ctx.finished = true;
                    Self::cancel_pending(ep, ctx, now);
                }
            }
            _ => {
                branch.state = BranchState::Done(code);
                branch.response = Some(response.clone());
                if code >= 600 && ctx.request.method() == Some(&Method::Invite) {
                    Self::cancel_pending(ep, ctx, now);
                }
            }
        }
        self.maybe_finish(ep, server_tx, now);
    }

    /// Our client transaction `tx`, a branch of `server_tx`, timed out (Timer B/F) or failed: the
    /// branch ends as 408.
    pub fn handle_branch_timeout(&mut self, ep: &mut Endpoint, tx: TransactionId, server_tx: TransactionId, now: Instant) {
        let Some(b) = self.contexts.get_mut(&server_tx).and_then(|c| c.branches.iter_mut().find(|b| b.tx == tx)) else { return };
        if !matches!(b.state, BranchState::Done(_)) {
            b.state = BranchState::Done(408);
            self.stats.branch_timeouts += 1;
        }
        self.maybe_finish(ep, server_tx, now);
    }

    /// The caller CANCELled the INVITE of `server_tx` (the endpoint answered it): cancel the
    /// branches (§16.10).
    pub fn handle_cancelled(&mut self, ep: &mut Endpoint, server_tx: TransactionId, now: Instant) {
        if let Some(mut ctx) = self.contexts.remove(&server_tx) {
            Self::cancel_pending(ep, &mut ctx, now);
        }
    }

    fn cancel_pending(ep: &mut Endpoint, ctx: &mut Context, now: Instant) {
        for b in ctx.branches.iter_mut().filter(|b| b.state == BranchState::Ringing || b.state == BranchState::Trying) {
            // §9.1: a CANCEL only after a provisional response; a silent branch just ends.
            if b.state == BranchState::Ringing {
                cancel_branch(ep, b.tx, now);
            }
            b.state = BranchState::Done(487);
        }
    }

    /// Sends the best final response once every branch has ended without a 2xx (§16.7 step 6).
    fn maybe_finish(&mut self, ep: &mut Endpoint, server_tx: TransactionId, now: Instant) {
        let Some(ctx) = self.contexts.get_mut(&server_tx) else { return };
        if ctx.branches.iter().any(|b| !matches!(b.state, BranchState::Done(_))) {
            return;
        }
        if !ctx.finished {
            ctx.finished = true;
            let codes: Vec<u16> =
                ctx.branches.iter().filter_map(|b| if let BranchState::Done(c) = b.state { Some(c) } else { None }).collect();
            let best = best_status(&codes);
            let heard = ctx.branches.iter().find_map(|b| b.response.as_ref().filter(|r| r.status() == Some(best)));
            if heard.is_none() && best == 408 && ctx.request.method() != Some(&Method::Invite) {
                // RFC 4320 §4.2: no 408 to a non-INVITE request; its sender has timed out too.
                if let Err(e) = ep.abandon_server(server_tx, now) {
                    tracing::debug!(?server_tx, error = %e, "timed-out request not dropped");
                }
                self.contexts.remove(&server_tx);
                return;
            }
            let response = match heard {
                Some(r) => strip_top_via(r),
                None => {
                    let reason = if best == 408 { "Request Timeout" } else { "Server Internal Error" };
                    ctx.request.response_to(best, reason, Some("proxy")).finish()
                }
            };
            ep.respond_or_log(server_tx, response, now);
        }
        // A late 2xx still finds its way upstream: its branch's owner names the server transaction.
        self.contexts.remove(&server_tx);
    }

    /// Ends branches that have waited too long (no response: `branch_timeout`; ringing: Timer C).
    pub fn handle_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        let mut due = Vec::new();
        for (&server_tx, ctx) in &mut self.contexts {
            for b in ctx.branches.iter_mut().filter(|b| !matches!(b.state, BranchState::Done(_)) && b.deadline.is_some_and(|d| d <= now)) {
                if b.state == BranchState::Ringing {
                    cancel_branch(ep, b.tx, now);
                }
                b.state = BranchState::Done(408);
                self.stats.branch_timeouts += 1;
                due.push(server_tx);
            }
        }
        for server_tx in due {
            self.maybe_finish(ep, server_tx, now);
        }
    }

    /// The earliest branch deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.contexts
            .values()
            .flat_map(|c| c.branches.iter())
            .filter(|b| !matches!(b.state, BranchState::Done(_)))
            .filter_map(|b| b.deadline)
            .min()
    }

    /// Forwards a request outside any transaction (an ACK for a 2xx, §16.11) to `dest`, the next
    /// hop the caller resolved: pop our Route, decrement Max-Forwards, add our Via. `routed`: the
    /// caller has already found the top Route naming us or a peer (admission's token check), so
    /// the Route list is not parsed again.
    pub fn relay_ack(&mut self, ep: &mut Endpoint, ack: &Message, dest: SocketAddr, routed: bool) {
        let pop_route = routed || self.pops(ack);
        let uri = ack.request_uri_str().unwrap_or_default().to_owned();
        let branch = self.ids.branch();
        let msg = forward_request(
            ack,
            &ForwardSpec {
                request_uri: &uri,
                local: self.config.local,
                branch: &branch,
                record_route: false,
                pop_route,
                consume_realm: self.config.realm.as_deref(),
                route_token: None,
                asserted_identity: None,
            },
        );
        ep.send_stateless(&msg, dest);
        self.stats.relayed += 1;
    }
}

/// Whether a request is on its way through us by a Route we put there (in-dialog, loose routing).
pub fn routed_through(request: &Message, local: SocketAddr) -> bool {
    request.routes().next().and_then(Result::ok).is_some_and(|r| is_us(r.uri_text, local))
}

/// §16.3 step 4: a request that already carries our Via came through us before: a loop (482).
/// Spirals, which come back with another Request-URI on purpose, are not used by this service.
pub fn is_loop(request: &Message, local: SocketAddr) -> bool {
    // A Via naming us spells our port in decimal, unless it is the default one (then it may be
    // left out): when no Via value holds those digits none is parsed (this runs on every request).
    if local.port() != crate::transport::DEFAULT_PORT {
        let mut digits = [0u8; 5];
        let port = decimal(local.port(), &mut digits);
        if !request.header_values(crate::message::HeaderName::Via).any(|v| memchr::memmem::find(v, port).is_some()) {
            return false;
        }
    }
    request
        .vias()
        .filter_map(Result::ok)
        .any(|v| v.host.ip() == Some(local.ip()) && v.port.unwrap_or(crate::transport::DEFAULT_PORT) == local.port())
}

/// `n` in decimal, written into `buf`.
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{best_status, decimal, is_loop};
    use crate::message::Message;
    use bytes::Bytes;

    #[test]
    fn loops_are_found_by_sent_by_with_or_without_the_port_digits() {
        let mut b = [0u8; 5];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(5070, &mut b), b"5070");
        assert_eq!(decimal(65535, &mut b), b"65535");
        let req = |vias: &str| {
            let wire = format!("OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\n{vias}From: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
            Message::parse(Bytes::from(wire)).unwrap()
        };
        let us: std::net::SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let other = "Via: SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bKa\r\n";
        assert!(!is_loop(&req(other), us));
        assert!(is_loop(&req(&format!("{other}v: SIP/2.0/UDP 127.0.0.1:05070;branch=z9hG4bKb\r\n")), us));
        assert!(is_loop(&req("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa, SIP/2.0/UDP 127.0.0.1:5070\r\n"), us));
        assert!(!is_loop(&req("Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKa\r\n"), us), "our port on another host");
        let default: std::net::SocketAddr = "127.0.0.1:5060".parse().unwrap();
        assert!(is_loop(&req("Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKa\r\n"), default), "the default port left out");
    }

    #[test]
    fn best_response_selection() {
        assert_eq!(best_status(&[486, 404, 503]), 404);
        assert_eq!(best_status(&[503]), 500);
        assert_eq!(best_status(&[486, 603]), 603);
        assert_eq!(best_status(&[408, 480]), 408);
        assert_eq!(best_status(&[302, 486]), 302);
        assert_eq!(best_status(&[]), 408);
    }
}
