//! Session timers (RFC 4028): negotiation of Session-Expires / Min-SE, the refresher choice, and
//! when to refresh or give up.
//!
//! ```text
//!   UAC                                    UAS
//!    | INVITE  Supported: timer              |
//!    |         Session-Expires: 1800         |   §9: 422 + Min-SE if below our minimum,
//!    |         Min-SE: 90                    |   else pick the refresher (table in §9)
//!    |<-- 200  Session-Expires: 1800;refresher=uac, Require: timer
//!    |                                       |
//!    |-- refresh (re-INVITE or UPDATE) at interval/2 by the refresher (§10)
//!    |   the other side sends BYE if none came by interval - min(32 s, interval/3);
//!    |   a refresh answered 408/481 or timing out ends the session too (§10, RFC 3261 §12.2.1.2)
//! ```
//!
//! `refresher=uac/uas` is relative to each transaction; a dialog stores it as a [`Side`].

use super::{DialogConfig, Side};
use crate::message::{HeaderName, Message, MessageBuilder, Refresher};
use std::time::Duration;

/// The smallest Session-Expires anyone may use (RFC 4028 §4, §5).
pub(crate) const MIN_SE_FLOOR: u32 = 90;

/// A negotiated session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    /// The session interval in seconds.
    pub(crate) interval: u32,
    /// Who refreshes.
    pub(crate) refresher: Side,
}

/// What a UAS makes of a request's session timer headers (RFC 4028 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiated {
    /// No session timer for this session (or no change asked for).
    Off,
    /// Use this timer; write it into the 2xx.
    On(SessionTimer),
    /// Answer 422 with this Min-SE (seconds).
    TooSmall(u32),
}

impl SessionTimer {
    /// The interval as a duration.
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval))
    }

    /// When the refresher sends its refresh: half the interval (RFC 4028 §10).
    pub(crate) fn refresh_after(&self) -> Duration {
        self.duration() / 2
    }

    /// When the non-refresher gives up: interval - min(32 s, interval/3) (RFC 4028 §10).
    pub(crate) fn expire_after(&self) -> Duration {
        let d = self.duration();
        d - Duration::from_secs(32).min(d / 3)
    }

    /// The `refresher` parameter as seen in a transaction where we are the UAC (`we_send`) or UAS.
    fn param(&self, we_send: bool) -> &'static str {
        match (self.refresher, we_send) {
            (Side::Local, true) | (Side::Remote, false) => "uac",
            (Side::Local, false) | (Side::Remote, true) => "uas",
        }
    }
}

/// Whether the message lists `timer` in Supported (or Require).
pub(crate) fn supports_timer(msg: &Message) -> bool {
    [HeaderName::Supported, HeaderName::Require]
        .into_iter()
        .any(|h| msg.tokens(h).any(|t| t.is_ok_and(|t| t.eq_ignore_ascii_case("timer"))))
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The UAS side of a request that may start or refresh a session timer (RFC 4028 §9). The request
/// came from the peer, so `refresher=uac` in it means [`Side::Remote`].
pub(crate) fn negotiate_uas(req: &Message, cfg: &DialogConfig) -> Negotiated {
    let supported = supports_timer(req);
    let our_min = secs(cfg.min_se).max(MIN_SE_FLOOR);
    // Malformed timer headers are treated as absent: the session then simply runs without one.
    let their_min = req.min_se().ok().flatten().map_or(MIN_SE_FLOOR, |m| m.seconds.max(MIN_SE_FLOOR));
    let preferred = match cfg.refresher {
        Some(Refresher::Uas) => Side::Local,
        _ => Side::Remote,
    };
    let (interval, asked) = match req.session_expires().ok().flatten() {
        Some(se) => {
            if se.seconds < our_min && supported {
                return Negotiated::TooSmall(our_min);
            }
            // §9: we may lower the interval, never below the request's Min-SE, and never raise it.
            let ours = cfg.session_expires.map_or(se.seconds, secs);
            (se.seconds.min(ours.max(their_min)).max(MIN_SE_FLOOR), se.refresher())
        }
        None => match cfg.session_expires {
            Some(d) => (secs(d).max(their_min).max(our_min), None),
            None => return Negotiated::Off,
        },
    };
    // §9 table: without UAC support the UAS refreshes; otherwise honour the request's choice.
    let refresher = match (supported, asked) {
        (false, _) => Side::Local,
        (true, Some(Refresher::Uac)) => Side::Remote,
        (true, Some(Refresher::Uas)) => Side::Local,
        (true, None) => preferred,
    };
    Negotiated::On(SessionTimer { interval, refresher })
}

/// The timer a 2xx to our INVITE or UPDATE sets up (RFC 4028 §7.2): none without Session-Expires.
pub(crate) fn from_response(resp: &Message) -> Option<SessionTimer> {
    let se = resp.session_expires().ok().flatten()?;
    let refresher = match se.refresher() {
        Some(Refresher::Uas) => Side::Remote,
        // A 2xx must name the refresher (§9); if it does not, refreshing ourselves is the safe choice.
        Some(Refresher::Uac) | None => Side::Local,
    };
    Some(SessionTimer { interval: se.seconds.max(1), refresher })
}

/// The Session-Expires and Min-SE a request of ours carries (RFC 4028 §7.1, §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offer {
    interval: u32,
    refresher: Option<&'static str>,
    min_se: u32,
}

/// What our request asks for: the running timer (its refresher written as seen in this
/// transaction, where we are the UAC), else our configured interval. `at_least` is the largest
/// Min-SE a 422 taught us (§7.4). `None` when session timers are off.
pub(crate) fn offer(cfg: &DialogConfig, current: Option<SessionTimer>, at_least: u32) -> Option<Offer> {
    let min_se = secs(cfg.min_se).max(MIN_SE_FLOOR).max(at_least);
    if let Some(t) = current {
        return Some(Offer { interval: t.interval.max(at_least), refresher: Some(t.param(true)), min_se });
    }
    let interval = secs(cfg.session_expires?).max(at_least);
    let refresher = cfg.refresher.map(|r| match r {
        Refresher::Uac => "uac",
        Refresher::Uas => "uas",
    });
    Some(Offer { interval, refresher, min_se })
}

/// Writes `Supported: timer`, Session-Expires and Min-SE for `offer`.
pub(crate) fn write_request(b: &mut MessageBuilder, offer: Option<Offer>) {
    let Some(o) = offer else { return };
    b.push(HeaderName::Supported, "timer");
    match o.refresher {
        Some(r) => b.push(HeaderName::SessionExpires, format_args!("{};refresher={r}", o.interval)),
        None => b.push(HeaderName::SessionExpires, o.interval),
    }
    b.push(HeaderName::MinSe, o.min_se);
}

/// Session timer headers for our 2xx (RFC 4028 §9): Session-Expires with the refresher, and
/// `Require: timer` when the UAC refreshes.
pub(crate) fn write_response(b: &mut MessageBuilder, timer: Option<SessionTimer>) {
    let Some(t) = timer else { return };
    let param = t.param(false);
    b.push(HeaderName::Supported, "timer");
    b.push(HeaderName::SessionExpires, format_args!("{};refresher={param}", t.interval));
    if param == "uac" {
        b.push(HeaderName::Require, "timer");
    }
}

/// The 422 answer (RFC 4028 §6): Min-SE carries our minimum.
pub(crate) fn too_small(req: &Message, to_tag: &str, min_se: u32) -> Message {
    req.response_to(422, "Session Interval Too Small", Some(to_tag)).header(HeaderName::MinSe, min_se).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn invite(extra: &str) -> Message {
        let wire = format!(
            "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@h>;tag=A\r\nTo: <sip:b@h>\r\n\
             Call-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(wire)).unwrap()
    }

    #[test]
    fn uas_negotiation_table() {
        let cfg = DialogConfig::default();
        let n = |extra: &str| negotiate_uas(&invite(extra), &cfg);
        assert_eq!(n("Supported: timer\r\nSession-Expires: 60\r\n"), Negotiated::TooSmall(90));
        let on = |interval, refresher| Negotiated::On(SessionTimer { interval, refresher });
        assert_eq!(n("Supported: timer\r\nSession-Expires: 600;refresher=uas\r\n"), on(600, Side::Local));
        assert_eq!(n("Supported: timer\r\nSession-Expires: 600;refresher=uac\r\n"), on(600, Side::Remote));
        assert_eq!(n("Supported: timer\r\nSession-Expires: 600\r\n"), on(600, Side::Remote));
        // No UAC support: the UAS refreshes, and a small value is not answered with 422.
        assert_eq!(n("Session-Expires: 600;refresher=uac\r\n"), on(600, Side::Local));
        assert_eq!(n("Session-Expires: 60\r\n"), on(90, Side::Local));
        // Nothing asked: our configured interval, never below the request's Min-SE.
        assert_eq!(n("Supported: timer\r\nMin-SE: 2000\r\n"), on(2000, Side::Remote));
        assert_eq!(n(""), on(1800, Side::Local));
        let off = DialogConfig { session_expires: None, ..DialogConfig::default() };
        assert_eq!(negotiate_uas(&invite(""), &off), Negotiated::Off);
    }

    #[test]
    fn deadlines() {
        let t = SessionTimer { interval: 90, refresher: Side::Local };
        assert_eq!(t.refresh_after(), Duration::from_secs(45));
        assert_eq!(t.expire_after(), Duration::from_secs(60));
        let long = SessionTimer { interval: 1800, refresher: Side::Remote };
        assert_eq!(long.expire_after(), Duration::from_secs(1768));
    }
}
