//! Audio decoding (symphonia: WAV/PCM, MP3, FLAC, Ogg Vorbis) to mono
//! 16 kHz `f32`, with resampling by rubato.
//!
//! Every failure on user input is a [`BackendError::InvalidInput`]; nothing
//! here panics on bad bytes. Memory is bounded by `max_seconds`: decoding
//! stops with an error as soon as the decoded audio is longer than that.

use std::io::ErrorKind;

use brisk_core::BackendError;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Whisper's input sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// Sample rates accepted from files (outside this range is surely garbage).
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 768_000;

/// Corrupt packets tolerated before giving up.
const MAX_BAD_PACKETS: usize = 16;

fn invalid(msg: impl Into<String>) -> BackendError {
    BackendError::InvalidInput(msg.into())
}

fn too_long(max_seconds: f64) -> BackendError {
    invalid(format!("audio is longer than the limit of {max_seconds} s"))
}

/// Decodes an audio file (WAV, MP3, FLAC, Ogg Vorbis; format sniffed from
/// the bytes), mixes it down to mono and resamples it to 16 kHz.
///
/// Errors with [`BackendError::InvalidInput`] when the bytes are empty, not
/// a supported audio format, truncated, have no samples, or hold more than
/// `max_seconds` of audio.
pub fn decode_to_mono_16k(bytes: &[u8], max_seconds: f64) -> Result<Vec<f32>, BackendError> {
    let (mono, rate) = decode_to_mono(bytes, max_seconds)?;
    resample(&mono, rate, SAMPLE_RATE)
}

/// Decodes and mixes down to mono at the file's own sample rate.
/// Returns `(samples, sample_rate)`.
pub fn decode_to_mono(bytes: &[u8], max_seconds: f64) -> Result<(Vec<f32>, u32), BackendError> {
    // Demuxers and decoders see untrusted bytes: a panic inside them is
    // reported as bad input rather than taking the worker thread down.
    std::panic::catch_unwind(|| decode_inner(bytes, max_seconds))
        .unwrap_or_else(|_| Err(invalid("cannot decode audio (malformed file)")))
}

fn decode_inner(bytes: &[u8], max_seconds: f64) -> Result<(Vec<f32>, u32), BackendError> {
    if max_seconds.is_nan() || max_seconds <= 0.0 {
        return Err(invalid("the audio length limit must be positive"));
    }
    if bytes.is_empty() {
        return Err(invalid("audio is empty"));
    }
    let mss = MediaSourceStream::new(
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        Default::default(),
    );
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            mss,
            &FormatOptions {
                // Trim encoder delay and padding (MP3 LAME/Xing, Ogg).
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
    // A WAV written to a pipe declares a data chunk of u32::MAX bytes: its
    // frame count is not a real length.
    let bytes_per_frame = u64::from(params.bits_per_sample.unwrap_or(0) / 8)
        * params.channels.map_or(0, |c| c.count() as u64);
    let declared_frames = params
        .n_frames
        .filter(|&n| n.saturating_mul(bytes_per_frame) < 0xFFFF_0000);
    let max_frames = (max_seconds * f64::from(rate)).ceil();
    if let Some(n) = declared_frames {
        if n as f64 > max_frames {
            return Err(too_long(max_seconds));
        }
    }
    let max_frames = max_frames as usize;
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| invalid(format!("unsupported audio codec: {e}")))?;

    let mut mono: Vec<f32> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut bad_packets = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            // The normal end of the stream (and of a truncated one).
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
        let frames = decoded.frames();
        if frames == 0 {
            continue;
        }
        if mono.len() + frames > max_frames {
            return Err(too_long(max_seconds));
        }
        let need = decoded.capacity();
        if buf.as_ref().is_none_or(|b| b.capacity() < need) {
            buf = Some(SampleBuffer::new(need as u64, spec));
        }
        let Some(b) = buf.as_mut() else { continue };
        b.copy_interleaved_ref(decoded);
        let scale = 1.0 / channels as f32;
        mono.extend(b.samples().chunks_exact(channels).map(|frame| {
            let s = frame.iter().sum::<f32>() * scale;
            if s.is_finite() {
                s
            } else {
                0.0
            }
        }));
    }
    if mono.is_empty() {
        return Err(invalid("audio has no samples (empty or truncated file)"));
    }
    // A container that promised more frames than it delivered was cut short
    // (allow some slack for encoder delay/padding estimates).
    if let Some(n) = declared_frames {
        let n = n as usize;
        let slack = n / 100 + 4096;
        if mono.len() + slack < n {
            return Err(invalid(format!(
                "audio is truncated: {} of {n} frames present",
                mono.len()
            )));
        }
    }
    Ok((mono, rate))
}

/// Resamples mono audio from `from` Hz to `to` Hz (FFT resampler, exact
/// ratio). Returns the input unchanged when the rates match.
pub fn resample(pcm: &[f32], from: u32, to: u32) -> Result<Vec<f32>, BackendError> {
    if from == to {
        return Ok(pcm.to_vec());
    }
    if pcm.is_empty() {
        return Ok(Vec::new());
    }
    let err = |e: &dyn std::fmt::Display| invalid(format!("cannot resample {from} Hz audio: {e}"));
    let mut rs = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| err(&e))?;
    let input = InterleavedSlice::new(pcm, 1, pcm.len()).map_err(|e| err(&e))?;
    let out = rs
        .process_all(&input, pcm.len(), None)
        .map_err(|e| err(&e))?;
    Ok(out.take_data())
}

/// Encodes 16-bit PCM WAV bytes (for tests and tools).
pub fn encode_wav_i16(samples: &[f32], sample_rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * u32::from(channels) * 2).to_le_bytes());
    out.extend_from_slice(&(channels * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `audio_decode` fuzz target: a WAV header with a sample
    /// rate of 0 makes symphonia's WAV reader panic (`TimeBase::new`). The
    /// upload must be refused as bad input, not answered with a 500.
    #[test]
    fn wav_with_zero_sample_rate_is_invalid_input() {
        let crash: &[u8] = b"RIFF\xfa\xdd\x04\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\
            \x00\x00\x00\x00\x00\x1c\x4a\x00\x00\x02\x10\x00data\x6c\x00\x04\x74\
            \xdd\x04\x81\x00\x00\x00\x00\x00\x00\x00\xff\x2e\xff\x2d\x28\xc4\xff\x1d\
            \xff\x17\xff\x21\x8d\xf2\xda";
        assert_eq!(crash.len(), 69);
        match decode_to_mono_16k(crash, 60.0) {
            Err(BackendError::InvalidInput(_)) => {}
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    fn sine(rate: u32, secs: f32, hz: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn wav_16k_round_trips() {
        let s = sine(16_000, 1.0, 440.0);
        let pcm = decode_to_mono_16k(&encode_wav_i16(&s, 16_000, 1), 10.0).expect("decode");
        assert_eq!(pcm.len(), s.len());
        assert!(pcm.iter().zip(&s).all(|(a, b)| (a - b).abs() < 1e-3));
    }

    #[test]
    fn garbage_and_limits_are_invalid_input() {
        for bytes in [&b""[..], b"hello world, not audio at all", &[0u8; 1000]] {
            assert!(matches!(
                decode_to_mono_16k(bytes, 10.0),
                Err(BackendError::InvalidInput(_))
            ));
        }
        let wav = encode_wav_i16(&sine(16_000, 2.0, 440.0), 16_000, 1);
        assert!(matches!(
            decode_to_mono_16k(&wav, 1.0),
            Err(BackendError::InvalidInput(_))
        ));
    }
}
