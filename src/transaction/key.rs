//! Transaction keys: which transaction a message belongs to (RFC 3261 §17.1.3, §17.2.3).
//!
//! ```text
//!   client (§17.1.3)   top-Via branch + CSeq method
//!   server (§17.2.3)   top-Via branch + top-Via sent-by + method (ACK counts as INVITE)
//!   server, RFC 2543   (branch without "z9hG4bK") Request-URI + From tag + Call-ID + CSeq number
//!                      + top Via + method (ACK counts as INVITE); the To tag is checked after the
//!                      lookup, because the ACK for a non-2xx carries the tag of the response.
//! ```
//!
//! Keys hold zero-copy `Bytes` slices of the message they came from, so building one for a lookup
//! costs reference-count bumps, not allocations. Exceptions: an extension method name is copied, and
//! an RFC 2543 key (legacy peers only) boxes its fields to keep the common key small.

use super::Error;
use crate::message::{Message, Method, ParseError, Via};
use bytes::Bytes;
use std::hash::{Hash, Hasher};

/// Identifies a transaction. Build one with [`TransactionKey::client`],
/// [`TransactionKey::for_response`], [`TransactionKey::server`] or [`TransactionKey::cancel_target`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey(Inner);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Inner {
    Client { branch: Bytes, method: Method },
    Server { branch: Bytes, sent_by: SentBy, method: Method },
    Rfc2543(Box<Rfc2543Key>),
}

/// `sent-by` of a Via: the host compares case-insensitively (§19.1.4 rules for hosts).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SentBy {
    host: NoCase,
    port: Option<u16>,
}

/// The fields RFC 2543 matching compares (§17.2.3, second half).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rfc2543Key {
    request_uri: Bytes,
    from_tag: Option<Bytes>,
    call_id: Bytes,
    cseq: u32,
    via_transport: NoCase,
    via_sent_by: SentBy,
    via_params: Bytes,
    method: Method,
}

/// Bytes compared and hashed ignoring ASCII case.
#[derive(Debug, Clone)]
struct NoCase(Bytes);

impl PartialEq for NoCase {
    fn eq(&self, other: &NoCase) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for NoCase {}

impl Hash for NoCase {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for b in self.0.iter() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

/// A zero-copy slice of `buf` for `part`, which normally points into it; a copy otherwise.
fn slice_of(buf: &Bytes, part: &str) -> Bytes {
    let (start, end) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
    let p = part.as_ptr() as usize;
    if p >= start && p + part.len() <= end {
        buf.slice(p - start..p - start + part.len())
    } else {
        Bytes::copy_from_slice(part.as_bytes())
    }
}

fn sent_by(buf: &Bytes, via: &Via<'_>) -> SentBy {
    SentBy { host: NoCase(slice_of(buf, via.host.as_str())), port: via.port }
}

// ===== impl TransactionKey =====

impl TransactionKey {
    /// The key of a client transaction for the request it sends: top-Via branch + CSeq method
    /// (§17.1.3). The branch is required.
    pub fn client(request: &Message) -> Result<TransactionKey, Error> {
        Self::client_side(request)
    }

    /// The key of the client transaction a response belongs to (§17.1.3): the branch of its top Via
    /// and the method of its CSeq. A response whose Via has no branch matches nothing.
    pub fn for_response(response: &Message) -> Result<TransactionKey, Error> {
        Self::client_side(response)
    }

    fn client_side(msg: &Message) -> Result<TransactionKey, Error> {
        Self::client_with(msg, |_| ()).map(|(key, ())| key)
    }

    /// [`TransactionKey::client`] plus `look(top Via)`, from one parse of the Via (a new client
    /// transaction also needs the transport it names).
    pub(crate) fn client_with<T>(msg: &Message, look: impl FnOnce(&Via<'_>) -> T) -> Result<(TransactionKey, T), Error> {
        let via = msg.via()?;
        let branch = via.branch().filter(|b| !b.is_empty()).ok_or(Error::MissingBranch)?;
        let method = msg.cseq()?.method;
        let seen = look(&via);
        Ok((TransactionKey(Inner::Client { branch: slice_of(msg.as_bytes(), branch), method }), seen))
    }

    /// The key of the server transaction a request belongs to (§17.2.3). An ACK gets the key of its
    /// INVITE. A top Via without the `z9hG4bK` cookie selects the RFC 2543 rules.
    pub fn server(request: &Message) -> Result<TransactionKey, Error> {
        Self::server_with(request, |_| ()).map(|(key, ())| key)
    }

    /// [`TransactionKey::server`] and `look`'s reading of the same top Via, from one parse of it
    /// (the table builds a new server transaction's key and core from it).
    pub(crate) fn server_with<T>(request: &Message, look: impl FnOnce(&Via<'_>) -> T) -> Result<(TransactionKey, T), Error> {
        let method = match request.method().ok_or(Error::NotARequest)? {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let via = request.via()?;
        let key = Self::server_from_via(request, &via, method)?;
        Ok((key, look(&via)))
    }

    /// The key of the INVITE server transaction a CANCEL targets (§9.2): the CANCEL's own key with
    /// the method taken as INVITE. CANCEL of a non-INVITE request is not supported (§9.1: it SHOULD
    /// NOT be sent), so only INVITE transactions are found.
    pub fn cancel_target(cancel: &Message) -> Result<TransactionKey, Error> {
        if cancel.method() != Some(&Method::Cancel) {
            return Err(Error::WrongMethod);
        }
        Self::server_with_method(cancel, Method::Invite)
    }

    fn server_with_method(req: &Message, method: Method) -> Result<TransactionKey, Error> {
        Self::server_from_via(req, &req.via()?, method)
    }

    /// The server key of `req` whose top Via, already parsed, is `via`.
    fn server_from_via(req: &Message, via: &Via<'_>, method: Method) -> Result<TransactionKey, Error> {
        let buf = req.as_bytes();
        match via.branch() {
            Some(branch) if via.has_rfc3261_branch() => {
                Ok(TransactionKey(Inner::Server { branch: slice_of(buf, branch), sent_by: sent_by(buf, via), method }))
            }
            _ => Ok(TransactionKey(Inner::Rfc2543(Box::new(Rfc2543Key {
                request_uri: slice_of(buf, req.request_uri_str().ok_or(Error::NotARequest)?),
                from_tag: req.from_tag()?.map(|t| slice_of(buf, t)),
                call_id: slice_of(buf, req.call_id()?),
                cseq: req.cseq()?.seq,
                via_transport: NoCase(slice_of(buf, via.transport)),
                via_sent_by: sent_by(buf, via),
                via_params: slice_of(buf, via.params.as_str()),
                method,
            })))),
        }
    }

    /// True for a server key built by the RFC 2543 rules: after a lookup hits, the To tag must
    /// still be compared (see [`ServerInvite::accepts`](super::ServerInvite::accepts)).
    pub fn is_rfc2543(&self) -> bool {
        matches!(self.0, Inner::Rfc2543(_))
    }

    /// True for a client-side key.
    pub fn is_client(&self) -> bool {
        matches!(self.0, Inner::Client { .. })
    }

    /// The branch, for RFC 3261 keys.
    pub fn branch(&self) -> Option<&[u8]> {
        match &self.0 {
            Inner::Client { branch, .. } | Inner::Server { branch, .. } => Some(branch),
            Inner::Rfc2543(_) => None,
        }
    }
}

/// Where `part` (a view into `msg`'s buffer) sits in `onto`, a byte-for-byte copy of that buffer.
fn moved(msg: &Message, onto: &Bytes, part: &[u8]) -> Option<Bytes> {
    let start = (part.as_ptr() as usize).checked_sub(msg.as_bytes().as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= msg.as_bytes().len() && onto.len() == msg.as_bytes().len()).then(|| onto.slice(start..end))
}

// ----- keys for transactions that only linger (issue 16 point 4) -----

impl TransactionKey {
    /// This RFC 3261 server key with its strings taken from `onto`, a copy of the bytes of `msg` (a
    /// response the transaction sent, whose top Via is the request's, §8.2.6.2): the key then holds
    /// the kept response's buffer instead of the request's, which can be freed. `None` if `msg`
    /// does not yield this same key.
    pub(crate) fn rebased(&self, msg: &Message, onto: &Bytes) -> Option<TransactionKey> {
        let Inner::Server { method, .. } = &self.0 else { return None };
        let via = msg.via().ok()?;
        let branch = moved(msg, onto, via.branch()?.as_bytes())?;
        let host = moved(msg, onto, via.host.as_str().as_bytes())?;
        let key = TransactionKey(Inner::Server { branch, sent_by: SentBy { host: NoCase(host), port: via.port }, method: method.clone() });
        (key == *self).then_some(key)
    }

    /// This key with its strings copied into one small buffer of their own, so that it no longer
    /// holds the buffer of the message it was read from. RFC 2543 keys are returned as they are
    /// (legacy peers: such transactions never linger in the short form).
    pub(crate) fn detached(&self) -> TransactionKey {
        match &self.0 {
            Inner::Client { branch, method } => {
                TransactionKey(Inner::Client { branch: Bytes::copy_from_slice(branch), method: method.clone() })
            }
            Inner::Server { branch, sent_by, method } => {
                let both = Bytes::from([&branch[..], &sent_by.host.0[..]].concat());
                let (branch, host) = (both.slice(..branch.len()), both.slice(branch.len()..));
                TransactionKey(Inner::Server { branch, sent_by: SentBy { host: NoCase(host), port: sent_by.port }, method: method.clone() })
            }
            Inner::Rfc2543(_) => self.clone(),
        }
    }
}

impl TransactionKey {
    /// Feeds this key to `h` so that equal keys feed equal bytes (the host lowercased, as
    /// [`NoCase`] compares it), in few large writes: a SipHash over the key costs a few hundred
    /// instructions this way, against about a thousand through the derived `Hash` (which hashes a
    /// host byte by byte). For the digests of [`Answered`](super::answered::Answered).
    pub(crate) fn feed<H: Hasher>(&self, h: &mut H) {
        match &self.0 {
            Inner::Client { branch, method } => {
                h.write_u8(0);
                h.write_usize(branch.len());
                h.write(branch);
                h.write(method.as_str().as_bytes());
            }
            Inner::Server { branch, sent_by, method } => {
                h.write_u8(1);
                h.write_usize(branch.len());
                h.write(branch);
                let host = &sent_by.host.0;
                h.write_usize(host.len());
                let mut lower = [0u8; 64];
                for chunk in host.chunks(lower.len()) {
                    let part = &mut lower[..chunk.len()];
                    part.copy_from_slice(chunk);
                    part.make_ascii_lowercase();
                    h.write(part);
                }
                h.write_u32(sent_by.port.map_or(0, |p| 0x1_0000 | u32::from(p)));
                h.write(method.as_str().as_bytes());
            }
            Inner::Rfc2543(key) => {
                h.write_u8(2);
                key.hash(h);
            }
        }
    }
}

/// The To tag of a message, as bytes (`None` without a tag). Used for the RFC 2543 To-tag check.
pub(crate) fn to_tag_of(msg: &Message) -> Result<Option<&[u8]>, ParseError> {
    Ok(msg.to_tag()?.map(str::as_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, via: &str, to: &str) -> Message {
        let wire = format!(
            "{method} sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nTo: {to}\r\nFrom: <sip:a@example.com>;tag=f1\r\n\
             Call-ID: c1@host\r\nCSeq: 7 {}\r\nContent-Length: 0\r\n\r\n",
            if method == "ACK" || method == "CANCEL" { method } else { "INVITE" }
        );
        Message::parse(Bytes::from(wire)).expect("test message parses")
    }

    #[test]
    fn server_key_rules() {
        let invite = req("INVITE", "SIP/2.0/UDP Host.example.com:5060;branch=z9hG4bKabc", "<sip:bob@example.com>");
        let k = TransactionKey::server(&invite).unwrap();
        // Host case does not matter; port does; branch does.
        let ack = req("ACK", "SIP/2.0/UDP host.EXAMPLE.com:5060;branch=z9hG4bKabc", "<sip:bob@example.com>;tag=x");
        assert_eq!(TransactionKey::server(&ack).unwrap(), k);
        let other_port = req("ACK", "SIP/2.0/UDP host.example.com:5070;branch=z9hG4bKabc", "<sip:bob@example.com>");
        assert_ne!(TransactionKey::server(&other_port).unwrap(), k);
        let other_branch = req("INVITE", "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bKabd", "<sip:bob@example.com>");
        assert_ne!(TransactionKey::server(&other_branch).unwrap(), k);
        let cancel = req("CANCEL", "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bKabc", "<sip:bob@example.com>");
        assert_ne!(TransactionKey::server(&cancel).unwrap(), k);
        assert_eq!(TransactionKey::cancel_target(&cancel).unwrap(), k);
        assert!(!k.is_rfc2543() && !k.is_client());
    }

    #[test]
    fn equal_keys_feed_equal_bytes() {
        let fed = |msg: &Message| {
            let mut h = std::hash::DefaultHasher::new();
            TransactionKey::server(msg).unwrap().feed(&mut h);
            h.finish()
        };
        let a = req("INVITE", "SIP/2.0/UDP Host.example.com:5060;branch=z9hG4bKabc", "<sip:bob@example.com>");
        let b = req("ACK", "SIP/2.0/UDP host.EXAMPLE.com:5060;branch=z9hG4bKabc", "<sip:bob@example.com>;tag=x");
        assert_eq!(fed(&a), fed(&b), "host case and ACK-as-INVITE, as the key compares them");
        for other in [
            req("INVITE", "SIP/2.0/UDP host.example.com:5070;branch=z9hG4bKabc", "<sip:bob@example.com>"),
            req("INVITE", "SIP/2.0/UDP host.example.com;branch=z9hG4bKabc", "<sip:bob@example.com>"),
            req("INVITE", "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bKabd", "<sip:bob@example.com>"),
            req("CANCEL", "SIP/2.0/UDP host.example.com:5060;branch=z9hG4bKabc", "<sip:bob@example.com>"),
        ] {
            assert_ne!(fed(&other), fed(&a));
        }
    }

    #[test]
    fn client_key_is_branch_and_cseq_method() {
        let invite = req("INVITE", "SIP/2.0/UDP h;branch=z9hG4bKabc", "<sip:bob@example.com>");
        let cancel = req("CANCEL", "SIP/2.0/UDP h;branch=z9hG4bKabc", "<sip:bob@example.com>");
        let k = TransactionKey::client(&invite).unwrap();
        assert!(k.is_client());
        assert_eq!(k.branch(), Some(&b"z9hG4bKabc"[..]));
        assert_ne!(TransactionKey::client(&cancel).unwrap(), k);
        let no_branch = req("INVITE", "SIP/2.0/UDP h", "<sip:bob@example.com>");
        assert_eq!(TransactionKey::client(&no_branch), Err(Error::MissingBranch));
    }

    #[test]
    fn rfc2543_key_ignores_to_tag_and_maps_ack() {
        let invite = req("INVITE", "SIP/2.0/UDP h:5060", "<sip:bob@example.com>");
        let ack = req("ACK", "SIP/2.0/UDP H:5060", "<sip:bob@example.com>;tag=t9");
        let k = TransactionKey::server(&invite).unwrap();
        assert!(k.is_rfc2543());
        assert_eq!(TransactionKey::server(&ack).unwrap(), k);
        // A bare cookie is no RFC 3261 branch (RFC 4475 §3.2.1) and falls back too.
        let bare = req("INVITE", "SIP/2.0/UDP h:5060;branch=z9hG4bK", "<sip:bob@example.com>");
        assert!(TransactionKey::server(&bare).unwrap().is_rfc2543());
        assert_eq!(to_tag_of(&ack).unwrap(), Some(&b"t9"[..]));
    }
}
