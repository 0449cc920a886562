//! Voice activity detection for live transcription: which 16 kHz frames are
//! speech ([`VoiceDetector`]), and how frames become utterances
//! ([`Segmenter`]: onset, pre-roll, hangover, a maximum length).
//!
//! The detector here is energy based (frame RMS against an adaptive noise
//! floor). It is a stand-in behind a trait so a model-based detector (Silero,
//! issue #8) can replace it without touching the segmenter or the sessions.

use std::collections::VecDeque;

pub const SAMPLE_RATE: usize = 16_000;

/// Decides, frame by frame, whether a frame holds speech.
pub trait VoiceDetector: Send + Sync {
    /// Samples per frame the detector wants.
    fn frame_len(&self) -> usize;
    fn is_speech(&mut self, frame: &[f32]) -> bool;
}

/// Tunables of [`EnergyVad`].
#[derive(Debug, Clone, Copy)]
pub struct EnergySettings {
    /// A frame is speech when its RMS exceeds the noise floor times this.
    pub ratio: f32,
    /// ... and this absolute RMS (full scale = 1.0), so that near-digital
    /// silence does not make breath or hiss count as speech.
    pub min_rms: f32,
    pub frame_ms: usize,
    /// How far back the noise floor looks for the quietest frame.
    pub floor_window_ms: usize,
}

impl Default for EnergySettings {
    fn default() -> Self {
        Self {
            ratio: 4.0,    // about 12 dB above the noise
            min_rms: 0.01, // -40 dBFS
            frame_ms: 30,
            floor_window_ms: 3000,
        }
    }
}

/// Frame RMS against a noise floor taken as the quietest frame of the last
/// few seconds ("minimum statistics"): speech always has dips between
/// words, so the floor follows a changing background (a fan switched on is
/// learned within `floor_window_ms`) without learning speech as noise.
pub struct EnergyVad {
    settings: EnergySettings,
    /// Minimum RMS of each finished block, oldest first.
    blocks: VecDeque<f32>,
    block_min: f32,
    block_frames: usize,
}

/// Frames per block of the floor's window.
const BLOCK_FRAMES: usize = 16;

impl EnergyVad {
    pub fn new(settings: EnergySettings) -> Self {
        let blocks = (settings.floor_window_ms / (settings.frame_ms * BLOCK_FRAMES)).max(1);
        Self {
            settings,
            // A quiet room until the window has seen real audio.
            blocks: std::iter::repeat_n(0.001, blocks).collect(),
            block_min: f32::MAX,
            block_frames: 0,
        }
    }

    pub fn noise_floor(&self) -> f32 {
        self.blocks
            .iter()
            .copied()
            .fold(self.block_min, f32::min)
            .max(1e-5)
    }
}

pub fn rms(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    (frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32).sqrt()
}

impl VoiceDetector for EnergyVad {
    fn frame_len(&self) -> usize {
        SAMPLE_RATE * self.settings.frame_ms / 1000
    }

    fn is_speech(&mut self, frame: &[f32]) -> bool {
        let e = rms(frame);
        let speech = e > (self.noise_floor() * self.settings.ratio).max(self.settings.min_rms);
        self.block_min = self.block_min.min(e);
        self.block_frames += 1;
        if self.block_frames == BLOCK_FRAMES {
            self.blocks.push_back(self.block_min);
            self.blocks.pop_front();
            self.block_min = f32::MAX;
            self.block_frames = 0;
        }
        speech
    }
}

/// Tunables of [`Segmenter`], in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct SegmentSettings {
    /// Consecutive speech needed to open an utterance (skips clicks).
    pub onset_ms: usize,
    /// Audio kept from before the onset, so first consonants are not cut.
    pub preroll_ms: usize,
    /// Silence that ends an utterance (pauses inside a sentence are shorter).
    pub hangover_ms: usize,
    /// An utterance this long is cut even mid-speech (Whisper reads 30 s).
    pub max_utterance_ms: usize,
}

impl Default for SegmentSettings {
    fn default() -> Self {
        Self {
            onset_ms: 60,
            preroll_ms: 200,
            hangover_ms: 600,
            max_utterance_ms: 25_000,
        }
    }
}

/// A finished piece of speech.
#[derive(Debug, Clone)]
pub struct Utterance {
    pub id: u64,
    /// Offset of its first sample in the session's audio, in samples.
    pub start: usize,
    pub samples: Vec<f32>,
    /// Cut at the maximum length rather than by silence.
    pub forced: bool,
}

impl Utterance {
    pub fn start_s(&self) -> f64 {
        self.start as f64 / SAMPLE_RATE as f64
    }
    pub fn end_s(&self) -> f64 {
        (self.start + self.samples.len()) as f64 / SAMPLE_RATE as f64
    }
}

/// Turns a stream of samples into utterances. Its memory is bounded by the
/// maximum utterance plus one frame and the pre-roll.
pub struct Segmenter {
    vad: Box<dyn VoiceDetector>,
    settings: SegmentSettings,
    /// Samples not yet making a whole frame.
    pending: Vec<f32>,
    /// Recent non-speech frames (pre-roll) and the onset candidates.
    recent: VecDeque<Vec<f32>>,
    speech_run: usize,
    silence_run: usize,
    /// Samples consumed so far (whole frames).
    offset: usize,
    current: Option<Utterance>,
    /// Speech frames in the current utterance: one that is all silence (the
    /// rest of a cut utterance, when speech ended right after the cut) is
    /// dropped rather than sent to the model.
    voiced: usize,
    next_id: u64,
}

impl Segmenter {
    pub fn new(vad: Box<dyn VoiceDetector>, settings: SegmentSettings) -> Self {
        Self {
            vad,
            settings,
            pending: Vec::new(),
            recent: VecDeque::new(),
            speech_run: 0,
            silence_run: 0,
            offset: 0,
            current: None,
            voiced: 0,
            next_id: 0,
        }
    }

    fn ms_to_frames(&self, ms: usize) -> usize {
        let frame_ms = (self.vad.frame_len() * 1000 / SAMPLE_RATE).max(1);
        ms.div_ceil(frame_ms).max(1)
    }

    /// Feeds samples; returns the utterances they completed.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Utterance> {
        let mut done = Vec::new();
        let n = self.vad.frame_len();
        self.pending.extend_from_slice(samples);
        let mut at = 0;
        while self.pending.len() - at >= n {
            let frame = self.pending[at..at + n].to_vec();
            at += n;
            if let Some(u) = self.frame(frame) {
                done.push(u);
            }
        }
        self.pending.drain(..at);
        done
    }

    fn frame(&mut self, frame: Vec<f32>) -> Option<Utterance> {
        let speech = self.vad.is_speech(&frame);
        let len = frame.len();
        let start_of_frame = self.offset;
        self.offset += len;
        let hangover = self.ms_to_frames(self.settings.hangover_ms);
        let keep_tail = self.ms_to_frames(self.settings.preroll_ms) * len;
        if let Some(u) = &mut self.current {
            u.samples.extend_from_slice(&frame);
            self.silence_run = if speech { 0 } else { self.silence_run + 1 };
            self.voiced += usize::from(speech);
            if self.silence_run >= hangover {
                // Keep a short tail of the silence; drop the rest.
                let drop = (self.silence_run * len).saturating_sub(keep_tail);
                let mut u = self.current.take()?;
                u.samples.truncate(u.samples.len().saturating_sub(drop));
                self.silence_run = 0;
                self.speech_run = 0;
                return self.keep_voiced(u);
            }
            if u.samples.len() >= self.settings.max_utterance_ms * SAMPLE_RATE / 1000 {
                let mut u = self.current.take()?;
                u.forced = true;
                // Speech goes on: the next utterance starts right here.
                self.current = Some(Utterance {
                    id: self.next_id,
                    start: self.offset,
                    samples: Vec::new(),
                    forced: false,
                });
                self.next_id += 1;
                self.voiced = 0;
                return Some(u);
            }
            return None;
        }
        self.recent.push_back(frame);
        let onset = self.ms_to_frames(self.settings.onset_ms);
        let keep = self.ms_to_frames(self.settings.preroll_ms) + onset;
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
        self.speech_run = if speech { self.speech_run + 1 } else { 0 };
        if self.speech_run >= onset {
            let samples: Vec<f32> = self.recent.drain(..).flatten().collect();
            let start = (start_of_frame + len).saturating_sub(samples.len());
            self.current = Some(Utterance {
                id: self.next_id,
                start,
                samples,
                forced: false,
            });
            self.next_id += 1;
            self.silence_run = 0;
            self.voiced = onset;
        }
        None
    }

    fn keep_voiced(&mut self, u: Utterance) -> Option<Utterance> {
        let voiced = std::mem::take(&mut self.voiced);
        if voiced == 0 {
            // Nothing was created after it, so its id can be reused.
            self.next_id = u.id;
            return None;
        }
        Some(u)
    }

    /// The utterance in progress: its id, start and audio so far.
    pub fn current(&self) -> Option<&Utterance> {
        self.current.as_ref()
    }

    /// Ends the utterance in progress, if any (the client stopped).
    pub fn flush(&mut self) -> Option<Utterance> {
        let mut u = self.current.take()?;
        u.samples.append(&mut self.pending);
        self.silence_run = 0;
        self.speech_run = 0;
        self.keep_voiced(u)
    }

    /// Seconds of audio consumed.
    pub fn position_s(&self) -> f64 {
        self.offset as f64 / SAMPLE_RATE as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(ms: usize, amp: f32) -> Vec<f32> {
        (0..SAMPLE_RATE * ms / 1000)
            .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / SAMPLE_RATE as f32).sin() * amp)
            .collect()
    }

    /// Deterministic low-level hiss.
    fn noise(ms: usize, amp: f32) -> Vec<f32> {
        let mut x: u32 = 12345;
        (0..SAMPLE_RATE * ms / 1000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) as f32 / 32768.0 - 1.0) * amp
            })
            .collect()
    }

    fn segmenter(max_ms: usize) -> Segmenter {
        Segmenter::new(
            Box::new(EnergyVad::new(EnergySettings::default())),
            SegmentSettings {
                max_utterance_ms: max_ms,
                ..Default::default()
            },
        )
    }

    #[test]
    fn energy_vad_separates_speech_from_background_and_adapts() {
        let mut v = EnergyVad::new(EnergySettings::default());
        let n = v.frame_len();
        assert_eq!(n, 480);
        let quiet = noise(30, 0.002);
        for _ in 0..20 {
            assert!(!v.is_speech(&quiet));
        }
        assert!(v.noise_floor() < 0.002, "floor {}", v.noise_floor());
        assert!(v.is_speech(&tone(30, 0.2)));
        // A louder steady background (a fan) is learned as noise, not speech,
        // and speech must then stand out above it.
        let fan = noise(30, 0.03);
        let first = v.is_speech(&fan);
        for _ in 0..300 {
            v.is_speech(&fan);
        }
        assert!(first, "a sudden loud background first looks like speech");
        assert!(!v.is_speech(&fan), "floor {}", v.noise_floor());
        assert!(v.is_speech(&tone(30, 0.3)));
    }

    #[test]
    fn segmenter_cuts_utterances_at_pauses_with_preroll_and_timestamps() {
        let mut s = segmenter(25_000);
        let mut audio = noise(500, 0.001);
        audio.extend(tone(800, 0.2)); // 0.5 .. 1.3 s
        audio.extend(noise(200, 0.001)); // short pause: same utterance
        audio.extend(tone(500, 0.2)); // 1.5 .. 2.0 s
        audio.extend(noise(1000, 0.001)); // long pause: ends it
        audio.extend(tone(400, 0.2)); // 3.0 .. 3.4 s
        audio.extend(noise(1000, 0.001));
        // Odd chunk sizes: frames straddle pushes.
        let mut out = Vec::new();
        for chunk in audio.chunks(333) {
            out.extend(s.push(chunk));
        }
        assert_eq!(
            out.len(),
            2,
            "{:?}",
            out.iter()
                .map(|u| (u.start_s(), u.end_s()))
                .collect::<Vec<_>>()
        );
        let (a, b) = (&out[0], &out[1]);
        assert_eq!((a.id, b.id), (0, 1));
        // Starts include the 200 ms pre-roll; ends keep a short tail.
        assert!((0.25..0.5).contains(&a.start_s()), "{}", a.start_s());
        assert!((2.0..2.4).contains(&a.end_s()), "{}", a.end_s());
        assert!((2.75..3.0).contains(&b.start_s()), "{}", b.start_s());
        assert!((3.4..3.8).contains(&b.end_s()), "{}", b.end_s());
        assert!(!a.forced && !b.forced);
        assert_eq!(
            a.samples.len(),
            ((a.end_s() - a.start_s()) * 16_000.0).round() as usize
        );
        assert!(s.current().is_none());
    }

    #[test]
    fn long_speech_is_cut_at_the_maximum_and_flush_ends_the_rest() {
        let mut s = segmenter(1000);
        let out = s.push(&tone(2500, 0.2));
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|u| u.forced && u.samples.len() <= 16_000 + 480));
        assert_eq!(out[1].start, out[0].start + out[0].samples.len());
        let rest = s.flush().expect("speech in progress");
        assert!(!rest.forced);
        assert!(!rest.samples.is_empty() && rest.samples.len() < 16_000);
        assert!(s.flush().is_none());
        // Speech ending just after a cut leaves a silent remainder: dropped,
        // and the next utterance takes the unused id.
        let mut s = segmenter(1500);
        let mut audio = tone(1500, 0.2);
        audio.extend(noise(1000, 0.001));
        audio.extend(tone(300, 0.2));
        audio.extend(noise(1000, 0.001));
        let out = s.push(&audio);
        let ids: Vec<_> = out.iter().map(|u| (u.id, u.forced)).collect();
        assert_eq!(ids, [(0, true), (1, false)], "{ids:?}");
        assert!(out[1].start_s() > 2.2, "{}", out[1].start_s());
        // A click shorter than the onset opens nothing.
        let mut s = segmenter(1000);
        let mut audio = noise(300, 0.001);
        audio.extend(tone(30, 0.3));
        audio.extend(noise(1000, 0.001));
        assert!(s.push(&audio).is_empty());
        assert!(s.current().is_none());
    }
}
