//! The live set of instances, as the dispatcher publishes it (issue 17 point 2).
//!
//! The dispatcher's OPTIONS probes are the heartbeat and the only source of membership. Each
//! time its live set changes it raises the epoch and publishes the new [`Membership`] in Redis:
//!
//! - the string key [`KEY`] holds the latest one ([`Membership::encode`]), written with a
//!   compare-and-set on the epoch so that an older dispatcher never overwrites a newer set;
//! - the same text is published on the channel [`CHANNEL`], so instances learn it at once.
//!
//! Instances only read it (at start, on each message, and again after a Redis reconnect); they
//! never decide on their own that a peer is dead, and a Redis outage changes no membership.
//!
//! Wire form, one line: the epoch in decimal, then the live members' SIP URIs in the dispatcher's
//! configured order, separated by single spaces: `7 sip:10.0.0.5:5060 sip:10.0.0.6:5060`.

use std::fmt;

/// Redis key of the latest membership.
pub const KEY: &str = "sb:members";
/// Redis pub/sub channel the dispatcher publishes each new membership on.
pub const CHANNEL: &str = "sb:members";

/// One published live set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Raised by one on every change; a member set with a lower epoch is stale.
    pub epoch: u64,
    /// The live instances' SIP URIs (as in `--backend`), in the dispatcher's configured order.
    pub live: Vec<String>,
}

/// Why a published membership was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// The line is empty.
    Empty,
    /// The first word is not a decimal epoch.
    Epoch(String),
    /// A member is not a `sip:` URI.
    Member(String),
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::Empty => write!(f, "empty membership"),
            MembershipError::Epoch(w) => write!(f, "membership epoch is not a number: {w:?}"),
            MembershipError::Member(w) => write!(f, "membership member is not a sip: URI: {w:?}"),
        }
    }
}

impl std::error::Error for MembershipError {}

impl Membership {
    /// The one-line wire form (see the module doc).
    pub fn encode(&self) -> String {
        let mut s = self.epoch.to_string();
        for m in &self.live {
            s.push(' ');
            s.push_str(m);
        }
        s
    }

    /// Parses the wire form.
    pub fn parse(line: &str) -> Result<Membership, MembershipError> {
        let mut words = line.split_ascii_whitespace();
        let first = words.next().ok_or(MembershipError::Empty)?;
        let epoch = first.parse().map_err(|_| MembershipError::Epoch(first.to_string()))?;
        let live = words
            .map(|w| if w.starts_with("sip:") { Ok(w.to_string()) } else { Err(MembershipError::Member(w.to_string())) })
            .collect::<Result<_, _>>()?;
        Ok(Membership { epoch, live })
    }

    /// The live member that owns a call with this Call-ID ([`super::rendezvous`] over
    /// [`super::key`]), `None` when nobody is live.
    pub fn owner_of(&self, call_id: &str) -> Option<&str> {
        super::rendezvous(super::key(call_id), &self.live).map(|i| self.live[i].as_str())
    }

    /// Whether `member` is in the live set.
    pub fn is_live(&self, member: &str) -> bool {
        self.live.iter().any(|m| m == member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Membership { epoch: 7, live: vec!["sip:10.0.0.5:5060".into(), "sip:10.0.0.6:5060".into()] };
        assert_eq!(m.encode(), "7 sip:10.0.0.5:5060 sip:10.0.0.6:5060");
        assert_eq!(Membership::parse(&m.encode()), Ok(m.clone()));
        assert_eq!(Membership::parse("3"), Ok(Membership { epoch: 3, live: vec![] }));
        assert!(m.is_live("sip:10.0.0.6:5060") && !m.is_live("sip:10.0.0.7:5060"));
        let owner = m.owner_of("abc@h").unwrap_or_default();
        assert!(m.is_live(owner));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(Membership::parse("  "), Err(MembershipError::Empty));
        assert_eq!(Membership::parse("x sip:a"), Err(MembershipError::Epoch("x".into())));
        assert_eq!(Membership::parse("1 http:a"), Err(MembershipError::Member("http:a".into())));
        assert_eq!(Membership { epoch: 0, live: vec![] }.owner_of("a"), None);
    }
}
