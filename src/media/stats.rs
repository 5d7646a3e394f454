//! Reception statistics for one RTP source (RFC 3550 §6.4.1 and Appendix A): packets and bytes
//! received, extended highest sequence number, expected and lost packets, fraction lost per report
//! interval (A.3), interarrival jitter (§6.4.1, A.8), and a light form of the source validation of
//! A.1.
//!
//! Validation: a new source is on probation until two packets arrive in sequence
//! (`MIN_SEQUENTIAL`); a jump of more than `MAX_DROPOUT` ahead or `MAX_MISORDER` behind is
//! ignored unless the next packet follows it, in which case the source restarted. Unlike A.1, the
//! probation packets are counted once the source is valid, so an unbroken stream of N packets
//! reports N received and none lost. Packets from another SSRC are counted and ignored: keep one
//! `ReceiverStats` per source.

use super::rtcp::{NtpTime, ReportBlock};
use super::rtp::RtpPacket;
use super::SAMPLE_RATE;
use std::time::Instant;

/// Sequential packets needed to accept a new source (A.1).
const MIN_SEQUENTIAL: u16 = 2;
/// Largest forward jump still taken as loss rather than a restart (A.1).
const MAX_DROPOUT: u16 = 3000;
/// Largest backward jump still taken as reordering or a duplicate (A.1).
const MAX_MISORDER: u16 = 100;
/// Sequence number cycle, as a count increment.
const SEQ_MOD: u32 = 1 << 16;

/// What [`ReceiverStats::handle_packet`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted: in sequence, after a gap, reordered or a duplicate.
    Accepted,
    /// The source is not yet validated; the packet is held back from the counts for now.
    Probation,
    /// A large jump; ignored unless the next packet confirms it (then the source restarted).
    BadSequence,
    /// Two packets confirmed a large jump: the counts restarted from this packet.
    Restarted,
    /// From a different SSRC than the one these statistics follow.
    ForeignSsrc,
}

/// Sequence and loss state of a validated (or probationary) source, per A.1 `source`.
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    /// Shifted count of sequence number cycles.
    cycles: u32,
    base_seq: u32,
    /// The sequence number that would confirm a large jump (`SEQ_MOD + 1` = none).
    bad_seq: u32,
    probation: u16,
    /// Payload bytes of the probationary packet, added once the source is valid.
    probation_bytes: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
}

impl Source {
    /// A.1: on the first packet, `init_seq(seq)`, then `max_seq = seq - 1` and probation.
    fn new(ssrc: u32, seq: u16) -> Source {
        Source {
            ssrc,
            max_seq: seq.wrapping_sub(1),
            cycles: 0,
            base_seq: u32::from(seq),
            bad_seq: SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            probation_bytes: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
        }
    }

    /// A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// A.1 `update_seq`, except that validation counts the probation run.
    fn update_seq(&mut self, seq: u16) -> Verdict {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq.wrapping_sub(MIN_SEQUENTIAL - 1));
                    self.max_seq = seq;
                    // The earlier packets of the run; the caller counts this one.
                    self.received = u64::from(MIN_SEQUENTIAL - 1);
                    return Verdict::Accepted;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return Verdict::Probation;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a jump: the sender restarted.
                self.init_seq(seq);
                return Verdict::Restarted;
            }
            self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
            return Verdict::BadSequence;
        }
        // else: a duplicate or reordered packet, counted as received (A.1).
        Verdict::Accepted
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u64 {
        u64::from(self.extended_max().wrapping_sub(self.base_seq)) + 1
    }
}

/// Reception statistics of one RTP source. Feed every RTP packet of the flow with the instant it
/// arrived; read the counters or take a [`ReportBlock`] for an RTCP report.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    source: Option<Source>,
    /// Payload type of the first packet: jitter is computed over that stream only (telephone
    /// events carry their start timestamp and would read as huge jitter, RFC 4733 §2.5.1.2).
    media_payload_type: Option<u8>,
    /// Arrival instant of the first packet: origin of the arrival clock of A.8.
    epoch: Option<Instant>,
    /// Relative transit time of the previous packet, in timestamp units (A.8 `transit`).
    transit: Option<u32>,
    /// Jitter times 16 (A.8 keeps it scaled for integer arithmetic).
    jitter_q4: u64,
    payload_bytes: u64,
    foreign_ssrc: u64,
    bad_sequence: u64,
    /// LSR of the last SR from this source and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl Default for ReceiverStats {
    fn default() -> Self {
        ReceiverStats::new(SAMPLE_RATE)
    }
}

impl ReceiverStats {
    /// Statistics for a stream whose RTP clock runs at `clock_rate` Hz (8000 for G.711).
    pub fn new(clock_rate: u32) -> ReceiverStats {
        ReceiverStats {
            clock_rate: clock_rate.max(1),
            source: None,
            media_payload_type: None,
            epoch: None,
            transit: None,
            jitter_q4: 0,
            payload_bytes: 0,
            foreign_ssrc: 0,
            bad_sequence: 0,
            last_sr: None,
        }
    }

    /// Accounts for one RTP packet that arrived at `now`. The first packet fixes the SSRC.
    pub fn handle_packet(&mut self, packet: &RtpPacket, now: Instant) -> Verdict {
        let source = match &mut self.source {
            Some(s) if s.ssrc != packet.ssrc => {
                self.foreign_ssrc += 1;
                return Verdict::ForeignSsrc;
            }
            Some(s) => s,
            None => self.source.insert(Source::new(packet.ssrc, packet.sequence)),
        };
        let verdict = source.update_seq(packet.sequence);
        let bytes = packet.payload.len() as u64;
        match verdict {
            Verdict::Accepted => {
                source.received += 1;
                self.payload_bytes += bytes + std::mem::take(&mut source.probation_bytes);
            }
            Verdict::Probation => source.probation_bytes = bytes,
            Verdict::Restarted => {
                source.received = 1;
                self.payload_bytes += bytes;
                self.transit = None;
            }
            Verdict::BadSequence => {
                self.bad_sequence += 1;
                return verdict;
            }
            Verdict::ForeignSsrc => return verdict,
        }
        self.update_jitter(packet, now);
        verdict
    }

    /// A.8: `J += (|D(i-1, i)| - J) / 16`, with D the change in relative transit time.
    fn update_jitter(&mut self, packet: &RtpPacket, now: Instant) {
        if *self.media_payload_type.get_or_insert(packet.payload_type) != packet.payload_type {
            return;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let nanos = now.saturating_duration_since(epoch).as_nanos();
        // Arrival time in timestamp units; only differences matter, so wrapping is fine.
        let arrival = (nanos * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(packet.timestamp);
        if let Some(previous) = self.transit.replace(transit) {
            let d = u64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            // J*16 += |D| - J*16/16 (rounded), as in A.8.
            self.jitter_q4 = (self.jitter_q4 + d).saturating_sub((self.jitter_q4 + 8) >> 4);
        }
    }

    /// Notes an SR from this source that arrived at `now`, for the LSR/DLSR of the next report.
    pub fn handle_sender_report(&mut self, ntp: NtpTime, now: Instant) {
        self.last_sr = Some((ntp.middle32(), now));
    }

    /// The SSRC followed, once a packet has arrived.
    pub fn ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    /// Whether the source passed probation.
    pub fn is_valid(&self) -> bool {
        self.source.as_ref().is_some_and(|s| s.probation == 0)
    }

    fn valid_source(&self) -> Option<&Source> {
        self.source.as_ref().filter(|s| s.probation == 0)
    }

    /// Packets counted as received (duplicates included, as in A.1).
    pub fn packets_received(&self) -> u64 {
        self.valid_source().map_or(0, |s| s.received)
    }

    /// Payload bytes of the packets counted.
    pub fn bytes_received(&self) -> u64 {
        self.payload_bytes
    }

    /// Extended highest sequence number: cycles in the high 16 bits (A.1).
    pub fn extended_highest_seq(&self) -> Option<u32> {
        self.valid_source().map(Source::extended_max)
    }

    /// Packets expected: extended highest minus first sequence number, plus one (A.3).
    pub fn expected(&self) -> u64 {
        self.valid_source().map_or(0, Source::expected)
    }

    /// Cumulative packets lost: expected minus received, negative if duplicates outnumber losses.
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.packets_received() as i64
    }

    /// Interarrival jitter in timestamp units (A.8).
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_q4 as f64 / 16.0 * 1000.0 / f64::from(self.clock_rate)
    }

    /// Packets from another SSRC, ignored.
    pub fn foreign_ssrc_packets(&self) -> u64 {
        self.foreign_ssrc
    }

    /// Packets ignored for a large sequence jump that was not confirmed.
    pub fn bad_sequence_packets(&self) -> u64 {
        self.bad_sequence
    }

    /// A report block for an RTCP SR/RR sent at `now`, and the start of a new report interval for
    /// the fraction lost (A.3). `None` before the source is valid.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let jitter = self.jitter();
        let last_sr = self.last_sr;
        let source = self.source.as_mut().filter(|s| s.probation == 0)?;
        let expected = source.expected();
        let expected_interval = expected.saturating_sub(source.expected_prior);
        let received_interval = source.received.saturating_sub(source.received_prior);
        source.expected_prior = expected;
        source.received_prior = source.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8).checked_div(expected_interval).map_or(0, |f| f.min(255) as u8);
        let lost = (expected as i64 - source.received as i64).clamp(-0x80_0000, 0x7F_FFFF) as i32;
        let (lsr, dlsr) = match last_sr {
            // DLSR in units of 1/65536 s.
            Some((lsr, at)) => {
                (lsr, u32::try_from(now.saturating_duration_since(at).as_nanos() * 65536 / 1_000_000_000).unwrap_or(u32::MAX))
            }
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: source.ssrc,
            fraction_lost,
            cumulative_lost: lost,
            extended_highest_seq: source.extended_max(),
            jitter,
            last_sr: lsr,
            delay_since_last_sr: dlsr,
        })
    }
}
