//! Test signals and their analysis: a sine tone generator, silence, the Goertzel algorithm
//! (G. Goertzel, "An algorithm for the evaluation of finite trigonometric series", 1958; the
//! detector ITU-T Q.24 era DTMF receivers use), a dominant-frequency estimator and a count of
//! non-silent seconds.
//!
//! [`analyse`] follows `shared/interop/analyse-wav.py` step by step (20 ms blocks against a
//! -40 dBFS threshold, up to five 0.5 s windows of active audio, Hann window, 10 Hz scan refined
//! to 1 Hz, median), so a recording checked here and one checked by the script agree.

use super::{PcmFrame, FRAME_SAMPLES, SAMPLE_RATE};
use std::f64::consts::TAU;

/// Full scale for dBFS: a square wave of amplitude 32768 is 0 dBFS.
const FULL_SCALE: f64 = 32768.0;

/// Default silence threshold of [`active_seconds`] and [`analyse`], as in `analyse-wav.py`.
pub const DEFAULT_SILENCE_DBFS: f64 = -40.0;

/// A sine tone at 8 kHz with continuous phase across frames.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    /// Phase increment per sample, in cycles.
    step: f64,
    /// Current phase, in cycles, kept in `[0, 1)` so precision does not decay over long runs.
    phase: f64,
    amplitude: f64,
}

impl ToneGenerator {
    /// A tone of `frequency_hz` with peak `amplitude` (e.g. 8000 for about -12 dBFS), starting at
    /// phase 0. Frequencies at or above 4000 Hz alias; that is the caller's choice.
    pub fn new(frequency_hz: f64, amplitude: i16) -> Self {
        ToneGenerator { step: frequency_hz / f64::from(SAMPLE_RATE), phase: 0.0, amplitude: f64::from(amplitude) }
    }

    /// Fills `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            // |amplitude * sin| <= 32767, so the cast cannot saturate in a surprising way.
            *s = (self.amplitude * (TAU * self.phase).sin()).round() as i16;
            self.phase = (self.phase + self.step).fract();
        }
    }

    /// The next 20 ms frame (160 samples).
    pub fn next_frame(&mut self) -> PcmFrame {
        let mut frame = [0; FRAME_SAMPLES];
        self.fill(&mut frame);
        frame
    }
}

/// A frame of digital silence.
pub const fn silence() -> PcmFrame {
    [0; FRAME_SAMPLES]
}

/// Goertzel power of `samples` at `frequency_hz`: `|X(f)|²` of the samples' discrete-time Fourier
/// transform at that frequency (not limited to DFT bins).
pub fn goertzel_power(samples: &[f64], frequency_hz: f64, sample_rate: u32) -> f64 {
    let coeff = 2.0 * (TAU * frequency_hz / f64::from(sample_rate)).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Share of the energy of `samples` that lies at `frequency_hz`, from 0 to about 1.
///
/// A pure tone at that frequency gives close to 1 (over a whole number of periods, exactly 1);
/// silence gives 0. A threshold of 0.5 is a reasonable "the tone is there" test.
pub fn tone_level(samples: &[i16], frequency_hz: f64, sample_rate: u32) -> f64 {
    let x: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    let energy: f64 = x.iter().map(|v| v * v).sum();
    if energy == 0.0 {
        return 0.0;
    }
    // A sine of amplitude A over N samples has |X|² ≈ (A·N/2)² and energy A²·N/2.
    2.0 * goertzel_power(&x, frequency_hz, sample_rate) / (x.len() as f64 * energy)
}

/// The strongest frequency in `samples`, in whole Hz, searched from 40 Hz to
/// `min(rate/2 - 20, 4000)` Hz: a 10 Hz scan of the Hann-windowed samples, then a 1 Hz scan
/// around the best. `None` for fewer than two samples or all zeros.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> Option<f64> {
    let n = samples.len();
    if n < 2 || samples.iter().all(|&s| s == 0) {
        return None;
    }
    let windowed: Vec<f64> =
        samples.iter().enumerate().map(|(i, &v)| f64::from(v) * (0.5 - 0.5 * (TAU * i as f64 / (n - 1) as f64).cos())).collect();
    let f_max = (f64::from(sample_rate) / 2.0 - 20.0).min(4000.0);
    let mut best = (40.0, -1.0);
    let scan = |from: f64, to: f64, step: f64, best: &mut (f64, f64)| {
        let mut f = from;
        while f <= to {
            let p = goertzel_power(&windowed, f, sample_rate);
            if p > best.1 {
                *best = (f, p);
            }
            f += step;
        }
    };
    scan(40.0, f_max, 10.0, &mut best);
    let coarse = best.0;
    scan(coarse - 10.0, coarse + 10.0, 1.0, &mut best);
    Some(best.0)
}

/// Start indices of the 20 ms blocks whose RMS is above `silence_dbfs`.
fn active_blocks(samples: &[i16], sample_rate: u32, silence_dbfs: f64) -> (usize, Vec<usize>) {
    let block = (sample_rate / 50).max(1) as usize;
    let threshold = (FULL_SCALE * 10f64.powf(silence_dbfs / 20.0)).powi(2);
    let active = samples
        .chunks_exact(block)
        .enumerate()
        .filter(|(_, b)| b.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / block as f64 > threshold)
        .map(|(i, _)| i * block)
        .collect();
    (block, active)
}

/// Seconds of `samples` (in whole 20 ms blocks) whose RMS is above `silence_dbfs` (e.g.
/// [`DEFAULT_SILENCE_DBFS`]).
pub fn active_seconds(samples: &[i16], sample_rate: u32, silence_dbfs: f64) -> f64 {
    if sample_rate == 0 {
        return 0.0;
    }
    let (block, active) = active_blocks(samples, sample_rate, silence_dbfs);
    (active.len() * block) as f64 / f64::from(sample_rate)
}

/// What [`analyse`] found in a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Length in seconds.
    pub duration: f64,
    /// RMS over the whole recording in dBFS; `None` when empty or all zero.
    pub rms_dbfs: Option<f64>,
    /// Seconds of non-silent 20 ms blocks (threshold [`DEFAULT_SILENCE_DBFS`]).
    pub active_seconds: f64,
    /// Median dominant frequency over up to five 0.5 s windows of active audio.
    pub dominant: Option<f64>,
    /// The dominant frequency of each window.
    pub windows: Vec<f64>,
}

/// Analyses a recording as `analyse-wav.py` does.
pub fn analyse(samples: &[i16], sample_rate: u32) -> Analysis {
    let n = samples.len();
    let mut result = Analysis { duration: 0.0, rms_dbfs: None, active_seconds: 0.0, dominant: None, windows: Vec::new() };
    if n == 0 || sample_rate == 0 {
        return result;
    }
    result.duration = n as f64 / f64::from(sample_rate);
    let mean_square = samples.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64;
    if mean_square > 0.0 {
        result.rms_dbfs = Some(10.0 * (mean_square / (FULL_SCALE * FULL_SCALE)).log10());
    }
    let (block, active) = active_blocks(samples, sample_rate, DEFAULT_SILENCE_DBFS);
    result.active_seconds = (active.len() * block) as f64 / f64::from(sample_rate);
    if active.is_empty() {
        return result;
    }
    // Windows of 0.5 s that are active throughout, sampled at 10%, 30%, ... 90% of the candidates.
    let mut window = (sample_rate / 2) as usize;
    let is_active: std::collections::HashSet<usize> = active.iter().copied().collect();
    let candidates: Vec<usize> =
        active.iter().copied().filter(|&i| (0..window / block).all(|k| is_active.contains(&(i + k * block)))).collect();
    let mut starts = Vec::new();
    if candidates.is_empty() {
        let s = active[active.len() / 2];
        starts.push(s);
        window = window.min(n - s);
    } else {
        let k = candidates.len();
        for j in 0..5 {
            let s = candidates[((2 * j + 1) * k / 10).min(k - 1)];
            if !starts.contains(&s) {
                starts.push(s);
            }
        }
    }
    result.windows = starts.iter().filter_map(|&s| dominant_frequency(&samples[s..(s + window).min(n)], sample_rate)).collect();
    let mut sorted = result.windows.clone();
    sorted.sort_by(f64::total_cmp);
    result.dominant = sorted.get(sorted.len() / 2).copied();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, frames: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(freq, 8000);
        (0..frames).flat_map(|_| g.next_frame()).collect()
    }

    #[test]
    fn frames_have_continuous_phase() {
        let mut framed = ToneGenerator::new(440.0, 10000);
        let mut whole = ToneGenerator::new(440.0, 10000);
        let mut one_go = vec![0i16; 3 * FRAME_SAMPLES];
        whole.fill(&mut one_go);
        let frames: Vec<i16> = (0..3).flat_map(|_| framed.next_frame()).collect();
        assert_eq!(frames, one_go);
        // Against the closed form: no drift after 10 minutes of frames.
        let mut g = ToneGenerator::new(1000.0, 10000);
        for _ in 0..30_000 {
            g.next_frame();
        }
        let frame = g.next_frame();
        let n0 = 30_000 * FRAME_SAMPLES;
        for (i, &s) in frame.iter().enumerate() {
            let expected = 10000.0 * (TAU * 1000.0 * (n0 + i) as f64 / 8000.0).sin();
            assert!((f64::from(s) - expected).abs() <= 1.0, "sample {i}: {s} vs {expected}");
        }
        assert_eq!(silence(), [0; FRAME_SAMPLES]);
    }

    #[test]
    fn goertzel_finds_the_tone() {
        let x = tone(1000.0, 10);
        assert!(tone_level(&x, 1000.0, 8000) > 0.95);
        assert!(tone_level(&x, 1200.0, 8000) < 0.05);
        assert!(tone_level(&x, 697.0, 8000) < 0.05);
        assert_eq!(tone_level(&silence(), 1000.0, 8000), 0.0);
    }

    #[test]
    fn dominant_frequency_of_tones() {
        for f in [300.0, 440.0, 1000.0, 1633.0, 3400.0] {
            let d = dominant_frequency(&tone(f, 25), 8000).unwrap();
            assert!((d - f).abs() <= 2.0, "{f} Hz estimated as {d}");
        }
        assert_eq!(dominant_frequency(&[0; 400], 8000), None);
        assert_eq!(dominant_frequency(&[5], 8000), None);
    }

    #[test]
    fn active_seconds_counts_non_silent_blocks() {
        let mut x = tone(440.0, 50); // 1 s of tone
        x.extend_from_slice(&[0; 8000]); // 1 s of silence
        x.extend(tone(440.0, 25).iter().map(|&s| s / 1000)); // 0.5 s at -72 dBFS: silent
        assert!((active_seconds(&x, 8000, DEFAULT_SILENCE_DBFS) - 1.0).abs() < 1e-9);
        assert_eq!(active_seconds(&x, 0, DEFAULT_SILENCE_DBFS), 0.0);
    }

    #[test]
    fn analyse_like_the_interop_script() {
        let mut x = vec![0i16; 4000];
        x.extend(tone(1000.0, 150)); // 3 s
        let a = analyse(&x, 8000);
        assert!((a.duration - 3.5).abs() < 1e-9);
        assert!((a.active_seconds - 3.0).abs() < 1e-9);
        assert_eq!(a.windows.len(), 5);
        assert!((a.dominant.unwrap() - 1000.0).abs() <= 1.0, "{a:?}");
        let rms = a.rms_dbfs.unwrap();
        assert!(rms < -15.0 && rms > -17.0, "{rms}");
        // Shorter than one window of active audio: the middle block is used.
        let short = analyse(&tone(500.0, 10), 8000);
        assert!((short.dominant.unwrap() - 500.0).abs() <= 2.0, "{short:?}");
        assert_eq!(analyse(&[], 8000).dominant, None);
        assert_eq!(analyse(&[0; 800], 8000).active_seconds, 0.0);
    }
}
