//! Classic libpcap files (the original `tcpdump` format: 24-byte file header, 16-byte record
//! headers, microsecond timestamps, link type 1 = Ethernet) holding one RTP stream over
//! Ethernet/IPv4/UDP, e.g. a G.711 tone for sipp's `play_pcap_audio`. sipp keeps each packet's
//! RTP header, payload and capture-time spacing and rewrites the addresses, so the addresses in the
//! file are placeholders. A reader for the same shape lets tests check what was written.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::Duration;
use switchboard::media::g711::Codec;
use switchboard::media::tone::ToneGenerator;

/// File magic in host order for microsecond timestamps; written little-endian.
const MAGIC_US: u32 = 0xA1B2_C3D4;
const LINKTYPE_ETHERNET: u32 = 1;
const ETHERTYPE_IPV4: u16 = 0x0800;
const IPPROTO_UDP: u8 = 17;
const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;
const RTP_LEN: usize = 12;

/// Builds a pcap file in memory.
pub struct PcapWriter {
    bytes: Vec<u8>,
}

impl Default for PcapWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PcapWriter {
    pub fn new() -> PcapWriter {
        let mut bytes = Vec::with_capacity(64 * 1024);
        bytes.extend_from_slice(&MAGIC_US.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
        bytes.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
        bytes.extend_from_slice(&65_535u32.to_le_bytes()); // snap length
        bytes.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        PcapWriter { bytes }
    }

    /// Appends one captured frame at time `at` since the epoch.
    pub fn record(&mut self, at: Duration, frame: &[u8]) {
        let len = u32::try_from(frame.len()).expect("frame fits a pcap record");
        self.bytes.extend_from_slice(&(at.as_secs() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&at.subsec_micros().to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes()); // captured length
        self.bytes.extend_from_slice(&len.to_le_bytes()); // length on the wire
        self.bytes.extend_from_slice(frame);
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// RFC 1071 Internet checksum of `data` (even length here).
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet II frame carrying an IPv4/UDP datagram (UDP checksum 0 = not computed, which
/// IPv4 allows).
pub fn udp_frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), ip_id: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(UDP_LEN + payload.len()).expect("datagram size");
    let ip_len = udp_len + IPV4_LEN as u16;
    let mut f = Vec::with_capacity(ETH_LEN + usize::from(ip_len));
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination MAC (locally administered)
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source MAC
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_start = f.len();
    f.push(0x45); // version 4, 5 words of header
    f.push(0); // DSCP/ECN
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&ip_id.to_be_bytes());
    f.extend_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    f.push(64); // TTL
    f.push(IPPROTO_UDP);
    f.extend_from_slice(&[0, 0]); // checksum, filled in below
    f.extend_from_slice(&src.0.octets());
    f.extend_from_slice(&dst.0.octets());
    let sum = internet_checksum(&f[ip_start..ip_start + IPV4_LEN]);
    f[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// An RTP packet (RFC 3550 §5.1): version 2, no padding, extension or CSRCs.
pub fn rtp_packet(payload_type: u8, marker: bool, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(RTP_LEN + payload.len());
    p.push(0x80);
    p.push(payload_type & 0x7F | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A pcap of `seconds` of a `freq_hz` sine (peak `amplitude`) as one G.711 RTP stream in 20 ms
/// packets (160 samples), captured 20 ms apart. The first packet has the marker bit (start of a
/// talk spurt).
pub fn g711_tone_pcap(codec: Codec, freq_hz: f64, amplitude: i16, seconds: f64) -> Vec<u8> {
    const SSRC: u32 = 0x5B0A_12D3;
    const SEQ0: u16 = 4711;
    const TS0: u32 = 160_000;
    let start = Duration::from_secs(1_700_000_000);
    let src = (Ipv4Addr::LOCALHOST, 6000);
    let dst = (Ipv4Addr::LOCALHOST, 6002);
    let packets = (seconds * 50.0).round() as u32;
    let mut tone = ToneGenerator::new(freq_hz, amplitude);
    let mut w = PcapWriter::new();
    for k in 0..packets {
        let payload = codec.encode(&tone.next_frame());
        let rtp = rtp_packet(codec.payload_type(), k == 0, SEQ0.wrapping_add(k as u16), TS0.wrapping_add(k * 160), SSRC, &payload);
        w.record(start + Duration::from_millis(20 * u64::from(k)), &udp_frame(src, dst, k as u16, &rtp));
    }
    w.into_bytes()
}

/// One UDP datagram read back from a pcap written as above.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub at: Duration,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

/// Reads a little-endian microsecond pcap of Ethernet/IPv4/UDP frames; other frames are skipped.
/// Checks the IPv4 header checksum and the UDP length on the way.
pub fn read_udp(bytes: &[u8]) -> Result<Vec<Datagram>, String> {
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if bytes.len() < 24 || u32_at(bytes, 0) != MAGIC_US {
        return Err("not a little-endian microsecond pcap".into());
    }
    if u32_at(bytes, 20) != LINKTYPE_ETHERNET {
        return Err(format!("link type {} is not Ethernet", u32_at(bytes, 20)));
    }
    let mut out = Vec::new();
    let mut pos = 24;
    while pos < bytes.len() {
        if pos + 16 > bytes.len() {
            return Err(format!("truncated record header at {pos}"));
        }
        let at = Duration::from_secs(u64::from(u32_at(bytes, pos))) + Duration::from_micros(u64::from(u32_at(bytes, pos + 4)));
        let caplen = u32_at(bytes, pos + 8) as usize;
        let frame = bytes.get(pos + 16..pos + 16 + caplen).ok_or(format!("truncated record at {pos}"))?;
        pos += 16 + caplen;
        if frame.len() < ETH_LEN + IPV4_LEN + UDP_LEN || frame[12..14] != ETHERTYPE_IPV4.to_be_bytes() || frame[ETH_LEN + 9] != IPPROTO_UDP
        {
            continue;
        }
        let ip = &frame[ETH_LEN..];
        let ihl = usize::from(ip[0] & 0x0F) * 4;
        if internet_checksum(&ip[..ihl]) != 0 {
            return Err(format!("bad IPv4 header checksum in record ending at {pos}"));
        }
        let udp = &ip[ihl..];
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        if udp_len != udp.len() {
            return Err(format!("UDP length {udp_len} but {} bytes captured", udp.len()));
        }
        out.push(Datagram {
            at,
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            payload: udp[UDP_LEN..].to_vec(),
        });
    }
    Ok(out)
}
