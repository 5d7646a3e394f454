//! The service as an [`Application`] (sans-IO): registrar, digest authentication, stateful proxy
//! routing between registered users, and the built-in `echo` user.
//!
//! ```text
//!   request ─┬─ REGISTER ──────────── auth (401) ── registrar ── store (changes, off the loop)
//!            ├─ INVITE/OPTIONS to echo ─────────────────────────► echo user (UaCore + media)
//!            ├─ in an echo dialog (BYE, ACK, re-INVITE) ─────────► echo user
//!            ├─ INVITE to a user ───── auth (407) ── bindings ──► proxy: fork to every binding
//!            │                                 └─ none, or override: static route ──► proxy: next hop
//!            └─ in-dialog, Route: us ───────────────────────────► proxy: next hop
//! ```

use crate::auth::{Algorithm, DigestServer, Verdict};
use crate::b2bua::{B2bua, LiveCall};
use crate::collections::HashMap;
use crate::driver::{Application, FlowId, Io};
use crate::endpoint::{Endpoint, EndpointEvent};
use crate::message::{Message, Method, Uri};
use crate::proxy::{self, Proxy, Target};
use crate::registrar::{aor_of, Binding, Change, Registrar};
use crate::service::routes::StaticRoutes;
use crate::store::{BindingRecord, CallState, StoreOp, StoreWriter, UserRecord};
use crate::transaction::TransactionId;
use crate::ua::echo::EchoUas;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
    /// Where changes are written (`None`: memory only).
    pub store: Option<StoreWriter>,
    /// The B2BUA that connects calls between users (`--mode b2bua`); `None` proxies them.
    pub b2bua: Option<B2bua>,
    /// Calls saved before a restart, for the B2BUA to take back.
    pub recovered: Vec<CallState>,
    /// Static routes (`[[route]]`): next hops for users without bindings, or for every match.
    pub routes: StaticRoutes,
}

/// The service.
#[derive(Debug)]
pub struct Service {
    local: SocketAddr,
    echo: EchoUas,
    registrar: Registrar,
    auth: Option<DigestServer>,
    users: HashMap<String, UserRecord>,
    proxy: Proxy,
    store: Option<StoreWriter>,
    b2bua: Option<B2bua>,
    recovered: Vec<CallState>,
    routes: StaticRoutes,
    /// Wall-clock time at the latest input (registrar and nonces work in wall time).
    wall: Duration,
    last_now: Option<Instant>,
    stopping: bool,
    /// Server transactions the proxy forwarded, so a CANCEL reaches the proxy.
    proxied: HashMap<TransactionId, ()>,
}

/// How many entries each per-call table of the [`Service`] holds ([`Service::table_sizes`]; the
/// endpoint's are [`crate::endpoint::Endpoint::table_sizes`]): all are back to their idle sizes
/// once every call has ended and its timers have run (issue 13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Server transactions the proxy forwarded.
    pub proxied: usize,
    /// The proxy's contexts (forwarded requests in progress).
    pub proxy_contexts: usize,
    /// The proxy's client transactions.
    pub proxy_branches: usize,
    /// The echo user's tables.
    pub echo: crate::ua::echo::TableSizes,
    /// The B2BUA's tables (`None` in proxy mode).
    pub b2bua: Option<crate::b2bua::TableSizes>,
}

fn binding_record(b: &Binding) -> BindingRecord {
    BindingRecord {
        aor: b.aor.clone(),
        contact: b.contact.clone(),
        expires_at: b.expires_at,
        q_millis: b.q_millis,
        call_id: b.call_id.clone(),
        cseq: b.cseq,
        source: b.source.to_string(),
        updated_at: b.updated_at,
    }
}

/// A stored binding back in the registrar's form (`None` if its source address is unreadable).
pub fn binding_of(r: &BindingRecord) -> Option<Binding> {
    Some(Binding {
        aor: r.aor.clone(),
        contact: r.contact.clone(),
        expires_at: r.expires_at,
        q_millis: r.q_millis,
        call_id: r.call_id.clone(),
        cseq: r.cseq,
        source: r.source.parse().ok()?,
        updated_at: r.updated_at,
    })
}

impl Service {
    /// Assembles the service.
    pub fn new(parts: ServiceParts) -> Service {
        Service {
            local: parts.local,
            echo: parts.echo,
            registrar: parts.registrar,
            auth: parts.auth,
            users: parts.users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            proxy: parts.proxy,
            store: parts.store,
            b2bua: parts.b2bua,
            recovered: parts.recovered,
            routes: parts.routes,
            wall: Duration::ZERO,
            last_now: None,
            stopping: false,
            proxied: HashMap::default(),
        }
    }

    /// The sizes of the per-call tables (cheap: a few lengths).
    pub fn table_sizes(&self) -> TableSizes {
        let (proxy_contexts, proxy_branches) = self.proxy.table_sizes();
        TableSizes {
            proxied: self.proxied.len(),
            proxy_contexts,
            proxy_branches,
            echo: self.echo.table_sizes(),
            b2bua: self.b2bua.as_ref().map(B2bua::table_sizes),
        }
    }

    /// The registrar (for status views).
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The B2BUA's calls in progress (empty in proxy mode).
    pub fn live_calls(&self, now: Instant) -> Vec<LiveCall> {
        self.b2bua.as_ref().map(|b| b.live(now)).unwrap_or_default()
    }

    fn b2bua_knows(&self, msg: &Message) -> bool {
        self.b2bua.as_ref().is_some_and(|b| b.knows(msg))
    }

    fn b2bua_owns(&self, tx: TransactionId) -> bool {
        self.b2bua.as_ref().is_some_and(|b| b.owns(tx))
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
                Change::Put(b) => StoreOp::PutBinding(binding_record(&b)),
                Change::Remove { aor, contact } => StoreOp::RemoveBinding { aor, contact },
            };
            if let Err(e) = store.enqueue(op) {
                tracing::error!(error = %e, "store write failed");
            }
        }
    }

    /// Digest check (RFC 3261 §22): `Ok(user)` to go on (`None` when auth is off), `Err(answer)`.
    fn authenticate(&mut self, req: &Message, proxy: bool) -> Result<Option<String>, Message> {
        let Some(auth) = self.auth.as_mut() else { return Ok(None) };
        let users = &self.users;
        let verdict = auth.verify(req, proxy, self.wall, |user, alg| {
            users.get(user).map(|u| match alg {
                Algorithm::Md5 => u.ha1_md5.clone(),
                Algorithm::Sha256 => u.ha1_sha256.clone(),
            })
        });
        match verdict {
            Verdict::Authorized { user } => Ok(Some(user)),
            other => {
                tracing::debug!(verdict = ?other, "request not authorized");
                Err(auth
                    .answer(req, &other, proxy, self.wall, Some("sb-auth"))
                    .unwrap_or_else(|| req.response_to(403, "Forbidden", None).finish()))
            }
        }
    }

    fn is_echo(req: &Message) -> bool {
        matches!(req.request_uri(), Some(Uri::Sip(u)) if u.user == Some("echo"))
    }

    /// The bindings for the Request-URI's user: by AOR, else (with no domain configured) by user
    /// name under any host.
    fn targets_for(&self, req: &Message) -> Option<Vec<Target>> {
        let uri = req.request_uri()?;
        let aor = aor_of(&uri)?;
        let mut bindings = self.registrar.lookup(&aor);
        if bindings.is_empty() && self.registrar.config().domain.is_none() {
            let user = uri.as_sip().and_then(|u| u.user)?;
            let prefix = format!("sip:{user}@");
            let aors: Vec<String> = self.registrar.aors().filter(|a| a.starts_with(&prefix)).map(str::to_owned).collect();
            bindings = aors.iter().flat_map(|a| self.registrar.lookup(a)).collect();
        }
        let now = self.wall.as_secs();
        Some(bindings.into_iter().filter(|b| !b.is_expired(now)).map(|b| Target { uri: b.contact.clone(), dest: b.source }).collect())
    }

    fn on_request(&mut self, io: &mut Io<'_>, tx: TransactionId, request: Message, source: SocketAddr, now: Instant) {
        let method = request.method().cloned();
        let in_dialog = request.to().ok().is_some_and(|t| t.tag().is_some());
        // §16.3 step 4, for every request and every mode (issue 14 point 9): one that already
        // carries our Via went through us before, so it is a loop, answered 482 before it creates
        // any state.
        if proxy::is_loop(&request, self.local) {
            tracing::debug!(peer = %source, "request already carries our Via: 482");
            let _ = io.endpoint.respond(tx, request.response_to(482, "Loop Detected", Some("sb")).finish(), now);
            return;
        }
        match method {
            Some(Method::Register) => self.on_register(io.endpoint, tx, &request, source, now),
            _ if self.echo.knows(&request) => self.echo.handle_event(io, EndpointEvent::Request { tx, request, source }, now),
            _ if self.b2bua_knows(&request) => {
                if let Some(b) = self.b2bua.as_mut() {
                    b.handle_event(io, EndpointEvent::Request { tx, request, source }, now);
                }
            }
            _ if in_dialog && proxy::routed_through(&request, self.local) => self.forward_in_dialog(io.endpoint, tx, &request, now),
            _ if in_dialog => {
                let _ = io.endpoint.respond(tx, crate::dialog::reject_unknown(&request), now);
            }
            _ if Self::is_echo(&request) => self.echo.handle_event(io, EndpointEvent::Request { tx, request, source }, now),
            Some(Method::Invite) => self.on_invite(io, tx, request, source, now),
            // OPTIONS, MESSAGE, ... for a registered user go to its phones; OPTIONS for anyone else
            // is a keep-alive or capability query the service answers itself (§11.2).
            _ => match self.targets_for(&request).filter(|t| !t.is_empty()) {
                Some(targets) => {
                    self.proxied.insert(tx, ());
                    self.proxy.forward(io.endpoint, tx, &request, &targets, now);
                }
                None if method == Some(Method::Options) => self.echo.handle_event(io, EndpointEvent::Request { tx, request, source }, now),
                None => {
                    let _ = io.endpoint.respond(tx, request.response_to(404, "Not Found", Some("sb")).finish(), now);
                }
            },
        }
    }

    fn on_register(&mut self, ep: &mut Endpoint, tx: TransactionId, req: &Message, source: SocketAddr, now: Instant) {
        let user = match self.authenticate(req, false) {
            Ok(u) => u,
            Err(answer) => {
                let _ = ep.respond(tx, answer, now);
                return;
            }
        };
        let outcome = self.registrar.handle_register(req, source, user.as_deref(), self.wall);
        self.persist(outcome.changes);
        let _ = ep.respond(tx, outcome.response, now);
    }

    fn on_invite(&mut self, io: &mut Io<'_>, tx: TransactionId, request: Message, source: SocketAddr, now: Instant) {
        let (ep, req) = (&mut *io.endpoint, &request);
        if let Err(answer) = self.authenticate(req, true) {
            let _ = ep.respond(tx, answer, now);
            return;
        }
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
            let _ = ep.respond(tx, req.response_to(code, reason, Some("sb")).finish(), now);
            return;
        }
        match self.b2bua.as_mut() {
            Some(b) => b.start_call(io, tx, request, source, targets, now),
            None => {
                self.proxied.insert(tx, ());
                self.proxy.forward(ep, tx, req, &targets, now);
            }
        }
    }

    /// With auth off there is no user list: a user is known once any binding was seen for it.
    fn ever_registered(&self, req: &Message) -> bool {
        req.request_uri().and_then(|u| aor_of(&u)).is_some_and(|aor| self.registrar.aors().any(|a| a == aor))
    }

    /// An in-dialog request that came back through our Record-Route: forward it to its next hop.
    fn forward_in_dialog(&mut self, ep: &mut Endpoint, tx: TransactionId, req: &Message, now: Instant) {
        let routes: Vec<String> = req.routes().filter_map(Result::ok).map(|r| r.uri_text.to_owned()).collect();
        let uri = req.request_uri_str().unwrap_or_default().to_owned();
        let next = routes.get(1).map(String::as_str).unwrap_or(&uri);
        let dest = self.resolve(next);
        match dest {
            Some(dest) => {
                self.proxied.insert(tx, ());
                self.proxy.forward(ep, tx, req, &[Target { uri, dest }], now);
            }
            None => {
                let _ = ep.respond(tx, req.response_to(404, "Not Found", None).finish(), now);
            }
        }
    }

    /// The address of a URI: an IP literal, else a registered contact with that URI.
    fn resolve(&self, uri: &str) -> Option<SocketAddr> {
        let Ok(Uri::Sip(u)) = Uri::parse(uri) else { return None };
        if let Some(ip) = u.host.ip() {
            // A phone behind NAT: its contact is reached where its REGISTER came from.
            let by_contact = self.registrar.aors().flat_map(|a| self.registrar.lookup(a)).find(|b| b.contact == uri).map(|b| b.source);
            return by_contact.or(Some(SocketAddr::new(ip, u.port.unwrap_or(crate::transport::DEFAULT_PORT))));
        }
        None
    }

    fn after(&mut self, now: Instant) {
        self.last_now = Some(now);
    }
}

impl Application for Service {
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        self.wall = io.wall_clock;
        self.echo.start(io, now);
        let saved = std::mem::take(&mut self.recovered);
        if let Some(b) = self.b2bua.as_mut() {
            if !saved.is_empty() {
                let n = b.restore(io, &saved, now);
                tracing::info!(recovered = n, saved = saved.len(), "calls taken back after a restart");
            }
        }
        self.write_calls();
    }

    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.wall = io.wall_clock;
        self.after(now);
        match event {
            EndpointEvent::Request { tx, request, source } => self.on_request(io, tx, request, source, now),
            EndpointEvent::Response { tx, response } if self.proxy.owns(tx) => self.proxy.handle_response(io.endpoint, tx, &response, now),
            EndpointEvent::Timeout { tx } if self.proxy.owns(tx) => self.proxy.handle_branch_timeout(io.endpoint, tx, now),
            EndpointEvent::Response { tx, .. } | EndpointEvent::Timeout { tx } if self.b2bua_owns(tx) => {
                if let Some(b) = self.b2bua.as_mut() {
                    b.handle_event(io, event, now);
                }
            }
            EndpointEvent::Terminated { tx } => {
                self.proxy.handle_terminated(tx);
                self.proxied.remove(&tx);
                if self.b2bua_owns(tx) {
                    if let Some(b) = self.b2bua.as_mut() {
                        b.handle_event(io, EndpointEvent::Terminated { tx }, now);
                    }
                }
                self.echo.handle_event(io, EndpointEvent::Terminated { tx }, now);
            }
            EndpointEvent::Cancelled { tx, cancel } => {
                if self.proxied.remove(&tx).is_some() {
                    self.proxy.handle_cancelled(io.endpoint, tx, now);
                } else if self.b2bua_owns(tx) {
                    if let Some(b) = self.b2bua.as_mut() {
                        b.handle_event(io, EndpointEvent::Cancelled { tx, cancel }, now);
                    }
                } else {
                    self.echo.handle_event(io, EndpointEvent::Cancelled { tx, cancel }, now);
                }
            }
            EndpointEvent::Ack { request, source } => {
                if self.echo.knows(&request) {
                    self.echo.handle_event(io, EndpointEvent::Ack { request, source }, now);
                } else if let Some(b) = self.b2bua.as_mut().filter(|b| b.knows(&request)) {
                    b.handle_event(io, EndpointEvent::Ack { request, source }, now);
                } else if proxy::is_loop(&request, self.local) {
                    // It went through us before: relaying it again would loop (issue 14 point 9).
                    tracing::debug!(peer = %source, "ACK carrying our Via dropped");
                } else {
                    // §16.11: an ACK for a 2xx follows the Route set; ours comes off first.
                    let routes: Vec<String> = request.routes().filter_map(Result::ok).map(|r| r.uri_text.to_owned()).collect();
                    let skip = usize::from(routes.first().is_some_and(|r| proxy::forward::is_us(r, self.local)));
                    let next = routes.get(skip).cloned().or_else(|| request.request_uri_str().map(str::to_owned));
                    match next.and_then(|n| self.resolve(&n)) {
                        Some(dest) => self.proxy.relay_ack(io.endpoint, &request, dest),
                        None => tracing::debug!(peer = %source, "ACK with no next hop dropped"),
                    }
                }
            }
            EndpointEvent::StrayResponse { response, source } => {
                if self.echo.knows(&response) {
                    self.echo.handle_event(io, EndpointEvent::StrayResponse { response, source }, now);
                } else if let Some(b) = self.b2bua.as_mut().filter(|b| b.knows(&response)) {
                    b.handle_event(io, EndpointEvent::StrayResponse { response, source }, now);
                } else {
                    self.proxy.relay_stray(io.endpoint, &response);
                }
            }
            other => self.echo.handle_event(io, other, now),
        }
        self.write_calls();
    }

    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: SocketAddr, payload: Bytes, now: Instant) {
        self.after(now);
        if self.b2bua.as_mut().is_some_and(|b| b.handle_media(io, flow, source, &payload, now)) {
            return;
        }
        self.echo.handle_media(io, flow, source, payload, now);
    }

    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.wall = io.wall_clock;
        self.after(now);
        self.proxy.handle_timeout(io.endpoint, now);
        if self.registrar.next_expiry().is_some_and(|t| t <= self.wall.as_secs()) {
            let changes = self.registrar.purge(self.wall);
            self.persist(changes);
        }
        self.echo.handle_timeout(io, now);
        if let Some(b) = self.b2bua.as_mut() {
            b.handle_timeout(io, now);
        }
        self.write_calls();
    }

    fn poll_timeout(&self) -> Option<Instant> {
        // The registrar's purge runs in wall time; check it once a second at most.
        let purge = self.registrar.next_expiry().and(self.last_now.map(|n| n + Duration::from_secs(1)));
        let b2bua = self.b2bua.as_ref().and_then(B2bua::poll_timeout);
        [self.echo.poll_timeout(), self.proxy.poll_timeout(), purge, b2bua].into_iter().flatten().min()
    }

    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.stopping = true;
        self.echo.shutdown(io, now);
        if let Some(store) = &self.store {
            if let Err(e) = store.flush() {
                tracing::error!(error = %e, "store flush at shutdown failed");
            }
        }
    }

    fn is_done(&self) -> bool {
        self.stopping && self.echo.is_done()
    }
}
