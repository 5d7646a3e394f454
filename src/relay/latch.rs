//! One port's latch (RFC 4961 symmetric RTP) learned as rtpengine's `--endpoint-learning=heuristic`
//! does: sources ranked against what the phone declared, a learning window, and a latch that a
//! source matching no better never moves while the phone talks. The rules are in the
//! [relay module doc](super); [`super::leg`] builds the [`Rules`] from a leg's SDP and hold state.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The shortest time a latched RTCP source must be silent before it counts as gone: a phone
/// sends RTCP only every 5 s on average, randomized up to 1.5 times that (RFC 3550 §6.2, §6.3.1),
/// so 10 s is longer than one interval. RTP uses the learning window itself.
pub(super) const RTCP_RELATCH_IDLE: Duration = Duration::from_secs(10);

/// How well a packet's source matches what the phone declared, best last: rtpengine's heuristic
/// order (SDP address, SDP IP, any), with two steps it has no way to know between the last two:
/// the IP the phone's SIP comes from, and for RTCP the IP the leg's RTP is latched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Rank {
    /// Nothing in common with the phone: a NAT binding the signalling did not show, or a stranger.
    Any,
    /// RTCP from the IP the leg's RTP is latched to.
    RtpIp,
    /// The IP the phone's SIP messages come from (its NAT's public address, for a phone that
    /// put its private address in the SDP).
    PeerIp,
    /// The SDP's IP, another port (a NAT that keeps the address and changes the port).
    SdpIp,
    /// Exactly the SDP's IP and port.
    Sdp,
}

impl Rank {
    fn of(source: SocketAddr, rules: &Rules) -> Rank {
        match rules.sdp {
            Some(sdp) if sdp == source => Rank::Sdp,
            Some(sdp) if sdp.ip() == source.ip() => Rank::SdpIp,
            _ if rules.peer_ip == Some(source.ip()) => Rank::PeerIp,
            _ if rules.rtp_ip == Some(source.ip()) => Rank::RtpIp,
            _ => Rank::Any,
        }
    }
}

/// What a [`Latch`] weighs a packet against: the leg's SDP and hold state at that moment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    /// The address the phone's latest SDP names for this port (kept through a hold without one).
    pub(super) sdp: Option<SocketAddr>,
    /// For RTCP: the IP the leg's RTP is latched to.
    pub(super) rtp_ip: Option<IpAddr>,
    /// The IP the phone's SIP messages come from.
    pub(super) peer_ip: Option<IpAddr>,
    /// The learning window (`rtp_learning_ms`).
    pub(super) window: Duration,
    /// How long the latched source may be silent before another may be learned.
    pub(super) idle: Duration,
    /// The leg is on hold (not sendrecv): the latch does not move.
    pub(super) frozen: bool,
    /// Media has started (both phones' SDP known): until then nothing new is learned.
    pub(super) started: bool,
    /// Sources ranked below this are never learned (RTCP: they must share an IP with the SDP or
    /// with the RTP latch).
    pub(super) min_rank: Rank,
}

/// A learning window in progress: the best source so far and when the window closes.
#[derive(Debug, Clone, Copy)]
struct Learning {
    best: SocketAddr,
    until: Instant,
}

/// Where one of the phone's ports sends from (RFC 4961 §4: a symmetric endpoint sends from the
/// port it receives on, so its source is where to send it), learned as the module doc says.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Latch {
    /// The latched source and when it was last heard.
    source: Option<(SocketAddr, Instant)>,
    /// A window in progress: none latched yet, or the latched source went silent.
    learning: Option<Learning>,
}

impl Latch {
    /// Whether a packet from `source` at `now` comes from the phone (and is relayed). Settles a
    /// window that is over first; see the module doc for the rules.
    pub(super) fn accept(&mut self, source: SocketAddr, now: Instant, rules: &Rules) -> bool {
        self.settle(now, rules.frozen);
        let rank = Rank::of(source, rules);
        let incumbent = match &mut self.source {
            Some((latched, heard)) if *latched == source => {
                // The phone is back (or never left): a challenger's window ends unanswered.
                *heard = now;
                self.learning = None;
                return true;
            }
            Some(_) if rules.frozen => return false,
            Some((latched, _)) if rank > Rank::of(*latched, rules) => {
                // It would have won the window: a latch won by a worse match never locks out a
                // better one (the phone itself, after a stranger won a window it did not send in).
                self.source = Some((source, now));
                self.learning = None;
                return true;
            }
            Some((_, heard)) if now.saturating_duration_since(*heard) <= rules.idle => return false,
            Some(_) => true,
            None => false,
        };
        // On hold, only the SDP's own address may latch: nothing is learned from strangers while
        // the phone is not expected to talk; nor before media has started.
        if !rules.started || rank < rules.min_rank || (rules.frozen && rank != Rank::Sdp) {
            return false;
        }
        let best = match &mut self.learning {
            Some(l) if l.best == source => true,
            Some(l) if rank > Rank::of(l.best, rules) => {
                l.best = source;
                true
            }
            Some(_) => false,
            None => {
                self.learning = Some(Learning { best: source, until: now.checked_add(rules.window).unwrap_or(now) });
                true
            }
        };
        if best && rank == Rank::Sdp {
            // Nothing can rank higher: no need to wait for the window (rtpengine 13.5's early return).
            self.source = Some((source, now));
            self.learning = None;
            return true;
        }
        // While nothing is latched, the best candidate's packets pass if it has the SDP's IP or
        // the phone's SIP IP; one that shares neither (a stranger's spray racing the phone's first
        // packet) passes nothing until it has won the window, so a stranger cannot talk into the
        // call either. While a silent incumbent holds the latch, a challenger passes nothing until
        // it has won.
        best && !incumbent && rank >= Rank::PeerIp
    }

    /// Latches the best candidate once its window is over (not while on hold).
    pub(super) fn settle(&mut self, now: Instant, frozen: bool) {
        match self.learning {
            Some(l) if !frozen && now >= l.until => {
                self.source = Some((l.best, now));
                self.learning = None;
            }
            _ => {}
        }
    }

    /// The latched source, if any.
    pub(super) fn addr(&self) -> Option<SocketAddr> {
        self.source.map(|(a, _)| a)
    }

    /// The phone signalled (a new SDP): its latched source counts as heard now, so it gets a whole
    /// window to send again before anyone else may be learned (after a resume, say).
    pub(super) fn refresh(&mut self, now: Instant) {
        if let Some((_, heard)) = &mut self.source {
            *heard = now;
        }
    }

    /// Forgets the latch and any window: learning starts again with the next packet.
    pub(super) fn reset(&mut self) {
        *self = Latch::default();
    }
}
