//! WAV files: RIFF/WAVE with PCM samples (Microsoft/IBM "Multimedia Programming Interface and Data
//! Specifications 1.0", 1991, §3 "RIFF", WAVE form; `WAVE_FORMAT_EXTENSIBLE` from the later
//! "Multiple Channel Audio Data and WAVE Files" note).
//!
//! The media core works on 8 kHz mono 16-bit samples. [`read_wav`] takes a whole file as bytes and
//! returns those, converting 16-bit PCM of another rate or channel count on the way (channels are
//! averaged, the rate is changed by linear interpolation without a low-pass filter: good enough
//! for test tones and prompts, not for music). Anything that is not 16-bit PCM is refused with a
//! [`WavError`] that says what was found.
//!
//! [`WavWriter`] streams 8 kHz mono 16-bit samples to any `Write + Seek` and writes the RIFF and
//! `data` sizes when finished (or whenever [`WavWriter::update_header`] is called, so a killed
//! recorder still leaves a readable file). Reading copes with a file whose sizes were never
//! written: a `data` size of 0 or past the end of the file means "to the end".
//!
//! Why not `hound` (3.5.1, checked against this module's tests): it skips an odd-sized chunk
//! without its RIFF pad byte (so a `LIST` of odd length before `data` derails it), refuses a
//! `data` size that is odd (`u32::MAX` from an unfinished recorder) and reads a size of 0 as no
//! samples, names neither µ-law nor ADPCM (`Unsupported`, no tag), and its writer seeks to
//! absolute offsets and never gives the stream back. A wrapper keeping today's behaviour would
//! walk the chunks itself, which is most of this reader.

use super::SAMPLE_RATE;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// `WAVE_FORMAT_PCM`: integer samples.
const FORMAT_PCM: u16 = 1;
/// `WAVE_FORMAT_EXTENSIBLE`: the real format is the first two bytes of the sub-format GUID.
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Size of the header [`WavWriter`] writes: RIFF header (12), `fmt ` chunk (8 + 16), `data` header (8).
const HEADER_LEN: u64 = 44;
/// Sample rates [`read_wav`] converts from.
const SUPPORTED_RATES: std::ops::RangeInclusive<u32> = 1_000..=768_000;

/// Why a WAV file was refused, or why writing one failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum WavError {
    /// The file does not start with `RIFF`.
    NotRiff,
    /// The RIFF form type is not `WAVE`.
    NotWave,
    /// No `fmt ` chunk before the end of the file.
    MissingFmt,
    /// The `fmt ` chunk is shorter than the 16 bytes of a PCM format.
    FmtTooShort {
        /// Its declared or available length.
        len: usize,
    },
    /// No `data` chunk.
    MissingData,
    /// The samples are not integer PCM (e.g. 3 = IEEE float, 6 = A-law, 7 = µ-law, 2 = ADPCM).
    UnsupportedEncoding {
        /// The `wFormatTag` (or the sub-format of `WAVE_FORMAT_EXTENSIBLE`).
        format_tag: u16,
    },
    /// PCM, but not 16 bits per sample (e.g. 8-bit unsigned or 24-bit).
    UnsupportedBitsPerSample {
        /// The `wBitsPerSample` found.
        bits: u16,
    },
    /// The format declares zero channels.
    NoChannels,
    /// The sample rate is outside 1 kHz to 768 kHz (0 included), so converting it to 8 kHz would
    /// make no sense or blow the file up more than eightfold.
    UnsupportedSampleRate {
        /// The `nSamplesPerSec` found.
        rate: u32,
    },
    /// Writing: the `data` chunk would exceed the 4 GiB a RIFF size field can hold.
    TooLong,
    /// Reading or writing the underlying stream failed.
    Io(io::Error),
}

impl WavError {
    fn encoding_name(tag: u16) -> &'static str {
        match tag {
            2 => "Microsoft ADPCM",
            3 => "IEEE float",
            6 => "A-law",
            7 => "µ-law",
            0x11 => "IMA ADPCM",
            0x31 => "GSM 6.10",
            0x55 => "MPEG layer 3",
            _ => "unknown",
        }
    }
}

impl fmt::Display for WavError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WavError::NotRiff => f.write_str("not a RIFF file"),
            WavError::NotWave => f.write_str("RIFF file is not of form WAVE"),
            WavError::MissingFmt => f.write_str("WAVE file has no fmt chunk"),
            WavError::FmtTooShort { len } => write!(f, "WAVE fmt chunk is {len} bytes, shorter than 16"),
            WavError::MissingData => f.write_str("WAVE file has no data chunk"),
            WavError::UnsupportedEncoding { format_tag } => {
                write!(
                    f,
                    "WAVE format tag {format_tag:#06x} ({}) is not PCM; only 16-bit PCM is supported",
                    Self::encoding_name(*format_tag)
                )
            }
            WavError::UnsupportedBitsPerSample { bits } => write!(f, "{bits}-bit PCM is not supported; only 16-bit PCM is"),
            WavError::NoChannels => f.write_str("WAVE format declares 0 channels"),
            WavError::UnsupportedSampleRate { rate } => write!(f, "WAVE sample rate {rate} Hz is outside 1000..=768000 Hz"),
            WavError::TooLong => f.write_str("WAVE data would exceed 4 GiB"),
            WavError::Io(e) => write!(f, "WAVE I/O error: {e}"),
        }
    }
}

impl std::error::Error for WavError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WavError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for WavError {
    fn from(e: io::Error) -> Self {
        WavError::Io(e)
    }
}

/// What the `fmt ` chunk of a file said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// `wFormatTag` (the sub-format for `WAVE_FORMAT_EXTENSIBLE`): 1 is PCM.
    pub format_tag: u16,
    /// Interleaved channels.
    pub channels: u16,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Bits per sample.
    pub bits_per_sample: u16,
}

/// A file read by [`read_wav`]: 8 kHz mono samples, and the format they were converted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    /// The format of the file as found.
    pub source: WavFormat,
    /// Samples at [`SAMPLE_RATE`], one channel.
    pub samples: Vec<i16>,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a `fmt ` chunk body.
fn parse_fmt(body: &[u8]) -> Result<WavFormat, WavError> {
    let short = || WavError::FmtTooShort { len: body.len() };
    let mut format_tag = u16_at(body, 0).ok_or_else(short)?;
    let channels = u16_at(body, 2).ok_or_else(short)?;
    let sample_rate = u32_at(body, 4).ok_or_else(short)?;
    let bits_per_sample = u16_at(body, 14).ok_or_else(short)?;
    if format_tag == FORMAT_EXTENSIBLE {
        // cbSize (16), wValidBitsPerSample (18), dwChannelMask (20), SubFormat GUID (24..40).
        if let Some(sub) = u16_at(body, 24) {
            format_tag = sub;
        }
    }
    Ok(WavFormat { format_tag, channels, sample_rate, bits_per_sample })
}

/// Finds the `fmt ` and `data` chunks of a RIFF/WAVE file.
fn find_chunks(bytes: &[u8]) -> Result<(WavFormat, &[u8]), WavError> {
    if bytes.get(0..4) != Some(b"RIFF") {
        return Err(WavError::NotRiff);
    }
    if bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWave);
    }
    let (mut format, mut data) = (None, None);
    let mut pos = 12usize;
    while pos.saturating_add(8) <= bytes.len() && (format.is_none() || data.is_none()) {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4).map_or(0, |s| s as usize);
        let body = pos + 8;
        let declared_end = body.saturating_add(size);
        if id == b"fmt " {
            let end = declared_end.min(bytes.len());
            format = Some(parse_fmt(&bytes[body..end])?);
        } else if id == b"data" {
            // A recorder that never finalised its header leaves 0 (or garbage): read to the end.
            let end = if size == 0 || declared_end > bytes.len() { bytes.len() } else { declared_end };
            data = Some(&bytes[body..end]);
            if end == bytes.len() {
                break;
            }
        }
        pos = declared_end.saturating_add(size & 1); // chunks are padded to even length
    }
    match (format, data) {
        (None, _) => Err(WavError::MissingFmt),
        (Some(_), None) => Err(WavError::MissingData),
        (Some(f), Some(d)) => Ok((f, d)),
    }
}

/// Reads a whole WAV file from bytes and returns 8 kHz mono samples.
///
/// 16-bit PCM of any rate and channel count is converted ([`downmix`], [`resample_linear`]);
/// any other encoding or sample size is an error naming what was found.
pub fn read_wav(bytes: &[u8]) -> Result<Wav, WavError> {
    let (format, data) = find_chunks(bytes)?;
    if format.format_tag != FORMAT_PCM {
        return Err(WavError::UnsupportedEncoding { format_tag: format.format_tag });
    }
    if format.bits_per_sample != 16 {
        return Err(WavError::UnsupportedBitsPerSample { bits: format.bits_per_sample });
    }
    if format.channels == 0 {
        return Err(WavError::NoChannels);
    }
    if !SUPPORTED_RATES.contains(&format.sample_rate) {
        return Err(WavError::UnsupportedSampleRate { rate: format.sample_rate });
    }
    let interleaved: Vec<i16> = data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let mono = downmix(&interleaved, format.channels);
    let samples = resample_linear(&mono, format.sample_rate, SAMPLE_RATE);
    Ok(Wav { source: format, samples })
}

/// Reads everything from `reader` and parses it with [`read_wav`].
pub fn read_wav_from<R: Read>(mut reader: R) -> Result<Wav, WavError> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    read_wav(&bytes)
}

/// Averages interleaved frames of `channels` samples into one channel. A trailing partial frame is
/// dropped; `channels == 0` gives nothing.
pub fn downmix(interleaved: &[i16], channels: u16) -> Vec<i16> {
    match channels {
        0 => Vec::new(),
        1 => interleaved.to_vec(),
        n => interleaved
            .chunks_exact(usize::from(n))
            .map(|frame| {
                let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
                // The mean of i16 values is within i16 range.
                (sum / i32::from(n)) as i16
            })
            .collect(),
    }
}

/// Changes the sample rate by linear interpolation between neighbouring input samples.
///
/// Output sample `i` is taken at input position `i * from / to`. No anti-alias filter is applied.
/// Returns the input unchanged if the rates are equal, and nothing if either rate is zero.
pub fn resample_linear(samples: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    if from_rate == to_rate {
        return samples.to_vec();
    }
    if from_rate == 0 || to_rate == 0 || samples.is_empty() {
        return Vec::new();
    }
    let (from, to) = (u64::from(from_rate), u64::from(to_rate));
    let out_len = samples.len() as u64 * to / from;
    (0..out_len)
        .map(|i| {
            let position = i * from; // in units of 1/to input samples
            let index = (position / to) as usize;
            let frac = (position % to) as i64;
            let a = i64::from(samples[index.min(samples.len() - 1)]);
            let b = i64::from(samples[(index + 1).min(samples.len() - 1)]);
            let to = to as i64;
            // Round half away from zero; the result lies between a and b.
            let num = a * (to - frac) + b * frac;
            ((num + num.signum() * to / 2) / to) as i16
        })
        .collect()
}

// ===== WavWriter =====

/// Streams 8 kHz mono 16-bit PCM into a WAV file.
///
/// [`WavWriter::new`] writes a 44-byte header with zero sizes; [`WavWriter::write_samples`] appends;
/// [`WavWriter::finish`] (or [`WavWriter::update_header`]) seeks back and writes the sizes. The
/// file starts wherever the stream was positioned when the writer was created.
#[derive(Debug)]
pub struct WavWriter<W: Write + Seek> {
    inner: W,
    /// Stream position of the `RIFF` tag.
    start: u64,
    /// Bytes of samples written so far.
    data_len: u64,
}

impl<W: Write + Seek> WavWriter<W> {
    /// Writes the header at the current position of `inner`.
    pub fn new(mut inner: W) -> Result<Self, WavError> {
        let start = inner.stream_position()?;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(b"RIFF");
        header.extend_from_slice(&36u32.to_le_bytes());
        header.extend_from_slice(b"WAVEfmt ");
        header.extend_from_slice(&16u32.to_le_bytes());
        header.extend_from_slice(&FORMAT_PCM.to_le_bytes());
        header.extend_from_slice(&1u16.to_le_bytes()); // channels
        header.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
        header.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // byte rate
        header.extend_from_slice(&2u16.to_le_bytes()); // block align
        header.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        header.extend_from_slice(b"data");
        header.extend_from_slice(&0u32.to_le_bytes());
        inner.write_all(&header)?;
        Ok(WavWriter { inner, start, data_len: 0 })
    }

    /// Appends samples. Fails with [`WavError::TooLong`] (writing nothing) if the file would
    /// outgrow the 32-bit RIFF sizes.
    pub fn write_samples(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let add = samples.len() as u64 * 2;
        if self.data_len + add > u64::from(u32::MAX) - (HEADER_LEN - 8) {
            return Err(WavError::TooLong);
        }
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.inner.write_all(&bytes)?;
        self.data_len += add;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.data_len / 2
    }

    /// Writes the current sizes into the header and returns to the end of the data.
    pub fn update_header(&mut self) -> Result<(), WavError> {
        // Both fit in u32: write_samples keeps data_len + 36 <= u32::MAX.
        let riff_len = (self.data_len + HEADER_LEN - 8) as u32;
        let data_len = self.data_len as u32;
        self.inner.seek(SeekFrom::Start(self.start + 4))?;
        self.inner.write_all(&riff_len.to_le_bytes())?;
        self.inner.seek(SeekFrom::Start(self.start + HEADER_LEN - 4))?;
        self.inner.write_all(&data_len.to_le_bytes())?;
        self.inner.seek(SeekFrom::Start(self.start + HEADER_LEN + self.data_len))?;
        Ok(())
    }

    /// Fixes up the sizes, flushes and gives the stream back, positioned at the end of the file.
    pub fn finish(mut self) -> Result<W, WavError> {
        self.update_header()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Encodes samples as a complete 8 kHz mono 16-bit WAV file in memory.
pub fn write_wav(samples: &[i16]) -> Result<Vec<u8>, WavError> {
    let mut writer = WavWriter::new(io::Cursor::new(Vec::new()))?;
    writer.write_samples(samples)?;
    Ok(writer.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV header for any format, with `data` holding `data_len` bytes of `data`.
    fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(channels) * u32::from(bits) / 8).to_le_bytes());
        v.extend_from_slice(&(channels * bits / 8).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        let riff = (v.len() - 8) as u32;
        v[4..8].copy_from_slice(&riff.to_le_bytes());
        v
    }

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    #[test]
    fn write_then_read_round_trip() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        let bytes = write_wav(&samples).unwrap();
        assert_eq!(bytes.len(), 44 + 2000);
        assert_eq!(&bytes[4..8], &(36u32 + 2000).to_le_bytes());
        assert_eq!(&bytes[40..44], &2000u32.to_le_bytes());
        let wav = read_wav(&bytes).unwrap();
        assert_eq!(wav.samples, samples);
        assert_eq!(wav.source, WavFormat { format_tag: 1, channels: 1, sample_rate: 8000, bits_per_sample: 16 });
    }

    #[test]
    fn writer_streams_and_fixes_sizes_at_an_offset() {
        let mut cursor = io::Cursor::new(b"junk".to_vec());
        cursor.seek(SeekFrom::End(0)).unwrap();
        let mut w = WavWriter::new(cursor).unwrap();
        w.write_samples(&[1, 2, 3]).unwrap();
        w.update_header().unwrap();
        w.write_samples(&[4]).unwrap();
        assert_eq!(w.samples_written(), 4);
        let bytes = w.finish().unwrap().into_inner();
        assert_eq!(read_wav(&bytes[4..]).unwrap().samples, vec![1, 2, 3, 4]);
    }

    #[test]
    fn unfinalised_sizes_read_to_the_end() {
        let mut bytes = write_wav(&[5, 6, 7]).unwrap();
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(read_wav(&bytes).unwrap().samples, vec![5, 6, 7]);
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read_wav(&bytes).unwrap().samples, vec![5, 6, 7]);
    }

    #[test]
    fn stereo_16k_is_downmixed_and_resampled() {
        // 16 kHz stereo: left 1000, right -1000 then 3000 / 1000; every second frame survives.
        let frames: Vec<i16> = (0..100).flat_map(|i| if i % 2 == 0 { [1000, -1000] } else { [3000, 1000] }).collect();
        let wav = read_wav(&wav_bytes(1, 2, 16000, 16, &pcm(&frames))).unwrap();
        assert_eq!(wav.source.channels, 2);
        assert_eq!(wav.samples.len(), 50);
        assert!(wav.samples.iter().all(|&s| s == 0), "{:?}", &wav.samples[..4]);
    }

    #[test]
    fn resample_interpolates() {
        assert_eq!(resample_linear(&[0, 100, 200, 300], 4, 8), vec![0, 50, 100, 150, 200, 250, 300, 300]);
        assert_eq!(resample_linear(&[0, 100, 200, 300, 400, 500], 12, 8), vec![0, 150, 300, 450]);
        assert_eq!(resample_linear(&[7], 44100, 8000), Vec::<i16>::new());
        assert_eq!(resample_linear(&[1, 2], 0, 8000), Vec::<i16>::new());
        assert_eq!(downmix(&[1, 2, 3], 2), vec![1]);
    }

    #[test]
    fn other_formats_are_refused_by_name() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (wav_bytes(1, 1, 8000, 8, &[128; 10]), "8-bit PCM is not supported"),
            (wav_bytes(3, 1, 8000, 32, &[0; 8]), "IEEE float"),
            (wav_bytes(7, 1, 8000, 8, &[0xFF; 8]), "µ-law"),
            (wav_bytes(2, 1, 8000, 4, &[0; 8]), "ADPCM"),
            (wav_bytes(1, 1, 8000, 24, &[0; 6]), "24-bit"),
            (wav_bytes(1, 0, 8000, 16, &[0; 4]), "0 channels"),
            (wav_bytes(1, 1, 0, 16, &[0; 4]), "rate 0 Hz"),
            (wav_bytes(1, 1, 10, 16, &[0; 4]), "rate 10 Hz"),
            (b"RIFX\0\0\0\0WAVE".to_vec(), "not a RIFF"),
            (b"RIFF\0\0\0\0AVI ".to_vec(), "not of form WAVE"),
            (b"RIFF\0\0\0\0WAVE".to_vec(), "no fmt"),
            (wav_bytes(1, 1, 8000, 16, &[])[..36].to_vec(), "no data"),
        ];
        for (bytes, needle) in cases {
            let err = read_wav(&bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
        assert!(matches!(read_wav(&wav_bytes(3, 1, 8000, 32, &[])), Err(WavError::UnsupportedEncoding { format_tag: 3 })));
    }

    #[test]
    fn extensible_pcm_is_accepted() {
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend_from_slice(&40u32.to_le_bytes());
        v.extend_from_slice(&0xFFFEu16.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&16000u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(&22u16.to_le_bytes()); // cbSize
        v.extend_from_slice(&16u16.to_le_bytes()); // valid bits
        v.extend_from_slice(&4u32.to_le_bytes()); // channel mask
        v.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
        v.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd-sized chunk with its pad byte
        v.extend_from_slice(b"data\x04\0\0\0");
        v.extend_from_slice(&pcm(&[9, -9]));
        assert_eq!(read_wav(&v).unwrap().samples, vec![9, -9]);
    }

    #[test]
    fn garbage_never_panics() {
        let good = write_wav(&[1, 2, 3, 4]).unwrap();
        for cut in 0..good.len() {
            let _ = read_wav(&good[..cut]);
        }
        for i in 0..good.len() {
            for v in [0u8, 0xFF, 0x10] {
                let mut b = good.clone();
                b[i] = v;
                let _ = read_wav(&b);
            }
        }
    }
}
