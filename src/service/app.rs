//! The service as an [`Application`] (sans-IO): registrar, digest authentication, stateful proxy
//! routing between registered users, and the built-in `echo` user.
//!
//! ```text
//!   request ── admission (who owns it, or the answer: see `admit`) ─┐
//!            ┌─────────────────────────────────────────────────────┘
//!            ├─ REGISTER ──────────── auth (401) ── registrar ── store (changes, off the loop)
//!            ├─ INVITE/OPTIONS to echo ─────────────────────────► echo user (UaCore + media)
//!            ├─ in an echo dialog (BYE, ACK, re-INVITE) ─────────► echo user
//!            ├─ new, to a user ── auth (407), From = user (403) ─ bindings ──► B2BUA or proxy,
//!            │                        with P-Asserted-Identity     └─ none, or override: static route
//!            ├─ in a B2BUA leg from another address ── auth (407) as the leg's user ──► the leg
//!            │                                          moves there (issue 14 point 7), else 403
//!            └─ in-dialog, our Record-Route with a valid token ──► proxy: next hop
//! ```
//!
//! The part a request goes to becomes its transaction's [`Owner`], recorded on the endpoint
//! ([`Endpoint::set_owner`]) before anyone answers; the client transactions each part starts carry
//! its owner from creation. Every later event of a transaction names that owner, so
//! [`Service::handle_event`](Application::handle_event) is one match on it:
//!
//! ```text
//!   event ─┬─ no transaction owner yet: new request ──► admission (above)
//!          │                            ACK, stray response ──► its dialog (echo, B2BUA), relay or drop
//!          ├─ Owner::Proxy ────► proxy (a branch's responses and Timer B/F, by its upstream
//!          │                     server transaction; the CANCEL of a forwarded request)
//!          ├─ Owner::B2bua ────► B2BUA
//!          ├─ Owner::Echo ─────► echo user
//!          └─ Registrar, Service (answered already) ──► nothing to do
//! ```

use crate::application::{Application, FlowId, Io};
use crate::auth::{Algorithm, DigestServer, Verdict};
use crate::b2bua::{B2bua, LiveCall, Parties};
use crate::collections::HashMap;
use crate::endpoint::{Endpoint, EndpointEvent, Owner, STATELESS_TAG};
use crate::message::{Message, Method, Uri};
use crate::proxy::{Proxy, Target};
use crate::records::{CallState, StoreOp, StoreSink, UserRecord};
use crate::registrar::{aor_of, Change, Registrar, SharedRegistrar};
use crate::service::admit::{self, Admission, Admit, AdmitAck, AdmitStats, Known};
use crate::service::guard::{self, Block, GuardConfig, SharedGuard};
use crate::service::routes::StaticRoutes;
use crate::service::shared::{Shared, SharedUsers};
use crate::transaction::TransactionId;
use crate::ua::echo::EchoUas;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[path = "drain.rs"]
pub mod drain;
#[path = "durable.rs"]
mod durable;
#[path = "message.rs"]
mod message;
#[path = "transfer.rs"]
mod transfer;

/// The service's parts, built by the binary from its configuration.
#[derive(Debug)]
pub struct ServiceParts {
    /// Our SIP address.
    pub local: SocketAddr,
    /// The echo user.
    pub echo: EchoUas,
    /// The registrar, restored from the store.
    pub registrar: Registrar,
    /// Digest authentication, or `None` with `--no-auth`.
    pub auth: Option<DigestServer>,
    /// Users and their HA1s.
    pub users: Vec<UserRecord>,
    /// The proxy.
    pub proxy: Proxy,
    /// Where changes are written (`None`: memory only); `switchboard serve` gives its store writer.
    pub store: Option<Box<dyn StoreSink>>,
    /// The B2BUA that connects calls between users (`--mode b2bua`); `None` proxies them.
    pub b2bua: Option<B2bua>,
    /// Calls saved before a restart, for the B2BUA to take back.
    pub recovered: Vec<CallState>,
    /// Static routes (`[[route]]`): next hops for users without bindings, or for every match.
    pub routes: StaticRoutes,
    /// The trust rules: who owns each request (see [`admit`]).
    pub admission: Admission,
    /// Failed-authentication limits (`auth_backoff_secs`).
    pub guard: GuardConfig,
}

/// The service.
#[derive(Debug)]
pub struct Service {
    local: SocketAddr,
    echo: EchoUas,
    /// Shared with the other workers (see `shared`).
    registrar: SharedRegistrar,
    auth: Option<DigestServer>,
    users: SharedUsers,
    /// Whether this worker runs the registrar's purge (one worker does).
    purges: bool,
    proxy: Proxy,
    store: Option<Box<dyn StoreSink>>,
    b2bua: Option<B2bua>,
    recovered: Vec<CallState>,
    routes: StaticRoutes,
    admission: Admission,
    /// Wall-clock time at the latest input (registrar and nonces work in wall time).
    wall: Duration,
    last_now: Option<Instant>,
    stopping: bool,
    /// Failed authentications per (source IP, user) and per source IP.
    guard: SharedGuard,
    /// The cluster's dispatchers (issue 17 point 3): see [`Service::set_trusted_hops`].
    hops: Vec<SocketAddr>,
    /// REGISTERs waiting for a shared store to confirm their write (see `durable`).
    pending: HashMap<u64, durable::Pending>,
    next_ticket: u64,
    /// Graceful stop in a cluster (issue 17 point 7).
    drain: drain::Drain,
}

/// How many entries each per-call table of the [`Service`] holds ([`Service::table_sizes`]; the
/// endpoint's are [`crate::endpoint::Endpoint::table_sizes`]): all are back to their idle sizes
/// once every call has ended and its timers have run (issue 13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// The proxy's contexts (forwarded requests in progress; its branches are owned through the
    /// endpoint, `Owner::Proxy`).
    pub proxy_contexts: usize,
    /// The echo user's tables.
    pub echo: crate::ua::echo::TableSizes,
    /// The B2BUA's tables (`None` in proxy mode).
    pub b2bua: Option<crate::b2bua::TableSizes>,
}

impl Service {
    /// Assembles the service.
    pub fn new(mut parts: ServiceParts) -> Service {
        let registrar = std::mem::replace(&mut parts.registrar, Registrar::new(Default::default()));
        let shared = Shared {
            registrar: SharedRegistrar::single(registrar),
            users: SharedUsers::new(std::mem::take(&mut parts.users)),
            purges: true,
            guard: None,
        };
        Service::worker(parts, shared)
    }

    /// One worker of `serve --workers N`: `parts` without its registrar and users, which come from
    /// `shared` (see [`crate::service::shared`]).
    pub fn worker(parts: ServiceParts, shared: Shared) -> Service {
        Service {
            local: parts.local,
            echo: parts.echo,
            registrar: shared.registrar,
            auth: parts.auth,
            users: shared.users,
            purges: shared.purges,
            proxy: parts.proxy,
            store: parts.store,
            b2bua: parts.b2bua,
            recovered: parts.recovered,
            routes: parts.routes,
            admission: parts.admission,
            wall: Duration::ZERO,
            last_now: None,
            stopping: false,
            guard: shared.guard.unwrap_or_else(|| SharedGuard::new(parts.guard)),
            hops: Vec::new(),
            pending: HashMap::default(),
            next_ticket: 0,
            drain: drain::Drain::default(),
        }
    }

    /// Trusted hops (the dispatchers, `serve --dispatcher`): the authentication failure limits
    /// count a request from one against the client in the Via the hop received
    /// ([`crate::endpoint::client_behind_hop`]), as the endpoint's rate limit does.
    pub fn set_trusted_hops(&mut self, hops: Vec<SocketAddr>) {
        self.hops = hops;
    }

    /// The address the per-source limits apply to: the client behind a trusted hop, else `source`.
    fn limited_source(&self, req: &Message, source: SocketAddr) -> SocketAddr {
        match self.hops.contains(&source) {
            true => crate::endpoint::client_behind_hop(req.as_bytes()).unwrap_or(source),
            false => source,
        }
    }

    /// The sizes of the per-call tables (cheap: a few lengths).
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            proxy_contexts: self.proxy.table_sizes(),
            echo: self.echo.table_sizes(),
            b2bua: self.b2bua.as_ref().map(B2bua::table_sizes),
        }
    }

    /// The registrar (for status views).
    pub fn registrar(&self) -> &SharedRegistrar {
        &self.registrar
    }

    /// What admission refused so far (forged routes, loops, ACKs and stray responses dropped).
    pub fn admit_stats(&self) -> AdmitStats {
        self.admission.stats()
    }

    /// The B2BUA's calls in progress (empty in proxy mode).
    pub fn live_calls(&self, now: Instant) -> Vec<LiveCall> {
        self.b2bua.as_ref().map(|b| b.live(now)).unwrap_or_default()
    }

    /// Hands the B2BUA's call records and states to the store writer.
    fn write_calls(&mut self) {
        let Some(b) = self.b2bua.as_mut() else { return };
        while let Some(op) = b.poll_store() {
            if let Some(store) = &self.store {
                if let Err(e) = store.enqueue(op) {
                    tracing::error!(error = %e, "store write failed");
                }
            }
        }
    }

    fn persist(&self, changes: Vec<Change>) {
        let Some(store) = &self.store else { return };
        for c in changes {
            let op = match c {
                Change::Put(b) => StoreOp::PutBinding(b),
                Change::Remove { aor, contact } => StoreOp::RemoveBinding { aor, contact },
            };
            if let Err(e) = store.enqueue(op) {
                tracing::error!(error = %e, "store write failed");
            }
        }
    }

    /// Digest check (RFC 3261 §22) under the failure limits of [`guard`]: `Ok(user)` to go on
    /// (`None` when auth is off), `Err(answer)` to send with [`Endpoint::respond_stateless`], so a
    /// challenge or a refusal keeps no state (issue 14 points 3 and 4). Known and unknown users get
    /// the same answers: one challenge for all, 403 for any wrong credentials.
    fn authenticate(&mut self, req: &Message, source: SocketAddr, proxy: bool, now: Instant) -> Result<Option<String>, Message> {
        let source = self.limited_source(req, source);
        let Some(auth) = self.auth.as_mut() else { return Ok(None) };
        // Read once: the failure limits need the claimed user before the check.
        let read = auth.read_credentials(req, proxy);
        let claimed = read.user();
        if self.guard.blocked(source.ip(), claimed.as_deref(), now) {
            tracing::debug!(peer = %source, "authentication refused unchecked: source or user backing off");
            return Err(req.response_to(403, "Forbidden", Some(STATELESS_TAG)).finish());
        }
        let users = &self.users;
        let verdict = auth.verify_read(read, req, self.wall, |user, alg: Algorithm| users.ha1(user, alg));
        let reason = match &verdict {
            Verdict::Authorized { user } => return Ok(Some(user.clone())),
            Verdict::Missing | Verdict::Stale => None,
            Verdict::Wrong if claimed.as_deref().is_some_and(|u| users.contains_key(u)) => Some("wrong-password"),
            Verdict::Wrong => Some("unknown-user"),
            Verdict::Replay => Some("replay"),
            Verdict::Malformed => Some("malformed"),
        };
        if let Some(reason) = reason {
            guard::log_failure(source, claimed.as_deref(), auth.realm(), reason);
            let scope = match self.guard.failed(source.ip(), claimed.as_deref(), now) {
                Block::None => None,
                Block::Pair => Some("pair"),
                Block::Source => Some("source"),
            };
            if let Some(scope) = scope {
                tracing::warn!(
                    "auth blocked: src={} user={} scope={scope} secs={}",
                    source.ip(),
                    guard::log_safe(claimed.as_deref().unwrap_or("")),
                    self.guard.config().backoff.as_secs()
                );
            }
        } else {
            tracing::debug!(peer = %source, verdict = ?verdict, "challenged");
        }
        Err(auth
            .answer(req, &verdict, proxy, self.wall, Some(STATELESS_TAG))
            .unwrap_or_else(|| req.response_to(403, "Forbidden", Some(STATELESS_TAG)).finish()))
    }

    /// The bindings for the Request-URI's user: by AOR, else (with no domain configured) by user
    /// name under any host.
    fn targets_for(&self, req: &Message) -> Option<Vec<Target>> {
        self.targets_for_uri(&req.request_uri()?)
    }

    /// [`Service::targets_for`] a URI (a REFER's Refer-To, see `transfer`).
    fn targets_for_uri(&self, uri: &Uri<'_>) -> Option<Vec<Target>> {
        let aor = aor_of(uri)?;
        let mut bindings = self.registrar.lookup(&aor);
        if bindings.is_empty() && self.registrar.config().domain.is_none() {
            let user = uri.as_sip().and_then(|u| u.user)?;
            bindings = self.registrar.lookup_prefix(&format!("sip:{user}@"));
        }
        let now = self.wall.as_secs();
        Some(bindings.into_iter().filter(|b| !b.is_expired(now)).map(|b| Target { uri: b.contact.clone(), dest: b.source }).collect())
    }

    /// What the owners know of `msg`, for admission.
    /// The leg's phone matters only for a request in a B2BUA leg, and the awaited ACK only for an
    /// ACK in one from another address than that phone (admission reads them for nothing else), so
    /// each is looked up only then: both cost a parse of the dialog identity, per request.
    fn known(&self, msg: &Message, source: SocketAddr) -> Known {
        let b2bua = self.b2bua.as_ref().filter(|b| b.knows(msg));
        let peer = b2bua.and_then(|b| b.leg_peer(msg));
        let awaited_ack =
            msg.method() == Some(&Method::Ack) && peer.is_some_and(|p| p != source) && b2bua.is_some_and(|b| b.awaits_ack(msg));
        Known { echo: self.echo.knows(msg), b2bua: b2bua.is_some(), peer, awaited_ack }
    }

    fn on_request(&mut self, io: &mut Io<'_>, tx: TransactionId, request: Message, source: SocketAddr, now: Instant) {
        let known = self.known(&request, source);
        let verdict = self.admission.admit(&request, source, known);
        // The owner is recorded before anyone answers (a stateless answer ends the transaction at
        // once); a new request's owner is named by its routing (`on_new`), the service's until then.
        io.endpoint.set_owner(tx, verdict.owner().unwrap_or(Owner::Service));
        match verdict {
            Admit::Register => self.on_register(io.endpoint, tx, &request, source, now),
            Admit::Echo => self.echo.handle_event(io, EndpointEvent::Request { tx, request, source }, now),
            Admit::B2bua => {
                if let Some(b) = self.b2bua.as_mut() {
                    b.handle_event(io, EndpointEvent::Request { tx, request, source }, now);
                }
            }
            Admit::Challenge => self.on_foreign_in_dialog(io, tx, request, source, now),
            Admit::Forward { next } => self.forward_in_dialog(io.endpoint, tx, &request, &next, now),
            Admit::Reject(481, _) => {
                io.endpoint.respond_or_log(tx, crate::dialog::reject_unknown(&request), now);
            }
            Admit::Reject(code, reason) => {
                io.endpoint.respond_or_log(tx, request.response_to(code, reason, Some("sb")).finish(), now);
            }
            Admit::New { authenticate } => self.on_new(io, tx, request, source, authenticate, now),
        }
    }

    /// Issue 14 point 7: a request in a B2BUA leg from another address than the leg's phone. It
    /// must authenticate (407, RFC 3261 §22.1) as the leg's user; then the leg follows the phone
    /// to `source` (a phone that changed network keeps its call) and the B2BUA handles the
    /// request. Anyone else gets the challenge, or 403, and nothing changes. With authentication
    /// off there is no one to ask: the leg follows.
    fn on_foreign_in_dialog(&mut self, io: &mut Io<'_>, tx: TransactionId, request: Message, source: SocketAddr, now: Instant) {
        let refusal = match self.authenticate(&request, source, true, now) {
            Err(answer) => Some(answer),
            Ok(Some(user)) if self.b2bua.as_ref().and_then(|b| b.leg_user(&request)) != Some(user.as_str()) => {
                tracing::info!(peer = %source, user = guard::log_safe(&user), "in-dialog request from a new address by another user: 403");
                Some(request.response_to(403, "Forbidden (not this call's user)", Some(STATELESS_TAG)).finish())
            }
            Ok(_) => None,
        };
        if let Some(answer) = refusal {
            Self::respond_stateless(io.endpoint, tx, answer, now);
            return;
        }
        if let Some(b) = self.b2bua.as_mut() {
            io.endpoint.set_owner(tx, Owner::B2bua);
            b.move_peer(&request, source, now);
            b.handle_event(io, EndpointEvent::Request { tx, request, source }, now);
        }
    }

    /// A new request from a caller (RFC 3261 §22.3, RFC 3325 §5): authenticated unless admission
    /// says otherwise; its From user must be the authenticated user (403), whose identity the
    /// callee leg then carries as `P-Asserted-Identity`.
    fn on_new(&mut self, io: &mut Io<'_>, tx: TransactionId, request: Message, source: SocketAddr, authenticate: bool, now: Instant) {
        let mut caller = None;
        let asserted = if authenticate {
            match self.authenticate(&request, source, true, now) {
                Ok(Some(user)) if !admit::from_is(&request, &user) => {
                    tracing::debug!(peer = %source, user, "From is not the authenticated user");
                    let answer = request.response_to(403, "Forbidden (From is not the authenticated user)", Some("sb")).finish();
                    Self::respond_stateless(io.endpoint, tx, answer, now);
                    return;
                }
                Ok(user) => {
                    caller.clone_from(&user);
                    user.map(|u| self.asserted_identity(&request, &u))
                }
                Err(answer) => {
                    Self::respond_stateless(io.endpoint, tx, answer, now);
                    return;
                }
            }
        } else {
            // A trusted peer's own assertion goes on (RFC 3325 §5); see `admit`.
            self.admission.trusted_identity(&request, source)
        };
        // With a shared store the nonce count is claimed there first (see `durable`).
        let Some((request, asserted, caller)) = self.claim_then_new(tx, request, source, asserted, caller) else { return };
        self.dispatch_new(io, tx, request, source, asserted, caller, now);
    }

    /// [`Service::on_new`] once the caller is known: INVITE or any other method.
    #[allow(clippy::too_many_arguments)]
    fn dispatch_new(
        &mut self,
        io: &mut Io<'_>,
        tx: TransactionId,
        request: Message,
        source: SocketAddr,
        asserted: Option<String>,
        caller: Option<String>,
        now: Instant,
    ) {
        match request.method() {
            Some(Method::Invite) => self.on_invite(io, tx, request, source, Parties { asserted, caller, callee: None }, now),
            // MESSAGE, OPTIONS, SUBSCRIBE, ...: see `message`.
            _ => self.on_other_new(io, tx, request, source, asserted, now),
        }
    }

    /// `P-Asserted-Identity` for `user` (RFC 3325 §9.1): the From display name and
    /// `sip:USER@DOMAIN`, with our domain when one is configured, else the From host.
    fn asserted_identity(&self, req: &Message, user: &str) -> String {
        let from = req.from().ok();
        let host = self
            .registrar
            .config()
            .domain
            .clone()
            .or_else(|| from.as_ref().and_then(|f| f.uri.as_sip().map(|u| u.host.as_str().to_owned())));
        let display = from.as_ref().and_then(|f| f.display).map(|d| format!("{} ", d.trim())).unwrap_or_default();
        format!("{display}<sip:{user}@{}>", host.unwrap_or_else(|| self.local.ip().to_string()))
    }

    /// A challenge or refusal sent without keeping the transaction; a failure (the transaction
    /// already answered) is logged at debug: the request needs nothing more.
    fn respond_stateless(ep: &mut Endpoint, tx: TransactionId, answer: Message, now: Instant) {
        let status = answer.status();
        if let Err(e) = ep.respond_stateless(tx, answer, now) {
            tracing::debug!(?tx, ?status, error = %e, "stateless answer not sent");
        }
    }

    fn on_register(&mut self, ep: &mut Endpoint, tx: TransactionId, req: &Message, source: SocketAddr, now: Instant) {
        let user = match self.authenticate(req, source, false, now) {
            Ok(u) => u,
            Err(answer) => {
                Self::respond_stateless(ep, tx, answer, now);
                return;
            }
        };
        let source = self.phone_address(req, source);
        if self.register_durably(ep, tx, req, source, user.as_deref(), now) {
            return;
        }
        let outcome = self.registrar.handle_register(req, source, user.as_deref(), self.wall);
        self.persist(outcome.changes);
        if outcome.rejected.is_some() {
            ep.respond_or_log(tx, outcome.response, now);
            return;
        }
        // A 200: the registrar builds it again for a retransmission (`on_repeated`), so the
        // Completed transaction keeps no copy of it while it waits out Timer J (issue 16).
        if let Err(e) = ep.respond_rebuildable(tx, outcome.response, now) {
            tracing::debug!(?tx, error = %e, "200 to REGISTER not sent");
        }
    }

    /// A retransmission of a request answered with [`Endpoint::respond_rebuildable`] (RFC 3261
    /// §17.2.2): only REGISTERs are, and the registrar builds the 200 again, listing the AOR's
    /// bindings as they are now (§10.3 step 8). It is not authenticated or applied a second time:
    /// the transaction layer matched it byte for byte, its top Via stamped from the same source,
    /// to the request that was, so the 200 goes where the first one went.
    fn on_repeated(&mut self, ep: &mut Endpoint, request: &Message, source: SocketAddr) {
        if request.method() != Some(&Method::Register) {
            tracing::debug!(peer = %source, "repeated request of a method never answered rebuildably: dropped");
            return;
        }
        match self.registrar.answer_again(request, self.wall) {
            Some(response) => ep.resend_answer(&response, source),
            None => tracing::debug!(peer = %source, "repeated REGISTER without an AOR: dropped"),
        }
    }

    /// An INVITE from an authenticated caller (`parties`: its identity and user) or a trusted peer.
    fn on_invite(&mut self, io: &mut Io<'_>, tx: TransactionId, request: Message, source: SocketAddr, mut parties: Parties, now: Instant) {
        let (ep, req) = (&mut *io.endpoint, &request);
        let user = req.request_uri().and_then(|u| u.as_sip().and_then(|s| s.user.map(str::to_owned)));
        // Static routes: the first matching `[[route]]` applies when no phone is registered for the
        // user, or before the registrar with `override = true`.
        let route = self.routes.lookup(user.as_deref());
        let overrides = route.is_some_and(|r| r.overrides);
        let mut targets = if overrides { Vec::new() } else { self.targets_for(req).unwrap_or_default() };
        if let Some(r) = route.filter(|_| targets.is_empty()) {
            targets.push(Target { uri: r.request_uri(req.request_uri_str().unwrap_or_default(), user.as_deref()), dest: r.dest });
        }
        if targets.is_empty() {
            let known = user.as_deref().is_some_and(|u| self.users.contains_key(u))
                || self.auth.is_none() && user.is_some() && self.ever_registered(req);
            let (code, reason) = if known { (480, "Temporarily Unavailable") } else { (404, "Not Found") };
            ep.respond_or_log(tx, req.response_to(code, reason, Some("sb")).finish(), now);
            return;
        }
        match self.b2bua.as_mut() {
            Some(b) => {
                // The callee leg belongs to the called user (whose registered phone answers).
                parties.callee = user;
                io.endpoint.set_owner(tx, Owner::B2bua);
                b.start_call_as(io, tx, request, source, targets, parties, now)
            }
            None => {
                ep.set_owner(tx, Owner::Proxy { upstream: None });
                self.proxy.forward_as(ep, tx, req, &targets, parties.asserted.as_deref(), now);
            }
        }
    }

    /// With auth off there is no user list: a user is known once any binding was seen for it.
    fn ever_registered(&self, req: &Message) -> bool {
        req.request_uri().and_then(|u| aor_of(&u)).is_some_and(|aor| self.registrar.has_aor(&aor))
    }

    /// An in-dialog request that came back through our Record-Route (admission checked its token):
    /// forward it to its next hop, `next`, unless that is the service itself (482).
    fn forward_in_dialog(&mut self, ep: &mut Endpoint, tx: TransactionId, req: &Message, next: &str, now: Instant) {
        let uri = req.request_uri_str().unwrap_or_default().to_owned();
        match self.resolve(next) {
            Some(dest) if self.admission.is_local(dest) => {
                ep.respond_or_log(tx, req.response_to(482, "Loop Detected", None).finish(), now);
            }
            Some(dest) => {
                self.proxy.forward_routed(ep, tx, req, &[Target { uri, dest }], now);
            }
            None => {
                ep.respond_or_log(tx, req.response_to(404, "Not Found", None).finish(), now);
            }
        }
    }

    /// The address of a URI: an IP literal, else a registered contact with that URI.
    fn resolve(&self, uri: &str) -> Option<SocketAddr> {
        let Ok(Uri::Sip(u)) = Uri::parse(uri) else { return None };
        if let Some(ip) = u.host.ip() {
            // A phone behind NAT: its contact is reached where its REGISTER came from.
            let by_contact = self.registrar.find_contact(uri).map(|b| b.source);
            return by_contact.or(Some(SocketAddr::new(ip, u.port.unwrap_or(crate::transport::DEFAULT_PORT))));
        }
        None
    }

    /// Events outside any owned transaction: a new request (admission names its owner), an ACK
    /// for a 2xx and a response with no transaction (their dialog's, by Call-ID, or dropped).
    fn on_unowned(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        match event {
            EndpointEvent::Request { tx, request, source } => self.on_request(io, tx, request, source, now),
            EndpointEvent::Repeated { request, source } => self.on_repeated(io.endpoint, &request, source),
            EndpointEvent::Ack { request, source } => {
                let known = self.known(&request, source);
                match self.admission.admit_ack(&request, source, known) {
                    AdmitAck::Echo => self.echo.handle_event(io, EndpointEvent::Ack { request, source }, now),
                    AdmitAck::B2bua => {
                        if let Some(b) = self.b2bua.as_mut() {
                            b.handle_event(io, EndpointEvent::Ack { request, source }, now);
                        }
                    }
                    // §16.11: an ACK for a 2xx follows the Route set; ours comes off first.
                    AdmitAck::Relay { next } => match self.resolve(&next).filter(|d| !self.admission.is_local(*d)) {
                        Some(dest) => self.proxy.relay_ack(io.endpoint, &request, dest, true),
                        None => tracing::debug!(peer = %source, "ACK with no next hop dropped"),
                    },
                    AdmitAck::Drop(_) => {}
                }
            }
            EndpointEvent::StrayResponse { response, source } => {
                if self.echo.knows(&response) {
                    self.echo.handle_event(io, EndpointEvent::StrayResponse { response, source }, now);
                } else if let Some(b) = self.b2bua.as_mut().filter(|b| b.knows(&response)) {
                    b.handle_event(io, EndpointEvent::StrayResponse { response, source }, now);
                } else {
                    self.admission.stray_response(&response, source);
                }
            }
            other => tracing::debug!(event = ?other, "owned event with no owner dropped"),
        }
    }

    /// An event of a transaction the proxy owns: a forwarded request (`upstream: None`: its
    /// CANCEL) or a branch of `upstream` (a response, Timer B/F). Their ends leave nothing to do:
    /// a branch lives in its server transaction's context.
    fn on_proxy_event(&mut self, ep: &mut Endpoint, event: EndpointEvent, upstream: Option<TransactionId>, now: Instant) {
        match (event, upstream) {
            (EndpointEvent::Response { tx, response, .. }, Some(server)) => self.proxy.handle_response(ep, tx, server, &response, now),
            (EndpointEvent::Timeout { tx, .. }, Some(server)) => self.proxy.handle_branch_timeout(ep, tx, server, now),
            (EndpointEvent::Cancelled { tx, .. }, None) => self.proxy.handle_cancelled(ep, tx, now),
            _ => {}
        }
    }

    fn after(&mut self, now: Instant) {
        self.last_now = Some(now);
    }
}

// ===== live user changes (issue 14 point 11) =====

/// A user change the service refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserChangeError {
    /// The HA1s were made for another realm than the one the service challenges with: the user
    /// could never log in (RFC 3261 §22.4: HA1 covers the realm).
    Realm {
        /// The user's realm.
        user: String,
        /// The service's realm.
        service: String,
    },
}

impl std::fmt::Display for UserChangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserChangeError::Realm { user, service } => {
                write!(f, "the user's realm is {user} but the service challenges with realm {service}")
            }
        }
    }
}

impl std::error::Error for UserChangeError {}

impl Service {
    /// The realm the service challenges with (`None` with authentication off).
    pub fn realm(&self) -> Option<&str> {
        self.auth.as_ref().map(DigestServer::realm)
    }

    /// Adds a user or replaces their HA1s (`users add`, `users passwd` while serving): the next
    /// REGISTER or INVITE is checked against them. Refused when the user's realm is not ours.
    pub fn put_user(&mut self, user: UserRecord) -> Result<(), UserChangeError> {
        if let Some(realm) = self.realm().filter(|r| *r != user.realm) {
            return Err(UserChangeError::Realm { user: user.realm, service: realm.to_owned() });
        }
        tracing::info!(user = %user.name, "user added or changed");
        self.users.insert(user);
        Ok(())
    }

    /// Removes a user (`users remove` while serving): they can no longer register or call, their
    /// bindings are dropped (and removed from the store), and their live B2BUA calls end (BYE on
    /// both legs, recorded `user-removed by service`). Returns how many bindings went.
    pub fn remove_user(&mut self, io: &mut Io<'_>, name: &str, now: Instant) -> usize {
        let known = self.users.remove(name);
        let changes = self.registrar.remove_user(name);
        let dropped = changes.len();
        self.persist(changes);
        let calls = self.b2bua.as_mut().map_or(0, |b| b.end_calls_of_user(io, name, now));
        tracing::info!(user = %name, known, bindings = dropped, calls, "user removed");
        self.write_calls();
        dropped
    }
}

impl Service {
    /// A newer published membership (issue 17 points 2 and 4): the B2BUA takes on the calls this
    /// instance won by compare-and-set (`adopted`) and drops those another instance owns now
    /// (`lost`); see [`crate::b2bua::B2bua::follow`]. Returns how many calls were adopted.
    pub fn follow_membership(
        &mut self,
        io: &mut Io<'_>,
        membership: &crate::cluster::Membership,
        adopted: &[CallState],
        lost: &[String],
        now: Instant,
    ) -> usize {
        self.wall = io.wall_clock;
        // Proxy mode's adoption: a member's Record-Route is ours too (members seen once stay).
        let peers: Vec<SocketAddr> = membership.live.iter().filter_map(|m| crate::cluster::failover::member_addr(m)).collect();
        self.admission.add_peers(&peers);
        self.proxy.add_peers(&peers);
        let n = self.b2bua.as_mut().map_or(0, |b| b.follow(io, membership.epoch, adopted, lost, now));
        self.drain.clustered();
        tracing::info!(epoch = membership.epoch, live = ?membership.live, adopted = n, "membership followed");
        self.write_calls();
        n
    }
}

impl Application for Service {
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        self.wall = io.wall_clock;
        let saved = std::mem::take(&mut self.recovered);
        // The saved calls' ports first, then the spare ports (which must not take one of them).
        if let Some(b) = self.b2bua.as_mut() {
            if !saved.is_empty() {
                let n = b.restore(io, &saved, now);
                tracing::info!(recovered = n, saved = saved.len(), "calls taken back after a restart");
            }
            b.reserve(io);
        }
        self.echo.start(io, now);
        self.write_calls();
    }

    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.wall = io.wall_clock;
        self.after(now);
        match event.owner() {
            None => self.on_unowned(io, event, now),
            Some(Owner::Proxy { upstream }) => self.on_proxy_event(io.endpoint, event, upstream, now),
            Some(Owner::B2bua) => {
                if let Some(b) = self.b2bua.as_mut() {
                    b.handle_event(io, event, now);
                }
            }
            Some(Owner::Echo) => self.echo.handle_event(io, event, now),
            // The registrar and the service answered and keep nothing; phones are not ours.
            Some(owner) => tracing::trace!(?owner, ?event, "event for an owner with nothing to do"),
        }
        self.route_transfers(io, now);
        self.write_calls();
        self.drain_step(io, now);
    }

    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: Bytes, now: Instant) {
        self.after(now);
        if self.b2bua.as_mut().is_some_and(|b| b.handle_media(io, flow, source, &payload, now)) {
            return;
        }
        self.echo.handle_media(io, flow, source, payload, now);
    }

    fn relay_shards(&self) -> Option<crate::relay::RelayShards> {
        self.b2bua.as_ref().and_then(B2bua::relay_shards)
    }

    fn handle_bind_failed(&mut self, io: &mut Io<'_>, flow: FlowId, now: Instant) {
        self.after(now);
        if self.b2bua.as_mut().is_some_and(|b| b.handle_bind_failed(io, flow, now)) {
            return;
        }
        self.echo.handle_bind_failed(io, flow, now);
        self.write_calls();
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.wall = io.wall_clock;
        self.after(now);
        self.proxy.handle_timeout(io.endpoint, now);
        if self.purges && self.registrar.next_expiry().is_some_and(|t| t <= self.wall.as_secs()) {
            let changes = self.registrar.purge(self.wall);
            self.persist(changes);
        }
        self.echo.handle_timeout(io, now);
        if let Some(b) = self.b2bua.as_mut() {
            b.handle_timeout(io, now);
        }
        self.write_calls();
        self.drain_step(io, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // The registrar's purge runs in wall time; check it once a second at most.
        let purge = self.registrar.next_expiry().filter(|_| self.purges).and(self.last_now.map(|n| n + Duration::from_secs(1)));
        let b2bua = self.b2bua.as_ref().and_then(B2bua::poll_timeout);
        [self.echo.poll_timeout(), self.proxy.poll_timeout(), purge, b2bua, self.drain.poll_timeout()].into_iter().flatten().min()
    }

    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        if self.drain.begin(now) {
            tracing::info!("draining: probes answered 503 until the dispatcher stops sending new calls and the echo calls end");
            return;
        }
        self.stop_now(io, now);
    }

    fn is_done(&self) -> bool {
        self.stopping && self.echo.is_done()
    }

    fn shutdown_grace(&self) -> Duration {
        // The drain, then the echo user's BYEs.
        self.drain.limit() + Duration::from_secs(1)
    }
}

impl Service {
    /// `serve --drain-secs`: on SIGTERM a cluster member waits up to `limit` for every call to end
    /// (see [`drain`]).
    pub fn set_drain_secs(&mut self, limit: Duration) {
        self.drain.wait_for_calls(limit);
    }

    /// Ends the drain when it is over (see [`drain`]) and stops.
    fn drain_step(&mut self, io: &mut Io<'_>, now: Instant) {
        // The echo calls still up (ended dialogs linger in the dialog set for their timers), and
        // with `--drain-secs` the B2BUA's too.
        let t = self.echo.table_sizes();
        let b2bua = self.b2bua.as_ref().filter(|_| self.drain.waits_for_all_calls()).map_or(0, |b| b.table_sizes().calls);
        let up = t.media_calls + t.ringing + b2bua;
        if self.drain.finished(up, now) {
            tracing::info!(echo_calls = up, "drained: stopping");
            self.stop_now(io, now);
        }
    }

    /// Today's stop: BYE for the echo user's calls, the store flushed; B2BUA calls stay saved.
    fn stop_now(&mut self, io: &mut Io<'_>, now: Instant) {
        self.stopping = true;
        self.echo.shutdown(io, now);
        if let Some(store) = &self.store {
            if let Err(e) = store.flush() {
                tracing::error!(error = %e, "store flush at shutdown failed");
            }
        }
    }
}
