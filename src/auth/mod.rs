//! SIP digest authentication (RFC 3261 §22, with the RFC 7616 algorithms as RFC 8760 brings them to
//! SIP): `MD5` and `SHA-256`, `qop=auth` and the RFC 2069 no-qop form. Sans-IO: no clock reads, no
//! I/O; the wall-clock time comes in as `now` (a [`Duration`](std::time::Duration) since the Unix
//! epoch), so nonces stay valid across a restart.
//!
//! ```text
//!   UAC                                   UAS / registrar (DigestServer)
//!    | REGISTER (no credentials) -------->  verify -> Missing
//!    | <-- 401, WWW-Authenticate x2 -----  answer: challenge(SHA-256, MD5), one nonce
//!    | best_challenge + authorize          (DigestClient does both)
//!    | REGISTER, Authorization ---------->  verify -> Authorized { user }
//! ```
//!
//! - [`DigestServer`] issues challenges and checks credentials. Its nonces hold their issue time and a
//!   MAC under a server secret, so they need no storage and cannot be forged; only the highest
//!   nonce-count per live nonce is kept, to refuse replays.
//! - [`authorize`], [`best_challenge`] and [`DigestClient`] answer challenges.
//! - [`UserRecord`] stores a user as HA1 values, never the password.
//! - [`ha1`] and [`response`] are the RFC 7616 §3.4 formulas.

mod client;
mod credentials;
mod digest;
mod nonce;
mod server;

pub use client::{authorize, best_challenge, credentials_header, is_stale, Challenge, ClientError, DigestClient};
pub use credentials::{Credentials, CredentialsError, QopParams};
pub use digest::{ha1, response, Algorithm, AlgorithmError, Qop};
pub use nonce::NonceCheck;
pub use server::{DigestServer, ReadCredentials, Verdict, DEFAULT_MAX_NONCES, DEFAULT_NONCE_LIFETIME};

/// A user as a registrar stores it: the HA1 for each algorithm (RFC 7616 §3.4.2), so the password
/// itself is never kept. Changing the realm means asking users for their passwords again.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user name, as the client sends it in `username`.
    pub name: String,
    /// The realm the HA1 values were computed for.
    pub realm: String,
    /// `MD5(name ":" realm ":" password)`, lowercase hex.
    pub ha1_md5: String,
    /// `SHA-256(name ":" realm ":" password)`, lowercase hex.
    pub ha1_sha256: String,
}

// ===== impl UserRecord =====

impl UserRecord {
    /// Computes both HA1 values from the password, which is then dropped by the caller.
    pub fn new(name: impl Into<String>, realm: impl Into<String>, password: &str) -> UserRecord {
        let (name, realm) = (name.into(), realm.into());
        let ha1_md5 = ha1(Algorithm::Md5, &name, &realm, password);
        let ha1_sha256 = ha1(Algorithm::Sha256, &name, &realm, password);
        UserRecord { name, realm, ha1_md5, ha1_sha256 }
    }

    /// The HA1 for `alg`: what a [`DigestServer::verify`] lookup returns for this user.
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An HA1 is password-equivalent for its realm: keep it out of logs.
        f.debug_struct("UserRecord").field("name", &self.name).field("realm", &self.realm).finish_non_exhaustive()
    }
}
