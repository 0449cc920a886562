//! Streaming mono resampling to the analysis rate (rubato's FFT resampler,
//! fed in fixed input chunks so memory stays constant).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use crate::error::{invalid, AnalysisError};

const CHUNK: usize = 4096;
const SUB_CHUNKS: usize = 6;

pub(crate) enum Stream {
    /// The file already has the analysis rate.
    Passthrough,
    Resample(Box<Fft<f32>>, Vec<f32>, Vec<f32>, usize, u64, u64, f64),
}

/// Mono resampler: `push` input, get output through the callback in order;
/// `finish` flushes the tail. The output has the resampler's delay trimmed
/// and `ceil(n_in * ratio)` samples in total, like a whole-clip resample.
pub(crate) struct MonoResampler {
    inner: Stream,
}

fn err(e: impl std::fmt::Display) -> AnalysisError {
    invalid(format!("cannot resample the audio: {e}"))
}

impl MonoResampler {
    pub fn new(from: u32, to: u32) -> Result<Self, AnalysisError> {
        if from == to {
            return Ok(MonoResampler {
                inner: Stream::Passthrough,
            });
        }
        // The FFT length sets the anti-aliasing filter's transition band:
        // rubato's default (sub-chunks of ~256 frames, for low latency) cuts
        // well below Nyquist, one 4096 chunk passes nearly all of it. Six
        // sub-chunks land near soxr's HQ passband, which librosa uses, so
        // the high-frequency features (centroid, roll-off, flatness) agree.
        let rs = Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            CHUNK,
            SUB_CHUNKS,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(err)?;
        let delay = rs.output_delay();
        let out = vec![0.0; rs.output_frames_max()];
        let ratio = f64::from(to) / f64::from(from);
        Ok(MonoResampler {
            inner: Stream::Resample(
                Box::new(rs),
                Vec::with_capacity(CHUNK),
                out,
                delay,
                0,
                0,
                ratio,
            ),
        })
    }

    pub fn push(
        &mut self,
        input: &[f32],
        sink: &mut impl FnMut(&[f32]),
    ) -> Result<(), AnalysisError> {
        let Stream::Resample(rs, pending, out, skip, n_in, n_out, _) = &mut self.inner else {
            sink(input);
            return Ok(());
        };
        *n_in += input.len() as u64;
        let mut rest = input;
        while !rest.is_empty() {
            let need = rs.input_frames_next() - pending.len();
            let take = need.min(rest.len());
            pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if pending.len() == rs.input_frames_next() {
                run(rs, pending, out, skip, n_out, None, u64::MAX, sink)?;
            }
        }
        Ok(())
    }

    pub fn finish(&mut self, sink: &mut impl FnMut(&[f32])) -> Result<(), AnalysisError> {
        let Stream::Resample(rs, pending, out, skip, n_in, n_out, ratio) = &mut self.inner else {
            return Ok(());
        };
        let total = (*n_in as f64 * *ratio).ceil() as u64;
        // Feed the partial last chunk, then silence until the delayed tail is out.
        let mut guard = 0;
        while *n_out < total && guard < 64 {
            let partial = pending.len();
            pending.resize(rs.input_frames_next(), 0.0);
            run(rs, pending, out, skip, n_out, Some(partial), total, sink)?;
            guard += 1;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    rs: &mut Fft<f32>,
    pending: &mut Vec<f32>,
    out: &mut [f32],
    skip: &mut usize,
    n_out: &mut u64,
    partial: Option<usize>,
    limit: u64,
    sink: &mut impl FnMut(&[f32]),
) -> Result<(), AnalysisError> {
    let n = pending.len();
    let input = InterleavedSlice::new(&pending[..], 1, n).map_err(err)?;
    let out_len = out.len();
    let mut output =
        rubato::audioadapter_buffers::direct::InterleavedSlice::new_mut(out, 1, out_len)
            .map_err(err)?;
    let indexing = rubato::Indexing {
        input_offset: 0,
        output_offset: 0,
        partial_len: partial,
        active_channels_mask: None,
    };
    let (_, produced) = rs
        .process_into_buffer(&input, &mut output, Some(&indexing))
        .map_err(err)?;
    pending.clear();
    let mut chunk = &out[..produced];
    let s = (*skip).min(chunk.len());
    *skip -= s;
    chunk = &chunk[s..];
    let room = (limit - *n_out).min(chunk.len() as u64) as usize;
    chunk = &chunk[..room];
    *n_out += chunk.len() as u64;
    if !chunk.is_empty() {
        sink(chunk);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_resampling_keeps_length_and_timing() {
        // A 1 kHz tone at 44.1 kHz, pushed in odd-sized pieces.
        let n = 44_100 * 2 + 123;
        let x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 44_100.0).sin())
            .collect();
        let mut rs = MonoResampler::new(44_100, 22_050).expect("new");
        let mut y = Vec::new();
        for piece in x.chunks(777) {
            rs.push(piece, &mut |s| y.extend_from_slice(s))
                .expect("push");
        }
        rs.finish(&mut |s| y.extend_from_slice(s)).expect("finish");
        assert_eq!(y.len(), (n as f64 / 2.0).ceil() as usize);
        // Delay trimmed: the output is the tone at the new rate, late by at
        // most half an output sample (the filter's group delay is not a
        // whole number of samples).
        let err = |shift: f32| -> f32 {
            let sq: f32 = (2000..20_000)
                .map(|i| {
                    let t = (i as f32 + shift) / 22_050.0;
                    (y[i] - (2.0 * std::f32::consts::PI * 1000.0 * t).sin()).powi(2)
                })
                .sum();
            (sq / 18_000.0).sqrt()
        };
        let best = (-20..=20)
            .map(|s| s as f32 / 20.0)
            .min_by(|a, b| err(*a).total_cmp(&err(*b)))
            .unwrap_or(0.0);
        assert!(best.abs() <= 0.5, "shifted by {best} samples");
        assert!(err(best) < 0.01, "rms error {}", err(best));
    }
}
