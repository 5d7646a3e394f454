//! One call's audio stream (sans-IO): what to send every 20 ms, what came in, and the figures.
//!
//! Inputs: [`MediaSession::handle_rtp`], [`MediaSession::handle_rtcp`], [`MediaSession::handle_timeout`]
//! and commands ([`MediaSession::send_dtmf`], [`MediaSession::update`] for hold/resume). Outputs:
//! [`MediaSession::poll_transmit`], [`MediaSession::poll_event`], [`MediaSession::poll_timeout`].
//! Sending is paced on a fixed schedule (packet n at start + n·20 ms, no drift); receiving goes
//! through the jitter buffer into an optional recording; RTP is symmetric (RFC 4961: we send to
//! where the peer's packets come from); RTCP reports go out every few seconds, also on hold.

use super::negotiate::Negotiated;
use crate::media::dtmf::{DtmfConfig, DtmfReceiver, DtmfSender};
use crate::media::g711::Codec;
use crate::media::jitter::{JitterBuffer, JitterConfig};
use crate::media::pacer::Pacer;
use crate::media::rtcp::{build_report, parse_compound, NtpTime, RtcpPacket, SenderInfo};
use crate::media::rtp::{DatagramCounters, DatagramKind, RtpPacket, RtpSender, SenderConfig};
use crate::media::stats::ReceiverStats;
use crate::media::tone::ToneGenerator;
use crate::media::{FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};
use crate::sdp::Direction;
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What we send.
#[derive(Debug, Clone)]
pub enum Source {
    /// Silence (packets still flow, so the peer sees a live stream).
    Silence,
    /// A sine tone.
    Tone(ToneGenerator),
    /// Samples (8 kHz mono), played from the start and looped.
    Samples {
        /// The audio.
        pcm: Arc<[i16]>,
        /// Next sample.
        pos: usize,
    },
    /// Send back what arrives (the service's echo user).
    Echo,
}

impl Source {
    fn next_frame(&mut self) -> [i16; FRAME_SAMPLES] {
        match self {
            Source::Tone(t) => t.next_frame(),
            Source::Samples { pcm, pos } if !pcm.is_empty() => {
                let mut out = [0i16; FRAME_SAMPLES];
                for s in out.iter_mut() {
                    *s = pcm[*pos];
                    *pos = (*pos + 1) % pcm.len();
                }
                out
            }
            _ => [0; FRAME_SAMPLES],
        }
    }
}

/// Which socket a datagram goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The RTP port.
    Rtp,
    /// The RTCP port (RTP + 1).
    Rtcp,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct MediaTransmit {
    /// Which of our sockets.
    pub channel: Channel,
    /// Where to.
    pub dest: SocketAddr,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// What the session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// A DTMF digit arrived (RFC 4733), reported once.
    Dtmf(char),
    /// Nothing (RTP or RTCP) arrived for the inactivity timeout: the call should end.
    Inactive,
    /// The peer's packets come from another address than signalled; we now send there (latching).
    Latched(SocketAddr),
}

/// Settings of a media session.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// End the call when nothing arrives for this long (`None`: never).
    pub inactivity_timeout: Option<Duration>,
    /// Jitter buffer settings.
    pub jitter: JitterConfig,
    /// Interval between our RTCP reports (RFC 3550 §6.2 suggests 5 s minimum).
    pub rtcp_interval: Duration,
    /// Keep what we receive (decoded) for a recording.
    pub record: bool,
    /// RTCP CNAME (RFC 3550 §6.5.1), e.g. `user@host`.
    pub cname: String,
    /// DTMF timing.
    pub dtmf: DtmfConfig,
    /// Seed for SSRC, first sequence number and timestamp.
    pub seed: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            inactivity_timeout: None,
            jitter: JitterConfig::default(),
            rtcp_interval: Duration::from_secs(5),
            record: false,
            cname: "switchboard@127.0.0.1".into(),
            dtmf: DtmfConfig::default(),
            seed: 1,
        }
    }
}

/// Figures of one session, for summaries and call records.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSummary {
    /// The codec.
    pub codec: Codec,
    /// RTP packets we sent (audio and events).
    pub packets_sent: u64,
    /// RTP packets we received from the peer's stream.
    pub packets_received: u64,
    /// Packets lost (RFC 3550 A.3: expected minus received).
    pub packets_lost: i64,
    /// Interarrival jitter in ms (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// DTMF digits received, in order.
    pub dtmf_received: String,
    /// Datagrams on the media ports that were not RTP/RTCP (STUN, garbage): ignored.
    pub non_rtp_dropped: u64,
    /// Last round-trip time from RTCP, in ms.
    pub rtt_ms: Option<f64>,
}

/// One audio stream.
#[derive(Debug)]
pub struct MediaSession {
    neg: Negotiated,
    config: MediaConfig,
    source: Source,
    sender: RtpSender,
    pacer: Pacer,
    stats: ReceiverStats,
    jitter: JitterBuffer,
    dtmf_tx: DtmfSender,
    dtmf_rx: Option<DtmfReceiver>,
    counters: DatagramCounters,
    remote_rtp: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    latched: bool,
    /// Holding the peer: no audio goes out (we have no music on hold), RTCP still does.
    muted: bool,
    recording: Vec<i16>,
    last_activity: Instant,
    inactive_reported: bool,
    next_rtcp: Instant,
    /// Wall-clock time at `origin`, for RTCP NTP timestamps (the core reads no clock).
    origin: (Instant, Duration),
    digits: String,
    rtt_ms: Option<f64>,
    transmits: VecDeque<MediaTransmit>,
    events: VecDeque<MediaEvent>,
}

impl MediaSession {
    /// Starts media at `now` with what was negotiated. `wall_clock` is the time since the Unix epoch
    /// at `now` (for RTCP sender reports).
    pub fn new(neg: Negotiated, source: Source, config: MediaConfig, now: Instant, wall_clock: Duration) -> MediaSession {
        // G.711 payload types (0, 8) are always valid for RtpSender; frames are 20 ms (ptime is a
        // preference, RFC 3264 §5, and every peer we meet accepts 20 ms).
        let sender = match RtpSender::new(SenderConfig::from_seed(neg.codec.payload_type(), config.seed)) {
            Ok(s) => s,
            Err(_) => unreachable!("G.711 payload types 0 and 8 are valid RTP payload types"),
        };
        let dtmf_cfg = DtmfConfig { payload_type: neg.dtmf_payload_type.unwrap_or(101), ..config.dtmf };
        MediaSession {
            source,
            sender,
            pacer: Pacer::new(now, FRAME_DURATION),
            stats: ReceiverStats::new(SAMPLE_RATE),
            jitter: JitterBuffer::new(config.jitter),
            dtmf_tx: DtmfSender::new(dtmf_cfg),
            dtmf_rx: neg.dtmf_payload_type.map(DtmfReceiver::new),
            counters: DatagramCounters::default(),
            remote_rtp: neg.remote_rtp,
            remote_rtcp: neg.remote_rtcp,
            latched: false,
            muted: false,
            recording: Vec::new(),
            last_activity: now,
            inactive_reported: false,
            // RFC 3550 §6.2: the first report after half an interval, randomised so peers that
            // start together do not report in lockstep.
            next_rtcp: now
                + config.rtcp_interval / 2
                + config.rtcp_interval.mul_f64((config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as f64 / 2048.0),
            origin: (now, wall_clock),
            digits: String::new(),
            rtt_ms: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            neg,
            config,
        }
    }

    /// What was negotiated (updated by [`MediaSession::update`]).
    pub fn negotiated(&self) -> &Negotiated {
        &self.neg
    }

    /// Stops (`true`) or restarts sending audio, e.g. while we hold the peer (RFC 3264 §8.4 lets
    /// the holder send music on hold; we have none, so the held party hears nothing).
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// A new offer/answer result: hold, resume, new address or codec (RFC 3264 §8).
    pub fn update(&mut self, neg: Negotiated) {
        if !self.latched || neg.remote_rtp.is_none() {
            self.remote_rtp = neg.remote_rtp;
            self.remote_rtcp = neg.remote_rtcp;
        }
        if neg.dtmf_payload_type != self.neg.dtmf_payload_type {
            self.dtmf_rx = neg.dtmf_payload_type.map(DtmfReceiver::new);
        }
        self.neg = neg;
    }

    /// Counts the peer's silence from `now` again: a call answered after early media (RFC 3960),
    /// whose callee may have sent nothing while it rang, gets a whole inactivity timeout.
    pub fn restart_inactivity(&mut self, now: Instant) {
        self.last_activity = now;
        self.inactive_reported = false;
    }

    /// Queues DTMF digits (`0-9 * # A-D`) to send as telephone events.
    pub fn send_dtmf(&mut self, digits: &str) -> Result<(), crate::media::dtmf::DtmfError> {
        self.dtmf_tx.send_digits(digits)
    }

    /// A datagram on our RTP port.
    pub fn handle_rtp(&mut self, source: SocketAddr, datagram: Bytes, now: Instant) {
        match self.counters.classify(&datagram) {
            DatagramKind::Rtp => {}
            DatagramKind::Rtcp => return self.handle_rtcp(source, datagram, now),
            _ => return,
        }
        let Ok(packet) = RtpPacket::parse(&datagram) else { return };
        self.last_activity = now;
        self.inactive_reported = false;
        // Symmetric RTP (RFC 4961): answer where the packets really come from (NAT).
        // A peer that holds with 0.0.0.0 gets nothing, whatever it sends.
        if self.neg.remote_rtp.is_some() && self.remote_rtp != Some(source) {
            self.remote_rtp = Some(source);
            self.remote_rtcp = Some(SocketAddr::new(source.ip(), source.port().saturating_add(1)));
            self.latched = true;
            self.events.push_back(MediaEvent::Latched(source));
        }
        // Telephone events share the stream's SSRC and sequence numbers (RFC 4733 §2.1): count them
        // too, or every digit would look like loss.
        self.stats.handle_packet(&packet, now);
        if Some(packet.payload_type) == self.neg.dtmf_payload_type {
            if let Some(d) = self.dtmf_rx.as_mut().and_then(|rx| rx.handle_packet(&packet)) {
                self.digits.push(d.digit);
                self.events.push_back(MediaEvent::Dtmf(d.digit));
            }
            return;
        }
        if matches!(self.source, Source::Echo) {
            if self.neg.direction.sends() {
                if let Some(dest) = self.remote_rtp {
                    let payload = self.sender.send_audio(&packet.payload);
                    self.transmits.push_back(MediaTransmit { channel: Channel::Rtp, dest, payload });
                }
            }
            return;
        }
        if self.config.record {
            // What became of it (buffered, late, duplicate, overflow) is in the buffer's stats.
            self.jitter.push(packet, now);
        }
    }

    /// A datagram on our RTCP port.
    pub fn handle_rtcp(&mut self, source: SocketAddr, datagram: Bytes, now: Instant) {
        let Ok(packets) = parse_compound(&datagram) else { return };
        self.last_activity = now;
        self.inactive_reported = false;
        if self.latched {
            self.remote_rtcp = Some(source);
        }
        for p in packets {
            match p {
                RtcpPacket::SenderReport { info, reports, .. } => {
                    self.stats.handle_sender_report(info.ntp, now);
                    self.note_rtt(&reports, now);
                }
                RtcpPacket::ReceiverReport { reports, .. } => self.note_rtt(&reports, now),
                _ => {}
            }
        }
    }

    fn ntp_now(&self, now: Instant) -> NtpTime {
        NtpTime::from_unix(self.origin.1 + now.saturating_duration_since(self.origin.0))
    }

    fn note_rtt(&mut self, reports: &[crate::media::rtcp::ReportBlock], now: Instant) {
        let ours = self.sender.ssrc();
        if let Some(block) = reports.iter().find(|b| b.ssrc == ours) {
            let arrival = self.ntp_now(now).middle32();
            if let Some(rtt) = crate::media::rtcp::round_trip_time(arrival, block.last_sr, block.delay_since_last_sr) {
                self.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
            }
        }
    }

    /// Advances pacing, playout, RTCP and the inactivity check.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(_slot) = self.pacer.poll_due(now) {
            self.send_slot();
        }
        while let Some(frame) = self.jitter.pop(now) {
            if self.config.record {
                self.recording.extend_from_slice(&frame.decode(self.neg.codec));
            }
        }
        if now >= self.next_rtcp {
            self.send_rtcp(now);
            self.next_rtcp = now + self.config.rtcp_interval;
        }
        if let Some(limit) = self.config.inactivity_timeout {
            if !self.inactive_reported && now.saturating_duration_since(self.last_activity) >= limit {
                self.inactive_reported = true;
                self.events.push_back(MediaEvent::Inactive);
            }
        }
    }

    /// One 20 ms slot: a telephone event, an audio frame, or nothing (on hold, or echo mode).
    fn send_slot(&mut self) {
        let dest = self.remote_rtp.filter(|_| self.neg.direction.sends() && !self.muted);
        let Some(dest) = dest else {
            self.sender.skip_frame();
            return;
        };
        if let Some(ev) = self.dtmf_tx.poll_frame(self.sender.timestamp()) {
            let payload = self.sender.send_event(ev.payload_type, ev.marker, ev.timestamp, &ev.event.to_bytes());
            self.transmits.push_back(MediaTransmit { channel: Channel::Rtp, dest, payload });
            return;
        }
        if matches!(self.source, Source::Echo) {
            // Echo sends only what arrives, from handle_rtp.
            return;
        }
        let pcm = self.source.next_frame();
        let payload = self.neg.codec.encode(&pcm);
        let packet = self.sender.send_audio(&payload);
        self.transmits.push_back(MediaTransmit { channel: Channel::Rtp, dest, payload: packet });
    }

    fn send_rtcp(&mut self, now: Instant) {
        let Some(dest) = self.remote_rtcp else { return };
        let sender_info = (self.sender.packets_sent() > 0).then(|| SenderInfo {
            ntp: self.ntp_now(now),
            rtp_timestamp: self.sender.timestamp(),
            packet_count: self.sender.packets_sent(),
            octet_count: self.sender.octets_sent(),
        });
        let reports = self.stats.report_block(now).into_iter().collect();
        let payload = build_report(self.sender.ssrc(), sender_info, reports, &self.config.cname);
        self.transmits.push_back(MediaTransmit { channel: Channel::Rtcp, dest, payload });
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<MediaTransmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// When to call [`MediaSession::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let inactivity = self.config.inactivity_timeout.filter(|_| !self.inactive_reported).map(|t| self.last_activity + t);
        [self.pacer.poll_timeout(), self.jitter.poll_timeout(), Some(self.next_rtcp), inactivity].into_iter().flatten().min()
    }

    /// The figures so far.
    pub fn summary(&self) -> MediaSummary {
        MediaSummary {
            codec: self.neg.codec,
            packets_sent: u64::from(self.sender.packets_sent()),
            packets_received: self.stats.packets_received(),
            packets_lost: self.stats.lost(),
            jitter_ms: self.stats.jitter_ms(),
            dtmf_received: self.digits.clone(),
            non_rtp_dropped: self.counters.other,
            rtt_ms: self.rtt_ms,
        }
    }

    /// Takes the recording (decoded received audio, 8 kHz mono).
    pub fn take_recording(&mut self) -> Vec<i16> {
        std::mem::take(&mut self.recording)
    }

    /// Our direction now.
    pub fn direction(&self) -> Direction {
        self.neg.direction
    }
}
