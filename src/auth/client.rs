//! The client side: pick a challenge from a 401 / 407 and answer it (RFC 3261 §22.2-§22.3,
//! RFC 7616 §3.4, RFC 8760 §2.4).

use super::digest::{ha1, quote, response, Algorithm, AlgorithmError, Qop};
use crate::message::{AuthHeader, HeaderName, Message};
use std::borrow::Cow;
use std::fmt;

/// Why a challenge could not be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The response carries no challenge this client can answer (no Digest challenge, or only
    /// unsupported algorithms or qop values).
    NoChallenge,
    /// The scheme is not `Digest`.
    NotDigest,
    /// The challenge lacks a required parameter (`realm` or `nonce`); the name is given.
    Missing(&'static str),
    /// The challenge's `algorithm` is not supported.
    Algorithm(AlgorithmError),
    /// The challenge offers `qop` values, none of them `auth`.
    Qop,
    /// The server challenged again, without `stale=true`, a request that carried credentials for
    /// that realm: the user name or password is wrong (stop rather than loop, RFC 3261 §22.2).
    Rejected,
    /// The challenge names another realm than the one this client was limited to
    /// ([`DigestClient::only_realm`]): the credentials are not for that server (RFC 3261 §22.1).
    Realm,
}

/// One Digest challenge (WWW-Authenticate / Proxy-Authenticate), unquoted (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`.
    pub nonce: Cow<'a, str>,
    /// `opaque`, to echo back.
    pub opaque: Option<Cow<'a, str>>,
    /// `algorithm`; `MD5` when absent.
    pub algorithm: Algorithm,
    /// `Some(Qop::Auth)` when the server offers `auth`; `None` when it offers no qop (RFC 2069).
    pub qop: Option<Qop>,
    /// `stale=true`: the last credentials were right but their nonce was not; retry without asking
    /// the user.
    pub stale: bool,
}

// ===== impl Challenge =====

impl<'a> Challenge<'a> {
    /// Reads a Digest challenge, refusing what this stack cannot answer.
    pub fn parse(h: &AuthHeader<'a>) -> Result<Challenge<'a>, ClientError> {
        if !h.is_digest() {
            return Err(ClientError::NotDigest);
        }
        let algorithm = match h.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => a.parse().map_err(ClientError::Algorithm)?,
        };
        // `qop-options = "qop" EQUAL LDQUOT qop-value *("," qop-value) RDQUOT`.
        let qop = match h.get("qop") {
            None => None,
            Some(list) if list.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")) => Some(Qop::Auth),
            Some(_) => return Err(ClientError::Qop),
        };
        Ok(Challenge {
            realm: h.get("realm").ok_or(ClientError::Missing("realm"))?,
            nonce: h.get("nonce").ok_or(ClientError::Missing("nonce"))?,
            opaque: h.get("opaque"),
            algorithm,
            qop,
            stale: is_stale(h),
        })
    }

    /// An owned copy, to keep across messages.
    pub fn into_owned(self) -> Challenge<'static> {
        Challenge {
            realm: Cow::Owned(self.realm.into_owned()),
            nonce: Cow::Owned(self.nonce.into_owned()),
            opaque: self.opaque.map(|o| Cow::Owned(o.into_owned())),
            algorithm: self.algorithm,
            qop: self.qop,
            stale: self.stale,
        }
    }

    /// The credentials header value answering this challenge with an HA1 computed beforehand.
    /// `nc` is the count of requests sent with this nonce, this one included (1 for the first).
    pub fn authorization_with_ha1(&self, user: &str, ha1: &str, method: &str, uri: &str, cnonce: &str, nc: u32) -> String {
        let nc_text = format!("{nc:08x}");
        let resp = response(self.algorithm, ha1, &self.nonce, &nc_text, cnonce, self.qop, method, uri);
        let mut v = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response=\"{resp}\", algorithm={}",
            quote(user),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            self.algorithm
        );
        if let Some(opaque) = &self.opaque {
            v.push_str(", opaque=");
            v.push_str(&quote(opaque));
        }
        if let Some(q) = self.qop {
            v.push_str(&format!(", qop={}, nc={nc_text}, cnonce={}", q.token(), quote(cnonce)));
        }
        v
    }
}

// ===== functions =====

/// The Authorization (or Proxy-Authorization) value answering `challenge` for a request `method`
/// to `uri` (RFC 3261 §22.4, RFC 7616 §3.4): the challenge's algorithm, `qop=auth` when offered
/// (else the RFC 2069 form), `cnonce` as given (draw it from an RNG), and `nc` formatted as 8 hex
/// digits. Use [`best_challenge`] to choose among several challenges.
pub fn authorize(
    challenge: &AuthHeader<'_>,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, ClientError> {
    let c = Challenge::parse(challenge)?;
    let ha1 = ha1(c.algorithm, user, &c.realm, password);
    Ok(c.authorization_with_ha1(user, &ha1, method, uri, cnonce, nc))
}

/// The best challenge of a 401 (WWW-Authenticate) or 407 (Proxy-Authenticate) that this client can
/// answer: SHA-256 before MD5 (RFC 8760 §2.4), then in header order. Unreadable headers, other
/// schemes, `-sess` and unknown algorithms, and qop lists without `auth` are skipped.
pub fn best_challenge(resp: &Message) -> Result<Challenge<'_>, ClientError> {
    let name = if resp.status() == Some(407) { HeaderName::ProxyAuthenticate } else { HeaderName::WwwAuthenticate };
    let mut best: Option<Challenge<'_>> = None;
    for c in resp.auth_headers(name).filter_map(Result::ok).filter_map(|h| Challenge::parse(&h).ok()) {
        if c.algorithm == Algorithm::Sha256 {
            return Ok(c);
        }
        best = best.or(Some(c));
    }
    best.ok_or(ClientError::NoChallenge)
}

/// Whether a challenge says `stale=true` (RFC 7616 §3.3): the credentials were right but the nonce
/// was not, so retry with the new nonce without asking the user again.
pub fn is_stale(challenge: &AuthHeader<'_>) -> bool {
    challenge.get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// The credentials header answering a challenge header: Authorization for WWW-Authenticate,
/// Proxy-Authorization for Proxy-Authenticate (RFC 3261 §22.2, §22.3).
pub fn credentials_header(challenge: HeaderName) -> HeaderName {
    if challenge == HeaderName::ProxyAuthenticate {
        HeaderName::ProxyAuthorization
    } else {
        HeaderName::Authorization
    }
}

/// A user agent's digest state for one server: the current challenge and its nonce-count.
///
/// Use: on a 401 / 407, call [`DigestClient::handle_challenge`] and, if it succeeds, resend the
/// request (new CSeq, RFC 3261 §22.2) with the header from [`DigestClient::authorization`]. Later
/// requests may call `authorization` again: the nonce is reused with the next `nc` until the server
/// answers `stale=true`.
#[derive(Clone)]
pub struct DigestClient {
    user: String,
    password: String,
    current: Option<Current>,
    /// Answer only challenges of this realm.
    realm: Option<String>,
}

#[derive(Clone)]
struct Current {
    challenge: Challenge<'static>,
    header: HeaderName,
    ha1: String,
    nc: u32,
}

impl fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password and HA1 stay out of logs.
        f.debug_struct("DigestClient")
            .field("user", &self.user)
            .field("challenge", &self.current.as_ref().map(|c| &c.challenge))
            .field("nc", &self.current.as_ref().map(|c| c.nc))
            .finish_non_exhaustive()
    }
}

// ===== impl DigestClient =====

impl DigestClient {
    /// A client that answers challenges as `user` with `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> DigestClient {
        DigestClient { user: user.into(), password: password.into(), current: None, realm: None }
    }

    /// Answers only challenges of `realm`; others fail with [`ClientError::Realm`] (a phone that
    /// knows its service's realm never hands a response to anyone else who challenges it).
    pub fn only_realm(mut self, realm: impl Into<String>) -> DigestClient {
        self.realm = Some(realm.into());
        self
    }

    /// Takes the best challenge of `resp`, a 401 / 407 to `req` ([`best_challenge`]). Fails with
    /// [`ClientError::Rejected`] when `req` already carried credentials for that realm and the
    /// challenge lacks `stale=true`: the user name or password is wrong, and retrying would loop.
    pub fn handle_challenge(&mut self, req: &Message, resp: &Message) -> Result<(), ClientError> {
        let c = best_challenge(resp)?;
        if self.realm.as_deref().is_some_and(|r| r != &*c.realm) {
            return Err(ClientError::Realm);
        }
        let challenge_name = if resp.status() == Some(407) { HeaderName::ProxyAuthenticate } else { HeaderName::WwwAuthenticate };
        let header = credentials_header(challenge_name);
        let sent = req.auth_headers(header).filter_map(Result::ok).any(|h| h.is_digest() && h.get("realm").as_deref() == Some(&*c.realm));
        if sent && !c.stale {
            return Err(ClientError::Rejected);
        }
        let ha1 = ha1(c.algorithm, &self.user, &c.realm, &self.password);
        self.current = Some(Current { challenge: c.into_owned(), header, ha1, nc: 0 });
        Ok(())
    }

    /// The credentials header for a request `method` to `uri`, with the next nonce-count, or `None`
    /// before any challenge. `cnonce` should be fresh and random for each call.
    pub fn authorization(&mut self, method: &str, uri: &str, cnonce: &str) -> Option<(HeaderName, String)> {
        let cur = self.current.as_mut()?;
        cur.nc = cur.nc.wrapping_add(1).max(1);
        Some((cur.header, cur.challenge.authorization_with_ha1(&self.user, &cur.ha1, method, uri, cnonce, cur.nc)))
    }

    /// The challenge being answered, if any.
    pub fn challenge(&self) -> Option<&Challenge<'static>> {
        self.current.as_ref().map(|c| &c.challenge)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NoChallenge => f.write_str("no digest challenge this client can answer"),
            ClientError::NotDigest => f.write_str("not a Digest challenge"),
            ClientError::Missing(name) => write!(f, "challenge parameter `{name}` missing"),
            ClientError::Algorithm(e) => e.fmt(f),
            ClientError::Qop => f.write_str("challenge offers no qop=auth"),
            ClientError::Rejected => f.write_str("credentials rejected"),
            ClientError::Realm => f.write_str("challenged for another realm than --realm"),
        }
    }
}

impl std::error::Error for ClientError {}
