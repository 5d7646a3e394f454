//! G.711 companding: µ-law and A-law (ITU-T Recommendation G.711, 11/88), the PCMU and PCMA
//! payloads of RTP (RFC 3551 §4.5.14, static payload types 0 and 8).
//!
//! Linear samples are 16-bit. The encoders follow the ITU-T G.191 Software Tool Library reference
//! (`ulaw_compress` / `alaw_compress`): µ-law uses the 14 most significant bits and A-law the 13
//! most significant bits, and a negative sample's magnitude is taken as its one's complement, so
//! `-1` encodes as negative zero. The decoders give the decision values of G.711 Tables 1a/1b
//! (A-law) and 2a/2b (µ-law), scaled to 16 bits.
//!
//! Transmitted code words carry the polarity in bit 1 (the most significant bit): `1` means
//! positive for both laws. µ-law inverts all bits of the code (§3.2, Table 2 note); A-law inverts
//! the even bits, i.e. XOR with `0x55` (§3.1, Table 1 note).

/// µ-law bias on the 14-bit magnitude (G.711 Table 2a: the segment end points are `2^(s+5) - 33`).
const ULAW_BIAS: i32 = 33;
/// µ-law largest biased magnitude (14 bits): inputs above it clip to the top code.
const ULAW_CLIP: i32 = 0x1FFF;

/// The two G.711 laws, named after their RTP encodings (RFC 3551 §4.5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// µ-law, `PCMU/8000`, static payload type 0. Used in North America and Japan.
    Pcmu,
    /// A-law, `PCMA/8000`, static payload type 8. Used elsewhere.
    Pcma,
}

// ===== impl Codec =====

impl Codec {
    /// The static RTP payload type (RFC 3551 §6, Table 4): 0 for PCMU, 8 for PCMA.
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec for a static payload type, or `None` if it is not 0 or 8.
    pub const fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The SDP `rtpmap` encoding name (RFC 3551 §6): `"PCMU"` or `"PCMA"`.
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The code word for a zero sample: what a silent payload is filled with.
    pub const fn silence(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
        }
    }

    /// Encodes one linear sample.
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => ulaw_encode(sample),
            Codec::Pcma => alaw_encode(sample),
        }
    }

    /// Decodes one code word.
    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_decode(code),
            Codec::Pcma => alaw_decode(code),
        }
    }

    /// Encodes linear samples into a payload, one byte per sample.
    pub fn encode(self, pcm: &[i16]) -> Vec<u8> {
        pcm.iter().map(|&s| self.encode_sample(s)).collect()
    }

    /// Decodes a payload into linear samples. Every byte is a valid code word, so this cannot fail
    /// on any input.
    pub fn decode(self, payload: &[u8]) -> Vec<i16> {
        payload.iter().map(|&c| self.decode_sample(c)).collect()
    }
}

// ===== µ-law =====

/// Decoded value of every µ-law code word, built at compile time by [`ulaw_expand`].
static ULAW_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = ulaw_expand(code as u8);
        code += 1;
    }
    table
};

/// Encodes a 16-bit linear sample as a µ-law code word (G.711 §3.2, Table 2a).
///
/// The 14-bit magnitude plus the bias of 33 falls into one of eight segments; the code is
/// `polarity | segment << 4 | 4-bit step`, with all bits inverted for transmission.
pub fn ulaw_encode(sample: i16) -> u8 {
    let negative = sample < 0;
    // One's complement magnitude, as in G.191: -1 maps to 0, i16::MIN to 32767 (no overflow).
    let magnitude = i32::from(if negative { !sample } else { sample });
    let biased = ((magnitude >> 2) + ULAW_BIAS).min(ULAW_CLIP);
    // biased is in 33..=8191, so its bit length is in 6..=13 and the segment in 0..=7.
    let bit_length = 32 - biased.leading_zeros() as i32;
    let segment = (bit_length - 6).max(0);
    let step = (biased >> (segment + 1)) & 0x0F;
    let code = ((segment << 4) | step) as u8;
    if negative {
        !code & 0x7F
    } else {
        !code
    }
}

/// Decodes a µ-law code word to a 16-bit linear sample (G.711 §3.2, Table 2b): the middle of the
/// code's quantization interval. `0x00` gives -32124, `0x80` gives 32124, `0x7F` and `0xFF` give 0.
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

const fn ulaw_expand(code: u8) -> i16 {
    let inverted = !code;
    let segment = ((inverted >> 4) & 0x07) as i32;
    let step = (inverted & 0x0F) as i32;
    // Undo the bias in 16-bit units (33 * 4 = 132): interval middle = ((2*step + 33) << seg+2) - 132.
    let magnitude = (((step << 3) + 4 * ULAW_BIAS) << segment) - 4 * ULAW_BIAS;
    if code & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

// ===== A-law =====

/// Decoded value of every A-law code word, built at compile time by [`alaw_expand`].
static ALAW_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = alaw_expand(code as u8);
        code += 1;
    }
    table
};

/// Encodes a 16-bit linear sample as an A-law code word (G.711 §3.1, Table 1a).
///
/// Segments 0 and 1 both have a step of 16 (in 16-bit units); each later segment doubles it. The
/// code is `polarity | segment << 4 | 4-bit step`, with the even bits inverted for transmission.
pub fn alaw_encode(sample: i16) -> u8 {
    let negative = sample < 0;
    let magnitude = i32::from(if negative { !sample } else { sample });
    let units = magnitude >> 4; // 0..=2047, steps of 16
    let (segment, step) = if units < 16 {
        (0, units)
    } else {
        // units has bit length 5..=11: segments 1..=7, keeping the 4 bits below the leading one.
        let segment = 32 - units.leading_zeros() as i32 - 4;
        (segment, (units >> (segment - 1)) & 0x0F)
    };
    let polarity = if negative { 0 } else { 0x80 };
    ((polarity | (segment << 4) | step) as u8) ^ 0x55
}

/// Decodes an A-law code word to a 16-bit linear sample (G.711 §3.1, Table 1b): the middle of the
/// code's quantization interval. `0xD5` gives 8, `0x55` gives -8, `0xAA` gives 32256 and `0x2A`
/// gives -32256.
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

const fn alaw_expand(code: u8) -> i16 {
    let bits = code ^ 0x55;
    let segment = ((bits >> 4) & 0x07) as i32;
    let step = (bits & 0x0F) as i32;
    let magnitude = if segment == 0 { (step << 4) + 8 } else { (((step + 16) << 4) + 8) << (segment - 1) };
    if bits & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// µ-law decode table, code 0x00 to 0xFF. Provenance: CPython `audioop.ulaw2lin` and a port of
    /// ITU-T G.191 `ulaw_expand`, which agree on all 256 entries.
    const ULAW_REFERENCE: [i16; 256] = [
        -32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956, -23932, -22908, -21884, -20860, -19836, -18812, -17788, -16764,
        -15996, -15484, -14972, -14460, -13948, -13436, -12924, -12412, -11900, -11388, -10876, -10364, -9852, -9340, -8828, -8316, -7932,
        -7676, -7420, -7164, -6908, -6652, -6396, -6140, -5884, -5628, -5372, -5116, -4860, -4604, -4348, -4092, -3900, -3772, -3644,
        -3516, -3388, -3260, -3132, -3004, -2876, -2748, -2620, -2492, -2364, -2236, -2108, -1980, -1884, -1820, -1756, -1692, -1628,
        -1564, -1500, -1436, -1372, -1308, -1244, -1180, -1116, -1052, -988, -924, -876, -844, -812, -780, -748, -716, -684, -652, -620,
        -588, -556, -524, -492, -460, -428, -396, -372, -356, -340, -324, -308, -292, -276, -260, -244, -228, -212, -196, -180, -164, -148,
        -132, -120, -112, -104, -96, -88, -80, -72, -64, -56, -48, -40, -32, -24, -16, -8, 0, 32124, 31100, 30076, 29052, 28028, 27004,
        25980, 24956, 23932, 22908, 21884, 20860, 19836, 18812, 17788, 16764, 15996, 15484, 14972, 14460, 13948, 13436, 12924, 12412,
        11900, 11388, 10876, 10364, 9852, 9340, 8828, 8316, 7932, 7676, 7420, 7164, 6908, 6652, 6396, 6140, 5884, 5628, 5372, 5116, 4860,
        4604, 4348, 4092, 3900, 3772, 3644, 3516, 3388, 3260, 3132, 3004, 2876, 2748, 2620, 2492, 2364, 2236, 2108, 1980, 1884, 1820, 1756,
        1692, 1628, 1564, 1500, 1436, 1372, 1308, 1244, 1180, 1116, 1052, 988, 924, 876, 844, 812, 780, 748, 716, 684, 652, 620, 588, 556,
        524, 492, 460, 428, 396, 372, 356, 340, 324, 308, 292, 276, 260, 244, 228, 212, 196, 180, 164, 148, 132, 120, 112, 104, 96, 88, 80,
        72, 64, 56, 48, 40, 32, 24, 16, 8, 0,
    ];

    /// A-law decode table, code 0x00 to 0xFF. Provenance: CPython `audioop.alaw2lin` and a port of
    /// ITU-T G.191 `alaw_expand`, which agree on all 256 entries.
    const ALAW_REFERENCE: [i16; 256] = [
        -5504, -5248, -6016, -5760, -4480, -4224, -4992, -4736, -7552, -7296, -8064, -7808, -6528, -6272, -7040, -6784, -2752, -2624,
        -3008, -2880, -2240, -2112, -2496, -2368, -3776, -3648, -4032, -3904, -3264, -3136, -3520, -3392, -22016, -20992, -24064, -23040,
        -17920, -16896, -19968, -18944, -30208, -29184, -32256, -31232, -26112, -25088, -28160, -27136, -11008, -10496, -12032, -11520,
        -8960, -8448, -9984, -9472, -15104, -14592, -16128, -15616, -13056, -12544, -14080, -13568, -344, -328, -376, -360, -280, -264,
        -312, -296, -472, -456, -504, -488, -408, -392, -440, -424, -88, -72, -120, -104, -24, -8, -56, -40, -216, -200, -248, -232, -152,
        -136, -184, -168, -1376, -1312, -1504, -1440, -1120, -1056, -1248, -1184, -1888, -1824, -2016, -1952, -1632, -1568, -1760, -1696,
        -688, -656, -752, -720, -560, -528, -624, -592, -944, -912, -1008, -976, -816, -784, -880, -848, 5504, 5248, 6016, 5760, 4480,
        4224, 4992, 4736, 7552, 7296, 8064, 7808, 6528, 6272, 7040, 6784, 2752, 2624, 3008, 2880, 2240, 2112, 2496, 2368, 3776, 3648, 4032,
        3904, 3264, 3136, 3520, 3392, 22016, 20992, 24064, 23040, 17920, 16896, 19968, 18944, 30208, 29184, 32256, 31232, 26112, 25088,
        28160, 27136, 11008, 10496, 12032, 11520, 8960, 8448, 9984, 9472, 15104, 14592, 16128, 15616, 13056, 12544, 14080, 13568, 344, 328,
        376, 360, 280, 264, 312, 296, 472, 456, 504, 488, 408, 392, 440, 424, 88, 72, 120, 104, 24, 8, 56, 40, 216, 200, 248, 232, 152,
        136, 184, 168, 1376, 1312, 1504, 1440, 1120, 1056, 1248, 1184, 1888, 1824, 2016, 1952, 1632, 1568, 1760, 1696, 688, 656, 752, 720,
        560, 528, 624, 592, 944, 912, 1008, 976, 816, 784, 880, 848,
    ];

    /// FNV-1a 64 over the code words of every input from -32768 to 32767, as produced by a port of
    /// the ITU-T G.191 `ulaw_compress` / `alaw_compress` (computed outside this crate).
    const ULAW_ENCODE_ALL_FNV: u64 = 0x04ec_1f08_3fd7_8c2d;
    const ALAW_ENCODE_ALL_FNV: u64 = 0xf030_666e_b780_cf25;

    fn fnv_of_all_codes(encode: fn(i16) -> u8) -> u64 {
        (i16::MIN..=i16::MAX).fold(0xcbf2_9ce4_8422_2325u64, |h, s| (h ^ u64::from(encode(s))).wrapping_mul(0x0000_0100_0000_01b3))
    }

    #[test]
    fn ulaw_decode_table_matches_reference() {
        for code in 0..=255u8 {
            assert_eq!(ulaw_decode(code), ULAW_REFERENCE[usize::from(code)], "code {code:#04x}");
        }
        assert_eq!([ulaw_decode(0x00), ulaw_decode(0x7F), ulaw_decode(0x80), ulaw_decode(0xFF)], [-32124, 0, 32124, 0]);
    }

    #[test]
    fn alaw_decode_table_matches_reference() {
        for code in 0..=255u8 {
            assert_eq!(alaw_decode(code), ALAW_REFERENCE[usize::from(code)], "code {code:#04x}");
        }
        // Polarity bit set means positive (G.711 Table 1): 0xAA is +full scale, 0x2A is -full scale.
        assert_eq!([alaw_decode(0xD5), alaw_decode(0x55), alaw_decode(0xAA), alaw_decode(0x2A)], [8, -8, 32256, -32256]);
    }

    #[test]
    fn encoders_match_itu_reference_on_every_input() {
        assert_eq!(fnv_of_all_codes(ulaw_encode), ULAW_ENCODE_ALL_FNV);
        assert_eq!(fnv_of_all_codes(alaw_encode), ALAW_ENCODE_ALL_FNV);
    }

    #[test]
    fn encode_of_decoded_value_gives_the_code_back() {
        for code in 0..=255u8 {
            // µ-law has two zeros; 0x7F (negative zero) decodes to 0, which encodes as 0xFF.
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(ulaw_encode(ulaw_decode(code)), expected, "µ-law {code:#04x}");
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn segment_boundaries() {
        // (input, µ-law code, A-law code) from the G.191 reference at the edges of the segments.
        let cases: &[(i16, u8, u8)] = &[
            (0, 0xFF, 0xD5),
            (-1, 0x7F, 0x55),
            (1, 0xFF, 0xD5),
            (-8, 0x7E, 0x55),
            (31, 0xFB, 0xD4),
            (32, 0xFB, 0xD7),
            (-32, 0x7B, 0x54),
            (-33, 0x7B, 0x57),
            (4095, 0xAF, 0x9A),
            (4096, 0xAF, 0x85),
            (-4096, 0x2F, 0x1A),
            (-4097, 0x2F, 0x05),
            (-31612, 0x01, 0x2B),
            (i16::MAX, 0x80, 0xAA),
            (i16::MIN, 0x00, 0x2A),
        ];
        for &(x, mu, a) in cases {
            assert_eq!(ulaw_encode(x), mu, "µ-law of {x}");
            assert_eq!(alaw_encode(x), a, "A-law of {x}");
        }
        // Between two adjacent decision values the code changes exactly once, and decoding is
        // monotonic in the input.
        for law in [Codec::Pcmu, Codec::Pcma] {
            let mut last = i16::MIN;
            for x in i16::MIN..=i16::MAX {
                let y = law.decode_sample(law.encode_sample(x));
                assert!(y >= last, "{law:?} not monotonic at {x}");
                last = y;
            }
        }
    }

    #[test]
    fn quantization_error_is_within_half_a_step() {
        for x in -32000..=32000i16 {
            let (mu, a) = (i32::from(ulaw_decode(ulaw_encode(x))), i32::from(alaw_decode(alaw_encode(x))));
            let x = i32::from(x);
            // Largest step: 1024 in µ-law segment 7 and in A-law segment 7 (16-bit units).
            assert!((mu - x).abs() <= 512 + 4, "µ-law {x} -> {mu}");
            assert!((a - x).abs() <= 512 + 1, "A-law {x} -> {a}");
            // Small signals keep fine resolution.
            if x.abs() < 64 {
                assert!((mu - x).abs() <= 4 && (a - x).abs() <= 16, "{x}: µ {mu} A {a}");
            }
        }
    }

    #[test]
    fn codec_helpers() {
        assert_eq!(Codec::from_payload_type(0), Some(Codec::Pcmu));
        assert_eq!(Codec::from_payload_type(8), Some(Codec::Pcma));
        assert_eq!(Codec::from_payload_type(18), None);
        for law in [Codec::Pcmu, Codec::Pcma] {
            assert_eq!(law.decode_sample(law.silence()), if law == Codec::Pcmu { 0 } else { 8 });
            assert_eq!(law.encode(&[0, 0]), vec![law.silence(); 2]);
            assert_eq!(law.decode(&law.encode(&[1000, -1000])).len(), 2);
        }
    }
}
