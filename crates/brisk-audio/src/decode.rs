//! Streaming decode (symphonia, packet by packet) feeding the analysers.
//!
//! The same guarantees as the transcription decoder: every failure on user
//! bytes is [`AnalysisError::InvalidInput`], a panic inside a demuxer or
//! codec is caught and reported as a malformed file, corrupt packets are
//! skipped up to a limit, and a container that promised more frames than it
//! delivered is refused as truncated.

use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ebur128::{EbuR128, Mode};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::error::{invalid, AnalysisError};
use crate::features::{Feature, FeatureSet};
use crate::frames::{FrameAnalyzer, FrameResult, HOP, SR};
use crate::resample::MonoResampler;
use crate::{key, tempo, Analysis, Loudness, Mfcc, Spectral};

const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 768_000;
const MAX_CHANNELS: usize = 64;
const MAX_BAD_PACKETS: usize = 16;
/// Shorter audio gets `tempo: null` and `danceability: null`.
const MIN_RHYTHM_SECONDS: f64 = 1.0;

#[derive(Debug, Clone, Copy)]
pub struct AnalyzeOptions {
    pub features: FeatureSet,
    /// Refuse audio longer than this (decoding stops as soon as it is).
    pub max_seconds: f64,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            features: FeatureSet::all(),
            max_seconds: 6.0 * 3600.0,
        }
    }
}

/// Counts the bytes the demuxer has consumed, for progress.
struct Tracked<R> {
    inner: R,
    pos: Arc<AtomicU64>,
    len: Option<u64>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for Tracked<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let p = self.inner.seek(to)?;
        self.pos.store(p, Ordering::Relaxed);
        Ok(p)
    }
}

impl<R: Read + Seek + Send + Sync> MediaSource for Tracked<R> {
    fn is_seekable(&self) -> bool {
        true
    }
    fn byte_len(&self) -> Option<u64> {
        self.len
    }
}

/// Analyses the audio file at `path`. `progress` gets the fraction of the
/// file read so far, in [0, 1], a few hundred times at most.
pub fn analyze_file(
    path: &Path,
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Analysis, AnalysisError> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    analyze(file, Some(len), opts, progress)
}

/// Analyses audio read from `reader` (`len` bytes long, if known).
pub fn analyze<R: Read + Seek + Send + Sync + 'static>(
    reader: R,
    len: Option<u64>,
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Analysis, AnalysisError> {
    if len == Some(0) {
        return Err(invalid("audio is empty"));
    }
    if opts.max_seconds.is_nan() || opts.max_seconds <= 0.0 {
        return Err(invalid("the audio length limit must be positive"));
    }
    // Demuxers and decoders see untrusted bytes: a panic inside them is
    // bad input, not a dead worker.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(reader, len, opts, progress)
    }))
    .unwrap_or_else(|_| Err(invalid("cannot decode audio (malformed file)")))
}

/// EBU R128 measured on a thread of its own. The loudness meter (with its
/// 4x oversampled true peak on every channel) costs about as much as all the
/// frame features together, and needs nothing from them, so on a machine
/// with two cores the two halves run side by side. The channel is bounded:
/// if the meter falls behind, the decoder waits instead of queueing the
/// file in memory.
struct LoudnessThread {
    tx: Option<std::sync::mpsc::SyncSender<Vec<f32>>>,
    handle: Option<std::thread::JoinHandle<Result<Loudness, AnalysisError>>>,
}

/// Decoded blocks in flight to the loudness thread (a packet is at most a
/// few thousand frames, so this is well under a megabyte).
const LOUDNESS_QUEUE: usize = 16;

impl LoudnessThread {
    fn spawn(rate: u32, channels: usize) -> Result<Self, AnalysisError> {
        // Made here, not on the thread, so a bad rate or channel count is
        // an error before any decoding.
        let mut ebu = EbuR128::new(channels as u32, rate, Mode::I | Mode::LRA | Mode::TRUE_PEAK)
            .map_err(|e| invalid(format!("cannot measure loudness of this audio: {e}")))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<f32>>(LOUDNESS_QUEUE);
        let handle = std::thread::Builder::new()
            .name("brisk-loudness".into())
            .spawn(move || {
                for block in rx {
                    ebu.add_frames_f32(&block)
                        .map_err(|e| invalid(format!("cannot measure loudness: {e}")))?;
                }
                loudness(&ebu, channels)
            })
            .map_err(|e| invalid(format!("cannot start the loudness meter: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    fn push(&mut self, interleaved: &[f32]) {
        if let Some(tx) = &self.tx {
            if tx.send(interleaved.to_vec()).is_err() {
                // The meter stopped on an error; `finish` reports it.
                self.tx = None;
            }
        }
    }

    fn finish(mut self) -> Result<Loudness, AnalysisError> {
        // Closing the channel ends the thread's loop.
        self.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(result)) => result,
            _ => Err(invalid("the loudness meter failed")),
        }
    }
}

struct State {
    rate: u32,
    channels: usize,
    frames_in: u64,
    ebu: Option<LoudnessThread>,
    resampler: Option<MonoResampler>,
    frames: Option<FrameAnalyzer>,
    mono: Vec<f32>,
}

impl State {
    fn new(rate: u32, channels: usize, want: FeatureSet) -> Result<Self, AnalysisError> {
        let ebu = if want.has(Feature::Loudness) {
            Some(LoudnessThread::spawn(rate, channels)?)
        } else {
            None
        };
        let (resampler, frames) = if want.needs_frames() {
            (
                Some(MonoResampler::new(rate, SR)?),
                Some(FrameAnalyzer::new(want)),
            )
        } else {
            (None, None)
        };
        Ok(State {
            rate,
            channels,
            frames_in: 0,
            ebu,
            resampler,
            frames,
            mono: Vec::new(),
        })
    }

    fn push(&mut self, interleaved: &[f32]) -> Result<(), AnalysisError> {
        self.frames_in += (interleaved.len() / self.channels) as u64;
        if let Some(ebu) = self.ebu.as_mut() {
            ebu.push(interleaved);
        }
        if let (Some(rs), Some(fa)) = (self.resampler.as_mut(), self.frames.as_mut()) {
            let scale = 1.0 / self.channels as f32;
            self.mono.clear();
            self.mono.extend(
                interleaved
                    .chunks_exact(self.channels)
                    .map(|f| f.iter().sum::<f32>() * scale),
            );
            rs.push(&self.mono, &mut |s| fa.push(s))?;
        }
        Ok(())
    }

    fn finish(mut self, want: FeatureSet) -> Result<Analysis, AnalysisError> {
        let duration = self.frames_in as f64 / f64::from(self.rate);
        // The frame features finish first, while the meter drains its queue.
        let fr: Option<FrameResult> = match (self.resampler.as_mut(), self.frames.take()) {
            (Some(rs), Some(mut fa)) => {
                rs.finish(&mut |s| fa.push(s))?;
                Some(fa.finish())
            }
            _ => None,
        };
        let loudness = match self.ebu.take() {
            Some(ebu) => Some(ebu.finish()?),
            None => None,
        };
        let pick = |f: Feature| fr.as_ref().filter(|_| want.has(f));
        let frame_rate = f64::from(SR) / HOP as f64;
        Ok(Analysis {
            duration,
            sample_rate: self.rate,
            channels: self.channels as u16,
            loudness,
            tempo: pick(Feature::Tempo).map(|r| {
                if duration < MIN_RHYTHM_SECONDS {
                    None
                } else {
                    tempo::track(&r.onset, frame_rate)
                }
            }),
            key: pick(Feature::Key).map(|r| key::estimate(&r.chroma)),
            rms: pick(Feature::Rms).map(|r| r.rms),
            spectral: pick(Feature::Spectral).map(|r| Spectral {
                centroid_hz: r.centroid,
                rolloff_hz: r.rolloff,
                flatness: r.flatness,
            }),
            zero_crossing_rate: pick(Feature::ZeroCrossingRate).map(|r| r.zcr),
            mfcc: pick(Feature::Mfcc).map(|r| Mfcc {
                mean: r.mfcc_mean.clone(),
                var: r.mfcc_var.clone(),
            }),
            chroma: pick(Feature::Chroma).map(|r| r.chroma.clone()),
            danceability: pick(Feature::Danceability).map(|r| {
                if duration < MIN_RHYTHM_SECONDS {
                    None
                } else {
                    r.danceability
                }
            }),
        })
    }
}

fn loudness(ebu: &EbuR128, channels: usize) -> Result<Loudness, AnalysisError> {
    let err = |e: ebur128::Error| invalid(format!("cannot measure loudness: {e}"));
    let integrated = ebu.loudness_global().map_err(err)?;
    let lra = ebu.loudness_range().map_err(err)?;
    let mut peak = 0.0f64;
    for c in 0..channels {
        peak = peak.max(ebu.true_peak(c as u32).map_err(err)?);
    }
    Ok(Loudness {
        integrated_lufs: integrated.is_finite().then_some(integrated),
        loudness_range_lu: if lra.is_finite() { lra } else { 0.0 },
        true_peak_dbtp: (peak > 0.0).then(|| 20.0 * peak.log10()),
    })
}

fn run<R: Read + Seek + Send + Sync + 'static>(
    reader: R,
    len: Option<u64>,
    opts: &AnalyzeOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Analysis, AnalysisError> {
    let pos = Arc::new(AtomicU64::new(0));
    let source = Tracked {
        inner: reader,
        pos: pos.clone(),
        len,
    };
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            mss,
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| {
            invalid(format!(
                "not a supported audio file (wav, mp3, flac, ogg): {e}"
            ))
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| invalid("the file has no audio track"))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let rate = params
        .sample_rate
        .ok_or_else(|| invalid("the audio track has no sample rate"))?;
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(invalid(format!("unsupported sample rate {rate} Hz")));
    }
    // A WAV written to a pipe declares u32::MAX bytes: not a real length.
    let bytes_per_frame = u64::from(params.bits_per_sample.unwrap_or(0) / 8)
        * params.channels.map_or(0, |c| c.count() as u64);
    let declared_frames = params
        .n_frames
        .filter(|&n| n.saturating_mul(bytes_per_frame) < 0xFFFF_0000);
    let max_frames = (opts.max_seconds * f64::from(rate)).ceil() as u64;
    let too_long = || {
        invalid(format!(
            "audio is longer than the limit of {} s",
            opts.max_seconds
        ))
    };
    if declared_frames.is_some_and(|n| n > max_frames) {
        return Err(too_long());
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| invalid(format!("unsupported audio codec: {e}")))?;

    let mut state: Option<State> = None;
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut bad_packets = 0usize;
    let mut reported = 0.0f64;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(SymError::DecodeError(_)) if bad_packets < MAX_BAD_PACKETS => {
                bad_packets += 1;
                continue;
            }
            Err(e) => return Err(invalid(format!("cannot read audio: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(_)) if bad_packets < MAX_BAD_PACKETS => {
                bad_packets += 1;
                continue;
            }
            Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(invalid(format!("cannot decode audio: {e}"))),
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count();
        if channels == 0 {
            return Err(invalid("audio has no channels"));
        }
        if channels > MAX_CHANNELS {
            return Err(invalid(format!(
                "audio has {channels} channels (at most {MAX_CHANNELS})"
            )));
        }
        if decoded.frames() == 0 {
            continue;
        }
        let st = match state.as_mut() {
            Some(s) => s,
            None => state.insert(State::new(spec.rate.max(1), channels, opts.features)?),
        };
        if st.channels != channels || st.rate != spec.rate {
            return Err(invalid("the audio format changes within the file"));
        }
        if st.frames_in + decoded.frames() as u64 > max_frames {
            return Err(too_long());
        }
        let need = decoded.capacity();
        if buf.as_ref().is_none_or(|b| b.capacity() < need) {
            buf = Some(SampleBuffer::new(need as u64, spec));
        }
        let Some(b) = buf.as_mut() else { continue };
        b.copy_interleaved_ref(decoded);
        let samples = b.samples_mut();
        for s in samples.iter_mut() {
            if !s.is_finite() {
                *s = 0.0;
            }
        }
        st.push(samples)?;
        if let Some(total) = len {
            let done = pos.load(Ordering::Relaxed) as f64 / total as f64;
            if done - reported >= 0.005 {
                reported = done.min(1.0);
                progress(reported);
            }
        }
    }
    let state = state.ok_or_else(|| invalid("audio has no samples (empty or truncated file)"))?;
    if let Some(n) = declared_frames {
        let slack = n / 100 + 4096;
        if state.frames_in + slack < n {
            return Err(invalid(format!(
                "audio is truncated: {} of {n} frames present",
                state.frames_in
            )));
        }
    }
    let out = state.finish(opts.features)?;
    progress(1.0);
    Ok(out)
}
