//! DTMF digits as RTP telephone events (RFC 4733): the 4-byte event payload (§2.3), a sender
//! that turns a digit string into the packet sequence of §2.5.1, and a receiver that reports each
//! digit once (§2.5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Sending one digit of `n` frames, one packet per 20 ms slot, all with the RTP timestamp of the
//! event's start: packets with durations 160, 320, ... (the first with the marker bit, §2.5.1.2),
//! the last with the E bit and duration `n * 160`, sent three times (§2.5.1.4), then `gap` slots of
//! ordinary audio before the next digit.

use super::rtp::RtpPacket;
use super::FRAME_SAMPLES;
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// Times the final packet of an event is sent (RFC 4733 §2.5.1.4).
const END_REPEATS: u32 = 3;
/// Longest event in one segment: the 16-bit duration holds 409 frames of 160 (§2.5.1.3).
const MAX_FRAMES: u32 = (u16::MAX as u32) / FRAME_SAMPLES as u32;
/// Recent events remembered by the receiver for de-duplication.
const RECENT: usize = 16;

/// The DTMF event code of a digit (RFC 4733 §3.2, Table 7): `0`-`9` are 0-9, `*` is 10, `#` is
/// 11, `A`-`D` (or `a`-`d`) are 12-15.
pub fn event_code(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// The digit of a DTMF event code, `None` for codes above 15 (other telephone events).
pub fn digit_of(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// Why a telephone event could not be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DtmfError {
    /// A payload shorter than 4 bytes.
    TooShort {
        /// Its length.
        len: usize,
    },
    /// A character that is not one of `0-9 * # A-D`.
    InvalidDigit(char),
}

impl fmt::Display for DtmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtmfError::TooShort { len } => write!(f, "telephone-event payload of {len} bytes, expected 4"),
            DtmfError::InvalidDigit(c) => write!(f, "{c:?} is not a DTMF digit (0-9 * # A-D)"),
        }
    }
}

impl std::error::Error for DtmfError {}

/// A telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code (§3.2): 0-15 for DTMF.
    pub event: u8,
    /// E bit: this is the end of the event.
    pub end: bool,
    /// Power level as -dBm0, 0 to 63 (§2.3.4).
    pub volume: u8,
    /// Duration so far, in timestamp units (§2.3.5).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first 4 bytes of a payload; more may follow (redundancy, RFC 4733 §2.6) and
    /// are ignored. The reserved bit is ignored (§2.3.3).
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        match *payload {
            [event, flags, d0, d1, ..] => {
                Ok(TelephoneEvent { event, end: flags & 0x80 != 0, volume: flags & 0x3F, duration: u16::from_be_bytes([d0, d1]) })
            }
            _ => Err(DtmfError::TooShort { len: payload.len() }),
        }
    }

    /// The 4-byte payload. The volume is cut to 6 bits.
    pub fn to_bytes(&self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3F), d0, d1]
    }
}

// ===== sender =====

/// How a [`DtmfSender`] plays digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfConfig {
    /// The negotiated `telephone-event/8000` payload type (commonly 101).
    pub payload_type: u8,
    /// Tone length of each digit, rounded up to whole 20 ms frames (at least one, at most 409).
    pub digit_duration: Duration,
    /// Silence between digits after the end packets, rounded up to whole frames.
    pub gap: Duration,
    /// Power level as -dBm0 (§2.3.4), e.g. 10.
    pub volume: u8,
}

impl Default for DtmfConfig {
    /// PT 101, 100 ms digits, 100 ms gaps, -10 dBm0.
    fn default() -> Self {
        DtmfConfig { payload_type: 101, digit_duration: Duration::from_millis(100), gap: Duration::from_millis(100), volume: 10 }
    }
}

/// A telephone-event packet to send in one 20 ms slot, with [`super::rtp::RtpSender::send_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The telephone-event payload type.
    pub payload_type: u8,
    /// Set on the first packet of each event.
    pub marker: bool,
    /// RTP timestamp: the event's start, the same for all its packets.
    pub timestamp: u32,
    /// The payload.
    pub event: TelephoneEvent,
}

#[derive(Debug, Clone, Copy)]
enum SendState {
    Idle,
    /// Playing `event` since `start`; `sent` packets so far out of `frames + END_REPEATS - 1`.
    Playing {
        event: u8,
        start: u32,
        sent: u32,
    },
    /// Audio slots left before the next digit may start (at least 1).
    Gap(u32),
}

/// Plays queued digits as telephone events, one packet per 20 ms slot.
///
/// Every 20 ms the media loop calls [`DtmfSender::poll_frame`] with the RTP timestamp of the slot;
/// `Some` means send that packet instead of audio, `None` means send audio.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    config: DtmfConfig,
    frames: u32,
    gap_frames: u32,
    queue: VecDeque<u8>,
    state: SendState,
}

fn whole_frames(d: Duration) -> u32 {
    let frame = Duration::from_millis(20).as_nanos();
    u32::try_from(d.as_nanos().div_ceil(frame)).unwrap_or(u32::MAX)
}

impl DtmfSender {
    /// An idle sender.
    pub fn new(config: DtmfConfig) -> DtmfSender {
        DtmfSender {
            config,
            frames: whole_frames(config.digit_duration).clamp(1, MAX_FRAMES),
            gap_frames: whole_frames(config.gap),
            queue: VecDeque::new(),
            state: SendState::Idle,
        }
    }

    /// Queues digits (`0-9 * # A-D`). Nothing is queued if any character is invalid.
    pub fn send_digits(&mut self, digits: &str) -> Result<(), DtmfError> {
        let codes = digits.chars().map(|c| event_code(c).ok_or(DtmfError::InvalidDigit(c))).collect::<Result<Vec<_>, _>>()?;
        self.queue.extend(codes);
        Ok(())
    }

    /// Whether nothing is playing or queued.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, SendState::Idle) && self.queue.is_empty()
    }

    /// The packet for the 20 ms slot whose RTP timestamp is `timestamp`, if an event takes it.
    #[must_use]
    pub fn poll_frame(&mut self, timestamp: u32) -> Option<DtmfPacket> {
        if let SendState::Gap(left) = self.state {
            self.state = if left > 1 { SendState::Gap(left - 1) } else { SendState::Idle };
            return None;
        }
        if let SendState::Idle = self.state {
            let event = self.queue.pop_front()?;
            self.state = SendState::Playing { event, start: timestamp, sent: 0 };
        }
        let SendState::Playing { event, start, sent } = self.state else {
            return None;
        };
        let frame = FRAME_SAMPLES as u32;
        let end = sent + 1 >= self.frames;
        // MAX_FRAMES keeps frames * 160 within u16.
        let duration = (sent + 1).min(self.frames) * frame;
        let packet = DtmfPacket {
            payload_type: self.config.payload_type,
            marker: sent == 0,
            timestamp: start,
            event: TelephoneEvent { event, end, volume: self.config.volume, duration: duration as u16 },
        };
        let sent = sent + 1;
        self.state = if sent >= self.frames + END_REPEATS - 1 {
            if self.gap_frames > 0 {
                SendState::Gap(self.gap_frames)
            } else {
                SendState::Idle
            }
        } else {
            SendState::Playing { event, start, sent }
        };
        Some(packet)
    }
}

// ===== receiver =====

/// A digit reported by [`DtmfReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// `0-9 * # A-D`.
    pub digit: char,
    /// The sender's SSRC.
    pub ssrc: u32,
    /// RTP timestamp of the event's start.
    pub timestamp: u32,
}

/// Reports each received DTMF digit once.
///
/// An event is identified by (SSRC, timestamp): it is reported on the first of its packets that
/// arrives, whichever that is, so losing some packets of an event loses nothing; later packets of
/// the same event (updates, the three end packets) are ignored. A new timestamp carrying the same
/// digit, without the marker, while the previous event has not ended is a continuation segment of
/// a long event (§2.5.1.3) and is not reported again.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    payload_type: u8,
    /// Recent events: (ssrc, timestamp, event code, ended).
    recent: VecDeque<(u32, u32, u8, bool)>,
    ignored: u64,
}

impl DtmfReceiver {
    /// A receiver for the negotiated telephone-event payload type.
    pub fn new(payload_type: u8) -> DtmfReceiver {
        DtmfReceiver { payload_type, recent: VecDeque::with_capacity(RECENT), ignored: 0 }
    }

    /// Looks at one RTP packet; returns the digit if this packet is the first seen of a new
    /// event. Packets of other payload types return `None` and are not counted.
    pub fn handle_packet(&mut self, packet: &RtpPacket) -> Option<Digit> {
        if packet.payload_type != self.payload_type {
            return None;
        }
        let Ok(ev) = TelephoneEvent::parse(&packet.payload) else {
            self.ignored += 1;
            return None;
        };
        let Some(digit) = digit_of(ev.event) else {
            self.ignored += 1;
            return None;
        };
        let key = (packet.ssrc, packet.timestamp);
        if let Some(known) = self.recent.iter_mut().find(|r| (r.0, r.1) == key) {
            known.3 |= ev.end;
            return None;
        }
        // The latest event of this source, to recognise continuation segments.
        let continuation = self.recent.iter().rev().find(|r| r.0 == packet.ssrc).is_some_and(|&(_, ts, code, ended)| {
            !ended && code == ev.event && !packet.marker && packet.timestamp.wrapping_sub(ts) < 1 << 31
        });
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((packet.ssrc, packet.timestamp, ev.event, ev.end));
        if continuation {
            return None;
        }
        Some(Digit { digit, ssrc: packet.ssrc, timestamp: packet.timestamp })
    }

    /// Telephone-event packets ignored: too short, or not a DTMF event.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn rtp(seq: u16, p: &DtmfPacket) -> RtpPacket {
        RtpPacket {
            payload_type: p.payload_type,
            marker: p.marker,
            sequence: seq,
            timestamp: p.timestamp,
            ssrc: 5,
            payload: Bytes::copy_from_slice(&p.event.to_bytes()),
        }
    }

    /// Runs the sender slot by slot from timestamp `ts0` until idle; `None` entries are audio slots.
    fn play(sender: &mut DtmfSender, ts0: u32) -> Vec<Option<DtmfPacket>> {
        let mut out = Vec::new();
        let mut ts = ts0;
        while !sender.is_idle() {
            out.push(sender.poll_frame(ts));
            ts = ts.wrapping_add(160);
        }
        out
    }

    #[test]
    fn payload_round_trip_and_codes() {
        let e = TelephoneEvent { event: 11, end: true, volume: 10, duration: 800 };
        assert_eq!(e.to_bytes(), [11, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()), Ok(e));
        assert!(!TelephoneEvent::parse(&[1, 0x40, 0, 0, 9]).unwrap().end); // R bit ignored
        assert_eq!(TelephoneEvent::parse(&[1, 2]), Err(DtmfError::TooShort { len: 2 }));
        let all = "0123456789*#ABCD";
        for (code, c) in all.chars().enumerate() {
            assert_eq!(event_code(c), Some(code as u8));
            assert_eq!(digit_of(code as u8), Some(c));
        }
        assert_eq!(event_code('d'), Some(15));
        assert_eq!((event_code('E'), digit_of(16)), (None, None));
    }

    #[test]
    fn sender_produces_rfc4733_sequence() {
        let mut s = DtmfSender::new(DtmfConfig {
            digit_duration: Duration::from_millis(100),
            gap: Duration::from_millis(40),
            ..DtmfConfig::default()
        });
        assert_eq!(s.send_digits("1x"), Err(DtmfError::InvalidDigit('x')));
        assert!(s.is_idle());
        s.send_digits("1#").unwrap();
        let slots = play(&mut s, 1000);
        // Per digit of 5 frames: 4 updates, 3 end packets, then 2 gap slots.
        assert_eq!(slots.len(), 2 * (4 + 3 + 2));
        let first: Vec<DtmfPacket> = slots[..7].iter().map(|p| p.unwrap()).collect();
        assert!(first.iter().all(|p| p.timestamp == 1000 && p.event.event == 1 && p.payload_type == 101));
        assert_eq!(first.iter().map(|p| p.event.duration).collect::<Vec<_>>(), [160, 320, 480, 640, 800, 800, 800]);
        assert_eq!(first.iter().map(|p| p.event.end).collect::<Vec<_>>(), [false, false, false, false, true, true, true]);
        assert_eq!(first.iter().map(|p| p.marker).collect::<Vec<_>>(), [true, false, false, false, false, false, false]);
        assert_eq!(&slots[7..9], &[None, None]);
        let second = slots[9].unwrap();
        assert_eq!((second.timestamp, second.event.event, second.marker), (1000 + 9 * 160, 11, true));
    }

    #[test]
    fn receiver_reports_each_digit_once_despite_loss() {
        let mut s = DtmfSender::new(DtmfConfig::default());
        s.send_digits("12#").unwrap();
        let packets: Vec<RtpPacket> = play(&mut s, 0).iter().flatten().enumerate().map(|(i, p)| rtp(i as u16, p)).collect();
        assert_eq!(packets.len(), 3 * 7);
        let mut r = DtmfReceiver::new(101);
        // Every packet twice, and for digit 2 the first three packets (with the marker) lost.
        let digits: Vec<char> = packets
            .iter()
            .enumerate()
            .filter(|(i, _)| !(7..10).contains(i))
            .flat_map(|(_, p)| [p, p])
            .filter_map(|p| r.handle_packet(p))
            .map(|d| d.digit)
            .collect();
        assert_eq!(digits, ['1', '2', '#']);
        // Reordered: an end packet of '1' arriving after '2' started is not reported again.
        assert_eq!(r.handle_packet(&packets[6]), None);
    }

    #[test]
    fn receiver_ignores_garbage_and_continuations() {
        let mut r = DtmfReceiver::new(101);
        let ev = |ts: u32, marker: bool, end: bool, event: u8| RtpPacket {
            payload_type: 101,
            marker,
            sequence: 0,
            timestamp: ts,
            ssrc: 1,
            payload: Bytes::copy_from_slice(&TelephoneEvent { event, end, volume: 0, duration: 65535 }.to_bytes()),
        };
        assert_eq!(r.handle_packet(&RtpPacket { payload: Bytes::from_static(&[1]), ..ev(0, true, false, 1) }), None);
        assert_eq!(r.handle_packet(&ev(0, true, false, 16)), None); // flash, not DTMF
        assert_eq!(r.ignored(), 2);
        assert_eq!(r.handle_packet(&RtpPacket { payload_type: 0, ..ev(0, true, false, 1) }), None);
        assert!(r.handle_packet(&ev(100, true, false, 5)).is_some());
        assert_eq!(r.handle_packet(&ev(100 + 65535, false, false, 5)), None); // long event, next segment
        assert_eq!(r.handle_packet(&ev(100 + 65535, false, true, 5)), None);
        assert_eq!(r.handle_packet(&ev(200_000, false, false, 5)).map(|d| d.digit), Some('5'));
        // previous ended
    }
}
