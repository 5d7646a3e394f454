//! How a B2BUA call ended: why, by whom, and the SIP cause, typed. The call record and the logs
//! take the words of [`fmt::Display`] (`bye`, `cancel`, `486`, `rtp-timeout`, `session-expired`,
//! `restart-recovered`, ... and `caller`, `callee`, `service`), which are the `cdr` output the
//! README documents: they must not change.

use crate::dialog::EndReason;
use std::fmt;

/// Why a call ended: the record's `end_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// A BYE (RFC 3261 §15).
    Bye,
    /// The caller cancelled the INVITE (§9).
    Cancel,
    /// The INVITE got this final response: the callee's (the best of its forks, §16.7), or ours
    /// (480 with nothing to call, 408 after the no-answer timeout).
    Status(u16),
    /// An in-dialog request of one leg timed out (§14.1, Timer B/F).
    Timeout,
    /// No ACK came for our 2xx (§13.3.1.4).
    NoAck,
    /// A leg's session timer expired (RFC 4028 §10).
    SessionExpired,
    /// An in-dialog OPTIONS keep-alive failed.
    PingFailed,
    /// The phone answered a request with 481: it knows no such dialog (§12.2.1.2).
    Gone,
    /// No media from a leg for the relay's inactivity timeout.
    RtpTimeout,
    /// A call taken back after a restart ended with a BYE.
    RestartRecovered,
    /// A call saved before a restart could not be taken back (its relay ports were taken).
    RestartFailed,
    /// A call another instance held, adopted here when the published membership dropped that
    /// instance (issue 17 point 4), ended with a BYE.
    Failover,
    /// Another process held a relay port the call had already offered (the driver could not bind
    /// it; see `crate::application`).
    RelayPortTaken,
    /// A party's user was removed (`users remove`) while the call was up (issue 14 point 11).
    UserRemoved,
}

impl Cause {
    /// The words of a dialog's end.
    pub fn of(reason: EndReason) -> Cause {
        match reason {
            EndReason::Bye(_) => Cause::Bye,
            EndReason::Cancelled => Cause::Cancel,
            EndReason::Timeout => Cause::Timeout,
            EndReason::NoAck => Cause::NoAck,
            EndReason::SessionExpired => Cause::SessionExpired,
            EndReason::Rejected(code) => Cause::Status(code),
            EndReason::PingFailed => Cause::PingFailed,
            EndReason::Gone => Cause::Gone,
        }
    }

    /// The SIP status code that stands for this end (RFC 3326 `cause`), where one does: the final
    /// response, 487 for a CANCEL, 408 for the timeouts.
    pub fn sip_cause(self) -> Option<u16> {
        match self {
            Cause::Status(code) => Some(code),
            Cause::Cancel => Some(487),
            Cause::Timeout | Cause::NoAck | Cause::SessionExpired | Cause::PingFailed | Cause::RtpTimeout => Some(408),
            Cause::Gone => Some(481),
            Cause::RelayPortTaken => Some(503),
            Cause::Bye | Cause::RestartRecovered | Cause::RestartFailed | Cause::Failover | Cause::UserRemoved => None,
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Status(code) => return write!(f, "{code}"),
            Cause::Bye => "bye",
            Cause::Cancel => "cancel",
            Cause::Timeout => "timeout",
            Cause::NoAck => "no-ack",
            Cause::SessionExpired => "session-expired",
            Cause::PingFailed => "ping-failed",
            Cause::Gone => "gone",
            Cause::RtpTimeout => "rtp-timeout",
            Cause::RestartRecovered => "restart-recovered",
            Cause::RestartFailed => "restart-failed",
            Cause::Failover => "failover",
            Cause::RelayPortTaken => "relay-port-taken",
            Cause::UserRemoved => "user-removed",
        })
    }
}

/// Who ended a call: the record's `ended_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The phone that called.
    Caller,
    /// The phone called (any of its forks).
    Callee,
    /// The service itself (timeouts, no target, relay inactivity, restart).
    Service,
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Party::Caller => "caller",
            Party::Callee => "callee",
            Party::Service => "service",
        })
    }
}

/// How a call ended: why and by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEnd {
    /// Why.
    pub cause: Cause,
    /// By whom.
    pub by: Party,
}

impl CallEnd {
    /// A call ended by `by` for `cause`.
    pub fn new(cause: Cause, by: Party) -> CallEnd {
        CallEnd { cause, by }
    }

    /// The `Reason` header (RFC 3326 §2) for the BYEs the service sends to end the call itself;
    /// `None` when the end is the phones' own (their BYE or answer says why).
    pub fn bye_reason(self) -> Option<&'static str> {
        match (self.by, self.cause) {
            (Party::Service, Cause::RtpTimeout) => Some("SIP;cause=408;text=\"RTP timeout\""),
            (Party::Service, Cause::RelayPortTaken) => Some("SIP;cause=503;text=\"relay port taken\""),
            (Party::Service, Cause::UserRemoved) => Some("SIP;cause=403;text=\"user removed\""),
            // Late offer: the caller's ACK brought no usable answer (see `late_offer.rs`).
            (Party::Service, Cause::Status(488)) => Some(crate::ua::late_offer::NO_ANSWER_IN_ACK),
            _ => None,
        }
    }
}

impl fmt::Display for CallEnd {
    /// `CAUSE by PARTY`, e.g. `486 by callee`, `rtp-timeout by service`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.cause, self.by)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::Side;

    #[test]
    fn the_record_words_stay_as_documented() {
        let words = [
            (Cause::of(EndReason::Bye(Side::Remote)), "bye"),
            (Cause::of(EndReason::Cancelled), "cancel"),
            (Cause::of(EndReason::Rejected(486)), "486"),
            (Cause::of(EndReason::Timeout), "timeout"),
            (Cause::of(EndReason::NoAck), "no-ack"),
            (Cause::of(EndReason::SessionExpired), "session-expired"),
            (Cause::of(EndReason::PingFailed), "ping-failed"),
            (Cause::of(EndReason::Gone), "gone"),
            (Cause::RtpTimeout, "rtp-timeout"),
            (Cause::RestartRecovered, "restart-recovered"),
            (Cause::RestartFailed, "restart-failed"),
            (Cause::Failover, "failover"),
            (Cause::RelayPortTaken, "relay-port-taken"),
            (Cause::UserRemoved, "user-removed"),
        ];
        for (cause, word) in words {
            assert_eq!(cause.to_string(), word);
        }
        assert_eq!([Party::Caller, Party::Callee, Party::Service].map(|p| p.to_string()), ["caller", "callee", "service"]);
        assert_eq!(CallEnd::new(Cause::Status(486), Party::Callee).to_string(), "486 by callee");
        assert_eq!(Cause::Status(486).sip_cause(), Some(486));
        assert_eq!(CallEnd::new(Cause::RtpTimeout, Party::Service).bye_reason(), Some("SIP;cause=408;text=\"RTP timeout\""));
    }
}
