//! One leg of a relay: where its phone said to send (SDP), where it actually sends from (the
//! latches of RFC 4961 symmetric RTP), and what it sent (RFC 3550 A.1/A.3/A.8 via
//! [`ReceiverStats`]).

use super::classify::RtpHeader;
use super::latch::{Latch, Rank, Rules, RTCP_RELATCH_IDLE};
use super::{LegPorts, LegStats, RemoteMedia};
use crate::application::FlowId;
use crate::media::rtp::RtpPacket;
use crate::media::stats::{ReceiverStats, Verdict};
use crate::media::SAMPLE_RATE;
use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Loss and jitter of what a phone sends, across SSRC changes: [`ReceiverStats`] follows one
/// SSRC, so a new SSRC (a re-INVITE, a restarted phone) closes the old stream's loss into `lost_before`
/// and starts anew, instead of counting the jump as loss.
#[derive(Debug, Clone)]
pub(super) struct StreamStats {
    current: ReceiverStats,
    clock_rate: u32,
    lost_before: i64,
}

impl StreamStats {
    pub(super) fn new(clock_rate: u32) -> StreamStats {
        StreamStats { current: ReceiverStats::new(clock_rate), clock_rate, lost_before: 0 }
    }

    /// A.1/A.8 for one packet. The payload is not needed (the relay counts bytes itself), so the
    /// packet is built around an empty `Bytes`, which does not allocate.
    pub(super) fn handle(&mut self, h: &RtpHeader, now: Instant) {
        let packet = RtpPacket {
            payload_type: h.payload_type,
            marker: false,
            sequence: h.sequence,
            timestamp: h.timestamp,
            ssrc: h.ssrc,
            payload: Bytes::new(),
        };
        if self.current.handle_packet(&packet, now) == Verdict::ForeignSsrc {
            self.restart(self.clock_rate);
            self.current.handle_packet(&packet, now);
        }
    }

    /// Closes the current stream (new SSRC or new clock rate).
    pub(super) fn restart(&mut self, clock_rate: u32) {
        self.lost_before += self.current.lost();
        self.clock_rate = clock_rate;
        self.current = ReceiverStats::new(clock_rate);
    }

    pub(super) fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    pub(super) fn lost(&self) -> i64 {
        self.lost_before + self.current.lost()
    }

    /// Jitter of the current SSRC; 0 until two packets of it arrived.
    pub(super) fn jitter_ms(&self) -> f64 {
        self.current.jitter_ms()
    }
}

/// Inactivity bookkeeping of a leg; the timer heap lives in [`super::timer`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Silence {
    /// Later of: insert, last RTP from the phone, last `set_remote`.
    pub(super) since: Instant,
    /// An entry for this leg is in the timer heap.
    pub(super) armed: bool,
    /// Reported silent; stays so until the phone sends or signals again.
    pub(super) reported: bool,
}

/// Everything about one leg.
#[derive(Debug, Clone)]
pub(super) struct LegState {
    pub(super) ports: LegPorts,
    /// What the phone declared last; `None` before the first `set_remote`.
    pub(super) remote: Option<RemoteMedia>,
    /// The last RTP / RTCP address the SDP gave (kept through a hold without address), to tell a
    /// new address from a resumed one.
    last_sdp_rtp: Option<SocketAddr>,
    last_sdp_rtcp: Option<SocketAddr>,
    pub(super) rtp_latch: Latch,
    pub(super) rtcp_latch: Latch,
    /// The phone sent RTCP on its RTP port (RFC 5761 multiplexing): RTCP to it goes there too.
    pub(super) rtcp_muxed: bool,
    pub(super) stream: StreamStats,
    /// Counters; `lost` and `jitter_ms` are filled in by [`LegState::stats`].
    pub(super) counts: LegStats,
    pub(super) silence: Silence,
    /// The learning window (`rtp_learning_ms`).
    window: Duration,
    /// The IP the phone's SIP messages come from, if the signalling layer said.
    pub(super) peer_ip: Option<IpAddr>,
}

impl LegState {
    pub(super) fn new(ports: LegPorts, now: Instant, window: Duration) -> LegState {
        LegState {
            ports,
            remote: None,
            last_sdp_rtp: None,
            last_sdp_rtcp: None,
            rtp_latch: Latch::default(),
            rtcp_latch: Latch::default(),
            rtcp_muxed: false,
            stream: StreamStats::new(SAMPLE_RATE),
            counts: LegStats::default(),
            silence: Silence { since: now, armed: false, reported: false },
            window,
            peer_ip: None,
        }
    }

    /// Takes a new SDP. A new RTP (RTCP) address restarts learning ranked against it (a re-INVITE
    /// moved the phone); the same address or none (hold with c=0.0.0.0) keeps the latch and counts it as
    /// heard now, so a resume sends to the NAT binding at once and no stranger can take it over
    /// before the phone had a window to talk again.
    pub(super) fn set_remote(&mut self, remote: RemoteMedia, now: Instant) {
        if let Some(new) = remote.rtp {
            if self.last_sdp_rtp != Some(new) {
                self.rtp_latch.reset();
                self.rtcp_muxed = false;
            }
            self.last_sdp_rtp = Some(new);
        }
        if let Some(new) = remote.rtcp {
            if self.last_sdp_rtcp != Some(new) {
                self.rtcp_latch.reset();
            }
            self.last_sdp_rtcp = Some(new);
        }
        self.rtp_latch.refresh(now);
        self.rtcp_latch.refresh(now);
        if remote.clock_rate != self.stream.clock_rate() {
            self.stream.restart(remote.clock_rate);
        }
        self.remote = Some(remote);
        self.silence.since = now;
        self.silence.reported = false;
    }

    /// The phone is expected to send RTP: it said so, or it has not said anything yet (the call is
    /// set up and its SDP is on its way).
    pub(super) fn sends(&self) -> bool {
        self.remote.is_none_or(|r| r.sends)
    }

    /// The phone has given an SDP address (now or before a hold).
    pub(super) fn has_sdp(&self) -> bool {
        self.last_sdp_rtp.is_some()
    }

    /// On hold: the phone's latest SDP is not sendrecv with an address (RFC 3264 §8.4, from
    /// either side). Its latches do not move meanwhile.
    fn held(&self) -> bool {
        self.remote.is_some_and(|r| !(r.sends && r.receives) || r.rtp.is_none())
    }

    /// Whether a packet on the RTP port (RTP, or RTCP multiplexed on it) from `source` is the
    /// phone's; learns and latches (module doc). Before the phone's first SDP nothing is: there
    /// is nothing to rank against, and the phone has not yet said it sends. `started`: the other
    /// phone's SDP is known too, so this phone may have been told where to send.
    pub(super) fn accept_on_rtp_port(&mut self, source: SocketAddr, now: Instant, started: bool) -> bool {
        if self.last_sdp_rtp.is_none() {
            return false;
        }
        let rules = Rules {
            sdp: self.last_sdp_rtp,
            rtp_ip: None,
            window: self.window,
            idle: self.window,
            frozen: self.held(),
            started,
            min_rank: Rank::Any,
            peer_ip: self.peer_ip,
        };
        self.rtp_latch.accept(source, now, &rules)
    }

    /// The same for the RTCP port, ranked against the SDP's RTCP address, the SIP IP, then the
    /// IP RTP is latched to; a source with none of these IPs is never learned (RTCP goes where RTP goes, and a
    /// stranger must not learn the other phone's SSRC and reports by winning an RTCP window
    /// before the phone's first report).
    pub(super) fn accept_on_rtcp_port(&mut self, source: SocketAddr, now: Instant, started: bool) -> bool {
        if self.last_sdp_rtp.is_none() {
            return false;
        }
        let rules = Rules {
            sdp: self.last_sdp_rtcp,
            rtp_ip: self.rtp_latch.addr().map(|a| a.ip()),
            window: self.window,
            idle: self.window.max(RTCP_RELATCH_IDLE),
            frozen: self.held(),
            started,
            min_rank: Rank::RtpIp,
            peer_ip: self.peer_ip,
        };
        self.rtcp_latch.accept(source, now, &rules)
    }

    /// Latches what won a window that is over (before routing a packet to this phone).
    pub(super) fn settle(&mut self, now: Instant) {
        let held = self.held();
        self.rtp_latch.settle(now, held);
        self.rtcp_latch.settle(now, held);
    }

    /// Where RTP to the phone goes, ignoring hold: the latched source, else the SDP address.
    pub(super) fn rtp_addr(&self) -> Option<SocketAddr> {
        self.rtp_latch.addr().or(self.remote.and_then(|r| r.rtp))
    }

    /// Where RTP to the phone goes now: nowhere if it said it does not receive (hold), or gave no
    /// address (c=0.0.0.0, RFC 3264 §8.4).
    pub(super) fn rtp_route(&self) -> Option<(FlowId, SocketAddr)> {
        match self.remote {
            Some(r) if !r.receives || r.rtp.is_none() => None,
            _ => self.rtp_addr().map(|a| (self.ports.rtp, a)),
        }
    }

    /// Where RTCP to the phone goes, hold or not (RFC 3264 §5.1: RTCP keeps flowing on a held
    /// stream). On the RTP port when multiplexed: the relay has no RTCP port for this leg, the phone
    /// sent RTCP on its RTP port, or its SDP gave the RTP address for RTCP (a=rtcp-mux).
    pub(super) fn rtcp_route(&self) -> Option<(FlowId, SocketAddr)> {
        let sdp_muxed = self.remote.is_some_and(|r| r.rtcp.is_some() && r.rtcp == r.rtp);
        match self.ports.rtcp {
            Some(flow) if !self.rtcp_muxed && !sdp_muxed => self.rtcp_latch.addr().or(self.remote.and_then(|r| r.rtcp)).map(|a| (flow, a)),
            _ => self.rtp_addr().map(|a| (self.ports.rtp, a)),
        }
    }

    /// A.1/A.8 and the counters for one accepted RTP packet of `len` bytes. Returns true if the
    /// leg needs a timer entry (it had none).
    pub(super) fn record_rtp(&mut self, h: &RtpHeader, len: usize, now: Instant) -> bool {
        self.stream.handle(h, now);
        self.counts.packets += 1;
        self.counts.bytes += len as u64;
        self.counts.last_packet = Some(now);
        self.silence.since = now;
        self.silence.reported = false;
        !self.silence.armed
    }

    pub(super) fn stats(&self) -> LegStats {
        LegStats { lost: self.stream.lost(), jitter_ms: self.stream.jitter_ms(), ..self.counts }
    }
}
