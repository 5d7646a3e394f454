//! Registration of a user agent with a registrar (RFC 3261 §10.2), sans-IO: REGISTER with digest
//! credentials on a 401 (§22.2), refresh before the binding expires, and removal (`Expires: 0`) on
//! the way out.

use crate::auth::DigestClient;
use crate::endpoint::Endpoint;
use crate::message::{HeaderName, Message, Method};
use crate::transaction::TransactionId;
use crate::transport::via_value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Where and as whom to register.
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// The registrar's URI, e.g. `sip:127.0.0.1:5060` (the Request-URI).
    pub registrar_uri: String,
    /// The registrar's address.
    pub registrar: SocketAddr,
    /// Our address-of-record, e.g. `sip:alice@127.0.0.1`.
    pub aor: String,
    /// Our contact URI.
    pub contact: String,
    /// Requested lifetime in seconds.
    pub expires: u32,
    /// Our SIP address (Via).
    pub local: SocketAddr,
    /// Answer only digest challenges of this realm (`None`: any).
    pub realm: Option<String>,
}

/// Registration state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// Not registered yet (or a refresh is in flight).
    Pending,
    /// Registered until the instant.
    Registered,
    /// Refused (403, 404, repeated 401): the reason code.
    Failed(u16),
    /// Unregistered (or unregistering finished).
    Unregistered,
}

/// One registration.
#[derive(Debug)]
pub struct Registration {
    config: RegisterConfig,
    digest: DigestClient,
    call_id: String,
    tag: String,
    cseq: u32,
    pending: Option<(TransactionId, Message)>,
    refresh_at: Option<Instant>,
    state: RegState,
    unregistering: bool,
    /// Our contact before a move, removed (`expires=0`) along with the new one's REGISTER until
    /// that succeeds.
    old_contact: Option<String>,
    /// Branches and cnonces.
    ids: crate::dialog::IdGen,
}

impl Registration {
    /// A registration for `user` with `password`; `seed` makes the Call-ID, tag and cnonces.
    pub fn new(config: RegisterConfig, user: &str, password: &str, seed: u64) -> Registration {
        let mut ids = crate::dialog::IdGen::new(seed);
        let host = config.local.ip().to_string();
        Registration {
            call_id: ids.call_id(&host),
            tag: ids.tag(),
            digest: match config.realm.clone() {
                Some(realm) => DigestClient::new(user, password).only_realm(realm),
                None => DigestClient::new(user, password),
            },
            config,
            cseq: 0,
            pending: None,
            refresh_at: None,
            state: RegState::Pending,
            unregistering: false,
            old_contact: None,
            ids,
        }
    }

    /// The state.
    pub fn state(&self) -> RegState {
        self.state
    }

    /// Whether a REGISTER is waiting for its final response.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn next_token(&mut self) -> String {
        format!("{:016x}", self.ids.next_u64())
    }

    fn send(&mut self, ep: &mut Endpoint, expires: u32, now: Instant) {
        self.cseq += 1;
        let branch = format!("z9hG4bK{}", self.next_token());
        let mut b = Message::request(Method::Register, &self.config.registrar_uri);
        b.push(HeaderName::Via, via_value(self.config.local, &branch));
        b.push(HeaderName::MaxForwards, 70);
        b.push(HeaderName::From, format_args!("<{}>;tag={}", self.config.aor, self.tag));
        b.push(HeaderName::To, format_args!("<{}>", self.config.aor));
        b.push(HeaderName::CallId, &self.call_id);
        b.push(HeaderName::CSeq, format_args!("{} REGISTER", self.cseq));
        b.push(HeaderName::Contact, format_args!("<{}>", self.config.contact));
        if let Some(old) = self.old_contact.as_deref().filter(|_| expires > 0) {
            b.push(HeaderName::Contact, format_args!("<{old}>;expires=0"));
        }
        b.push(HeaderName::Expires, expires);
        let cnonce = self.next_token();
        if let Some((name, value)) = self.digest.authorization("REGISTER", &self.config.registrar_uri, &cnonce) {
            b.push(name, value);
        }
        let req = b.finish();
        match ep.send_request(req.clone(), self.config.registrar, crate::endpoint::Owner::Phone, now) {
            Ok(tx) => self.pending = Some((tx, req)),
            Err(e) => {
                tracing::warn!(error = ?e, "REGISTER not sent");
                self.state = RegState::Failed(500);
            }
        }
    }

    /// Sends the first REGISTER.
    pub fn start(&mut self, ep: &mut Endpoint, now: Instant) {
        self.send(ep, self.config.expires, now);
    }

    /// Removes the binding (`Expires: 0`, §10.2.2); done when [`Registration::is_pending`] is false.
    pub fn unregister(&mut self, ep: &mut Endpoint, now: Instant) {
        self.refresh_at = None;
        if self.state == RegState::Registered || self.is_pending() {
            self.unregistering = true;
            self.send(ep, 0, now);
        } else {
            self.state = RegState::Unregistered;
        }
    }

    /// Registers again from our new SIP address `local` with `contact` (the phone changed
    /// network, issue 14 point 7): the same registration (Call-ID and CSeq go on, §10.2.4), the old
    /// contact removed in the same request (`expires=0`, §10.2.2), so calls reach the new one only.
    pub fn move_to(&mut self, ep: &mut Endpoint, local: SocketAddr, contact: String, now: Instant) {
        let old = std::mem::replace(&mut self.config.contact, contact);
        if old != self.config.contact {
            self.old_contact = Some(old);
        }
        self.config.local = local;
        self.refresh_at = None;
        self.unregistering = false;
        self.send(ep, self.config.expires, now);
    }

    /// Whether `tx` is ours.
    pub fn owns(&self, tx: TransactionId) -> bool {
        self.pending.as_ref().is_some_and(|(t, _)| *t == tx)
    }

    /// A response to our REGISTER.
    pub fn handle_response(&mut self, ep: &mut Endpoint, tx: TransactionId, resp: &Message, now: Instant) {
        let Some((t, req)) = self.pending.clone() else { return };
        if t != tx {
            return;
        }
        let code = resp.status().unwrap_or(0);
        if code < 200 {
            return;
        }
        self.pending = None;
        match code {
            200..=299 if self.unregistering => {
                self.state = RegState::Unregistered;
                tracing::info!(aor = %self.config.aor, "unregistered");
            }
            200..=299 => {
                self.old_contact = None;
                // The registrar may shorten the lifetime: take what it granted for our contact.
                let granted = resp.contacts().filter_map(Result::ok).find(|c| c.uri_text == self.config.contact).and_then(|c| c.expires());
                let secs = granted.or(resp.expires().ok().flatten()).unwrap_or(self.config.expires).max(2);
                self.refresh_at = Some(now + Duration::from_secs(u64::from(secs)) / 2);
                if self.state == RegState::Registered {
                    tracing::info!(aor = %self.config.aor, expires = secs, "registration refreshed");
                } else {
                    tracing::info!(aor = %self.config.aor, expires = secs, "registered");
                }
                self.state = RegState::Registered;
            }
            401 | 407 => match self.digest.handle_challenge(&req, resp) {
                Ok(()) => {
                    let expires = if self.unregistering { 0 } else { self.config.expires };
                    self.send(ep, expires, now);
                }
                Err(e) => {
                    tracing::error!(error = ?e, "registration refused: wrong user name or password?");
                    self.state = RegState::Failed(code);
                }
            },
            423 => {
                let min = resp.min_expires().ok().flatten().unwrap_or(self.config.expires);
                self.config.expires = min;
                self.send(ep, min, now);
            }
            _ => {
                tracing::error!(code, reason = %String::from_utf8_lossy(resp.reason().unwrap_or(b"")), "registration refused");
                self.state = if self.unregistering { RegState::Unregistered } else { RegState::Failed(code) };
            }
        }
    }

    /// Our REGISTER timed out.
    pub fn handle_timeout_of(&mut self, tx: TransactionId) {
        if self.owns(tx) {
            self.pending = None;
            self.state = if self.unregistering { RegState::Unregistered } else { RegState::Failed(408) };
            tracing::error!("registrar did not answer");
        }
    }

    /// Refreshes when due.
    pub fn handle_timeout(&mut self, ep: &mut Endpoint, now: Instant) {
        if self.refresh_at.is_some_and(|t| t <= now) && self.pending.is_none() {
            self.refresh_at = None;
            self.send(ep, self.config.expires, now);
        }
    }

    /// The refresh deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.refresh_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::EndpointConfig;

    /// The REGISTER the endpoint sends next.
    fn sent(ep: &mut Endpoint) -> Message {
        let t = ep.poll_transmit().expect("a REGISTER");
        Message::parse(t.payload.clone()).expect("parses")
    }

    #[test]
    fn a_move_registers_the_new_contact_and_removes_the_old_in_the_same_registration() {
        let now = Instant::now();
        let mut ep = Endpoint::new(EndpointConfig::default());
        let config = RegisterConfig {
            registrar_uri: "sip:127.0.0.1:5060".into(),
            registrar: "127.0.0.1:5060".parse().unwrap(),
            aor: "sip:alice@127.0.0.1".into(),
            contact: "sip:alice@127.0.0.1:40000".into(),
            expires: 300,
            local: "127.0.0.1:40000".parse().unwrap(),
            realm: None,
        };
        let mut r = Registration::new(config, "alice", "pw", 7);
        r.start(&mut ep, now);
        let first = sent(&mut ep);
        let new: SocketAddr = "127.0.0.5:41000".parse().unwrap();
        r.move_to(&mut ep, new, "sip:alice@127.0.0.5:41000".into(), now);
        let moved = sent(&mut ep);
        assert_eq!(moved.call_id().unwrap(), first.call_id().unwrap(), "the same registration (§10.2.4)");
        assert_eq!(moved.cseq().unwrap().seq, 2);
        let via = moved.via().unwrap();
        assert_eq!((via.host.as_str(), via.port), ("127.0.0.5", Some(41000)));
        let contacts: Vec<String> = moved.contacts().map(|c| c.unwrap().to_string()).collect();
        assert_eq!(contacts, ["<sip:alice@127.0.0.5:41000>", "<sip:alice@127.0.0.1:40000>;expires=0"]);
    }
}
