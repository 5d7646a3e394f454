//! One leg of a relay: where its phone said to send (SDP), where it actually sends from (the
//! latches of RFC 4961 symmetric RTP), and what it sent (RFC 3550 A.1/A.3/A.8 via
//! [`ReceiverStats`]).

use super::classify::RtpHeader;
use super::{LegPorts, LegStats, RemoteMedia};
use crate::driver::FlowId;
use crate::media::rtp::RtpPacket;
use crate::media::stats::{ReceiverStats, Verdict};
use crate::media::SAMPLE_RATE;
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a latched RTP source must be silent before another source may take the latch: a
/// phone sends every 20-30 ms, so a second of silence means it moved (NAT rebinding, a restarted
/// phone); a stray packet while it still talks is dropped instead of stealing the audio.
pub(super) const RTP_RELATCH_IDLE: Duration = Duration::from_secs(1);

/// The same for RTCP, which a phone sends only every 5 s on average, randomized up to 1.5 times
/// that (RFC 3550 §6.2, §6.3.1): 10 s is longer than one interval.
pub(super) const RTCP_RELATCH_IDLE: Duration = Duration::from_secs(10);

/// Where one of the phone's ports sends from (RFC 4961 §4: a symmetric endpoint sends from the
/// port it receives on, so its source is where to send it).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Latch {
    /// The latched source and when it was last heard.
    source: Option<(SocketAddr, Instant)>,
}

impl Latch {
    /// Whether a packet from `source` comes from the phone. The first source latches; the
    /// latched one is refreshed; another one takes over only after `idle` of silence.
    pub(super) fn accept(&mut self, source: SocketAddr, now: Instant, idle: Duration) -> bool {
        match &mut self.source {
            Some((latched, heard)) if *latched == source => *heard = now,
            Some((_, heard)) if now.saturating_duration_since(*heard) <= idle => return false,
            slot => *slot = Some((source, now)),
        }
        true
    }

    pub(super) fn addr(&self) -> Option<SocketAddr> {
        self.source.map(|(a, _)| a)
    }

    pub(super) fn reset(&mut self) {
        self.source = None;
    }
}

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
}

impl LegState {
    pub(super) fn new(ports: LegPorts, now: Instant) -> LegState {
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
        }
    }

    /// Takes a new SDP. A new RTP (RTCP) address drops the latch, so the next packet latches
    /// afresh (a re-INVITE moved the phone); no address (hold with c=0.0.0.0) keeps it, so a resume
    /// to the same address sends to the NAT binding at once.
    pub(super) fn set_remote(&mut self, remote: RemoteMedia, now: Instant) {
        if let Some(new) = remote.rtp {
            if self.last_sdp_rtp.is_some_and(|old| old != new) {
                self.rtp_latch.reset();
                self.rtcp_muxed = false;
            }
            self.last_sdp_rtp = Some(new);
        }
        if let Some(new) = remote.rtcp {
            if self.last_sdp_rtcp.is_some_and(|old| old != new) {
                self.rtcp_latch.reset();
            }
            self.last_sdp_rtcp = Some(new);
        }
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
