//! The server side: challenges and the check of credentials (RFC 3261 §22.2-§22.4, RFC 7616 §3.3,
//! RFC 8760 §2.4).

use super::credentials::{Credentials, Fields};
use super::digest::{ct_eq_ignore_case, ha2, quote, response_with_ha2, Algorithm};
use super::nonce::{CountCheck, NonceCheck, NonceCounts, NonceKey};
use crate::message::{unquote, AuthHeader, HeaderName, Message, Uri};
use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a nonce stays good by default: five minutes, then the client is told `stale=true`.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// How many nonce-count entries are kept at most by default (see [`DigestServer::set_max_nonces`]).
pub const DEFAULT_MAX_NONCES: usize = 65_536;

/// What [`DigestServer::verify`] decided about a request, and so what to answer
/// ([`DigestServer::answer`] builds that answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are good: go on with the request.
    Authorized {
        /// The authenticated user name (the digest `username`).
        user: String,
    },
    /// No credentials for our realm (none at all, another realm, or another scheme, RFC 4475
    /// §3.3.7): answer 401 / 407 with a challenge (RFC 3261 §22.2, §22.3).
    Missing,
    /// The digest was right but the nonce is expired, unknown to this secret, or no longer tracked:
    /// answer a fresh challenge with `stale=true`, and the client retries without asking its user
    /// (RFC 7616 §3.3).
    Stale,
    /// Unknown user or wrong response: answer 403 Forbidden (RFC 3261 §22.2 allows 403 or a new
    /// challenge; 403 stops a client from looping on a bad password).
    Wrong,
    /// The digest was right but its `(nonce, nc)` pair was seen before, or `nc` did not increase
    /// (RFC 7616 §3.4, §5.5): refuse the request.
    Replay,
    /// Credentials for our realm that cannot be read, a `-sess` or unknown algorithm, or a digest
    /// `uri` that is not the Request-URI: answer 400 (RFC 2617 §3.2.2.5).
    Malformed,
}

/// See [`DigestServer`]'s `last_ha2`.
#[derive(Debug, Clone)]
struct LastHa2 {
    alg: Algorithm,
    method: String,
    uri: String,
    ha2: String,
}

/// Digest authentication for one realm, as a UAS or registrar (`proxy = false`: WWW-Authenticate /
/// Authorization, 401) or as a proxy (`proxy = true`: Proxy-Authenticate / Proxy-Authorization, 407).
///
/// Sans-IO: the caller passes `now` (wall-clock time since the Unix epoch) to every call. Nonces
/// carry their issue time and a MAC keyed with `secret`, so a restart with the same secret keeps
/// outstanding challenges valid; only the replay table (highest `nc` per nonce) lives in memory.
///
/// Use: for each request that needs authentication (never CANCEL or ACK, RFC 3261 §22.1), call
/// [`DigestServer::verify`]; on anything but [`Verdict::Authorized`], send what
/// [`DigestServer::answer`] returns. Call [`DigestServer::purge`] now and then, or rely on `verify`,
/// which purges once per lifetime.
#[derive(Debug)]
pub struct DigestServer {
    realm: String,
    key: NonceKey,
    opaque: String,
    lifetime: Duration,
    /// Shared by the workers of `serve --workers N` ([`DigestServer::sibling`]): a replayed `nc`
    /// is refused whichever worker the replay lands on.
    counts: Arc<Mutex<NonceCounts>>,
    exact_uri: bool,
    last_purge_secs: u64,
    /// Algorithms challenged with, in order (default: SHA-256 then MD5).
    algorithms: Vec<Algorithm>,
    /// The last `HA2 = H(method ":" uri)` computed, with its inputs: a registrar's REGISTERs all
    /// sign the same method and Request-URI, so most checks reuse it (issue 16).
    last_ha2: Option<LastHa2>,
    /// The fixed start of every challenge, `Digest realm="...", qop="auth", nonce="`, written once
    /// (issue 16: formatting it for every 401 was a tenth of the challenge's cost).
    challenge_head: String,
}

// ===== impl DigestServer =====

impl DigestServer {
    /// A server for `realm`. `secret` keys the nonce MAC: keep it secret and the same across restarts
    /// (draw it once from a CSPRNG and store it). `lifetime` is how long a nonce is accepted
    /// ([`DEFAULT_NONCE_LIFETIME`] is a good value).
    pub fn new(realm: impl Into<String>, secret: [u8; 32], lifetime: Duration) -> DigestServer {
        let realm = realm.into();
        let key = NonceKey::new(&secret, &realm);
        let opaque = key.opaque();
        DigestServer {
            key,
            opaque,
            lifetime,
            counts: Arc::new(Mutex::new(NonceCounts::new(DEFAULT_MAX_NONCES))),
            exact_uri: true,
            last_purge_secs: 0,
            algorithms: Algorithm::PREFERENCE.to_vec(),
            last_ha2: None,
            challenge_head: format!("Digest realm={}, qop=\"auth\", nonce=\"", quote(&realm)),
            realm,
        }
    }

    /// A server for another worker of the same service (issue 16 point 1): same realm, secret,
    /// lifetime and algorithms, the **same** replay table (one lock, taken only for credentials
    /// whose digest was right), and its own nonce counter started at `index << 24`, so two workers
    /// never mint the same nonce in the same nanosecond.
    pub fn sibling(&self, index: u32) -> DigestServer {
        DigestServer {
            realm: self.realm.clone(),
            key: self.key.with_counter(index << 24),
            opaque: self.opaque.clone(),
            lifetime: self.lifetime,
            counts: Arc::clone(&self.counts),
            exact_uri: self.exact_uri,
            last_purge_secs: self.last_purge_secs,
            algorithms: self.algorithms.clone(),
            last_ha2: None,
            challenge_head: self.challenge_head.clone(),
        }
    }

    fn counts(&self) -> MutexGuard<'_, NonceCounts> {
        // A worker that panicked holding the lock left the table consistent (every call returns).
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets which algorithms challenges offer, in order. Some clients (sipp 3.6, baresip 1.0) give
    /// up on any challenge that is not MD5, so an operator may offer MD5 alone. An empty list is
    /// ignored. Credentials in any supported algorithm are still checked.
    pub fn set_algorithms(&mut self, algorithms: &[Algorithm]) {
        if !algorithms.is_empty() {
            self.algorithms = algorithms.to_vec();
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Whether the digest `uri` must equal the Request-URI byte for byte (the default), or only
    /// parse as a URI. Relax it for a UAS behind proxies that retarget the Request-URI; the digest
    /// still covers the `uri` the client signed.
    pub fn set_exact_uri(&mut self, exact: bool) {
        self.exact_uri = exact;
    }

    /// Caps the replay table at `max` nonces (at least 1). When it is full and nothing has expired,
    /// the oldest nonces are dropped and answered [`Verdict::Stale`] from then on.
    pub fn set_max_nonces(&mut self, max: usize) {
        self.counts = Arc::new(Mutex::new(NonceCounts::new(max)));
    }

    /// A fresh nonce issued at `now`.
    pub fn new_nonce(&mut self, now: Duration) -> String {
        self.key.mint(now)
    }

    /// Whether `nonce` was issued by this server (same secret and realm) and is still within its
    /// lifetime at `now`.
    pub fn check_nonce(&self, nonce: &str, now: Duration) -> NonceCheck {
        self.key.check(nonce, now, self.lifetime).0
    }

    /// The challenge headers for a 401 (`proxy = false`, WWW-Authenticate) or 407 (`proxy = true`,
    /// Proxy-Authenticate): one per algorithm, SHA-256 first (RFC 8760 §2.4), sharing one fresh
    /// nonce, each with `realm`, `qop="auth"`, `nonce`, `opaque` and `algorithm`, plus `stale=true`
    /// when `stale` (RFC 7616 §3.3).
    pub fn challenge(&mut self, now: Duration, stale: bool, proxy: bool) -> Vec<(HeaderName, String)> {
        let name = if proxy { HeaderName::ProxyAuthenticate } else { HeaderName::WwwAuthenticate };
        let nonce = self.new_nonce(now);
        self.algorithms
            .iter()
            .map(|alg| {
                // `Digest realm=R, qop="auth", nonce="N", opaque="O", algorithm=A`, written piece by piece.
                let alg = alg.token();
                let mut v = String::with_capacity(self.challenge_head.len() + nonce.len() + self.opaque.len() + alg.len() + 40);
                v.push_str(&self.challenge_head);
                v.push_str(&nonce);
                v.push_str("\", opaque=\"");
                v.push_str(&self.opaque);
                v.push_str("\", algorithm=");
                v.push_str(alg);
                if stale {
                    v.push_str(", stale=true");
                }
                (name, v)
            })
            .collect()
    }

    /// Checks the credentials of `req` for this realm (RFC 3261 §22.4, RFC 7616 §3.4):
    /// Authorization when `proxy` is false, Proxy-Authorization when true. `lookup(user, algorithm)`
    /// returns the user's HA1 for that algorithm (see [`crate::auth::UserRecord`]), or `None` for an
    /// unknown user. Records the `nc` of accepted credentials, so the same credentials pass once.
    pub fn verify(&mut self, req: &Message, proxy: bool, now: Duration, lookup: impl Fn(&str, Algorithm) -> Option<String>) -> Verdict {
        let read = self.read_credentials(req, proxy);
        self.verify_read(read, req, now, lookup)
    }

    /// The request's credentials for this realm, read once: for [`ReadCredentials::user`] (the
    /// failure limits ask who claims to be calling before the check) and then
    /// [`DigestServer::verify_read`], which is [`DigestServer::verify`] without reading them again.
    pub fn read_credentials<'m>(&self, req: &'m Message, proxy: bool) -> ReadCredentials<'m> {
        ReadCredentials(self.find_credentials(req, proxy))
    }

    /// [`DigestServer::verify`] of credentials [`DigestServer::read_credentials`] read from `req`.
    pub fn verify_read(
        &mut self,
        read: ReadCredentials<'_>,
        req: &Message,
        now: Duration,
        lookup: impl Fn(&str, Algorithm) -> Option<String>,
    ) -> Verdict {
        if now.as_secs().saturating_sub(self.last_purge_secs) >= self.lifetime.as_secs() {
            self.purge(now);
        }
        let creds = match read.0 {
            Ok(Some(c)) => c,
            Ok(None) => return Verdict::Missing,
            Err(Unreadable) => return Verdict::Malformed,
        };
        let (Some(method), Some(request_uri)) = (req.method(), req.request_uri_str()) else {
            return Verdict::Malformed;
        };
        if Uri::parse(&creds.uri).is_err() || (self.exact_uri && creds.uri != request_uri) {
            return Verdict::Malformed;
        }
        // An unknown user costs the same hash as a known one, so timing does not tell them apart.
        let known = lookup(&creds.username, creds.algorithm);
        let ha1 = match &known {
            Some(ha1) => Cow::Borrowed(ha1.as_str()),
            None => Cow::Owned(super::digest::ha1(creds.algorithm, &creds.username, &self.realm, "")),
        };
        let (nc_text, cnonce, qop) = match &creds.qop {
            Some(q) => (q.nc_text.as_ref(), q.cnonce.as_ref(), Some(q.qop)),
            None => ("", "", None),
        };
        let ha2 = self.ha2(creds.algorithm, method.as_str(), &creds.uri);
        let expected = response_with_ha2(creds.algorithm, &ha1, &creds.nonce, nc_text, cnonce, qop, ha2);
        if known.is_none() || !ct_eq_ignore_case(expected.as_bytes(), creds.response.as_bytes()) {
            return Verdict::Wrong;
        }
        // The client knows the password: a bad nonce is now only stale (RFC 7616 §3.3 `stale`).
        let (NonceCheck::Valid { .. }, Some(id)) = self.key.check(&creds.nonce, now, self.lifetime) else {
            return Verdict::Stale;
        };
        // Without qop there is no nc: such a nonce is good for one request.
        let nc = creds.qop.as_ref().map_or(1, |q| q.nc);
        let check = self.counts().record(id, nc, now, self.lifetime);
        match check {
            CountCheck::Fresh => Verdict::Authorized { user: creds.username.into_owned() },
            CountCheck::Replay => Verdict::Replay,
            CountCheck::Evicted => Verdict::Stale,
        }
    }

    /// The nonce and nonce-count of `req`'s credentials for this realm (a request without `qop`
    /// counts as `nc = 1`), and when that nonce lapses (Unix seconds at the latest, from `now`):
    /// what a shared store claims so that a count used on one instance is a replay on all
    /// (issue 17 point 1; RFC 7616 §3.4).
    pub fn nonce_use(&self, req: &Message, proxy: bool, now: Duration) -> Option<(String, u32, u64)> {
        let creds = self.find_credentials(req, proxy).ok()??;
        let nc = creds.qop.as_ref().map_or(1, |q| q.nc);
        Some((creds.nonce.to_string(), nc, (now + self.lifetime).as_secs() + 1))
    }

    /// `H(method ":" uri)`, from `last_ha2` when its inputs are the same.
    fn ha2(&mut self, alg: Algorithm, method: &str, uri: &str) -> &str {
        let same = self.last_ha2.as_ref().is_some_and(|l| l.alg == alg && l.method == method && l.uri == uri);
        if !same {
            self.last_ha2 = Some(LastHa2 { alg, method: method.to_owned(), uri: uri.to_owned(), ha2: ha2(alg, method, uri) });
        }
        // Invariant: set just above when it was not already.
        &self.last_ha2.as_ref().expect("just set").ha2
    }

    /// The response to send for `verdict` (`None` for [`Verdict::Authorized`]): 401 / 407 with a
    /// challenge for `Missing`; a challenge with `stale=true` for `Stale` and `Replay` (the digest was
    /// right, so `stale` is truthful, and an honest client whose count went wrong recovers; the
    /// replayed request is refused all the same); 403 for `Wrong`; 400 for `Malformed`.
    pub fn answer(&mut self, req: &Message, verdict: &Verdict, proxy: bool, now: Duration, to_tag: Option<&str>) -> Option<Message> {
        let (code, reason) = match verdict {
            Verdict::Authorized { .. } => return None,
            Verdict::Wrong => return Some(req.response_to(403, "Forbidden", to_tag).finish()),
            Verdict::Malformed => return Some(req.response_to(400, "Bad Request", to_tag).finish()),
            Verdict::Missing | Verdict::Stale | Verdict::Replay if proxy => (407, "Proxy Authentication Required"),
            Verdict::Missing | Verdict::Stale | Verdict::Replay => (401, "Unauthorized"),
        };
        let stale = !matches!(verdict, Verdict::Missing);
        let mut b = req.response_to(code, reason, to_tag);
        for (name, value) in self.challenge(now, stale, proxy) {
            b.push(name, value);
        }
        Some(b.finish())
    }

    /// Forgets the replay state of nonces past their lifetime at `now` (they are refused as stale
    /// anyway). `verify` calls it once per lifetime; call it from a timer to free memory sooner.
    pub fn purge(&mut self, now: Duration) {
        self.counts().purge(now, self.lifetime);
        self.last_purge_secs = now.as_secs();
    }

    /// The `username` of the request's credentials for our realm, if it has readable ones (for
    /// logs and failure limits; it proves nothing).
    pub fn credentials_user(&self, req: &Message, proxy: bool) -> Option<String> {
        self.find_credentials(req, proxy).ok().flatten().map(|c| c.username.into_owned())
    }

    /// How many nonces the replay table holds (for metrics and tests).
    pub fn tracked_nonces(&self) -> usize {
        self.counts().len()
    }

    /// The first Digest credentials for our realm. RFC 3261 §22.3: a server looks only at
    /// credentials whose realm is its own; others (for another hop) and other schemes are ignored.
    /// `Ok(None)` when there are none; `Err` when ours cannot be read, or when there are none but a
    /// line that could not be read (it may have been ours).
    fn find_credentials<'m>(&self, req: &'m Message, proxy: bool) -> Result<Option<Credentials<'m>>, Unreadable> {
        let name = if proxy { HeaderName::ProxyAuthorization } else { HeaderName::Authorization };
        let mut unreadable = false;
        for value in req.auth_values(name) {
            // One pass over the list both checks it and picks the fields (issue 16: reading
            // each field by name walked the list a dozen times per request).
            let mut fields = Fields::default();
            let Ok(h) = value.map_err(drop).and_then(|v| AuthHeader::parse_each(v, |n, v| fields.take(n, v)).map_err(drop)) else {
                unreadable = true;
                continue;
            };
            if !h.is_digest() {
                continue;
            }
            match fields.realm.map(unquote) {
                Some(r) if r == self.realm => {}
                Some(_) => continue,
                None => {
                    unreadable = true;
                    continue;
                }
            }
            return Credentials::from_fields(&fields).map(Some).map_err(|_| Unreadable);
        }
        if unreadable {
            Err(Unreadable)
        } else {
            Ok(None)
        }
    }
}

/// Credentials that may be ours could not be read (see [`DigestServer::find_credentials`]).
#[derive(Debug)]
struct Unreadable;

/// A request's credentials for a [`DigestServer`]'s realm, read by
/// [`DigestServer::read_credentials`]: none, unreadable, or these.
#[derive(Debug)]
pub struct ReadCredentials<'m>(Result<Option<Credentials<'m>>, Unreadable>);

impl ReadCredentials<'_> {
    /// The claimed `username`, if the credentials could be read (for logs and failure limits; it
    /// proves nothing): what [`DigestServer::credentials_user`] returns.
    pub fn user(&self) -> Option<String> {
        self.0.as_ref().ok().and_then(Option::as_ref).map(|c| c.username.clone().into_owned())
    }
}
