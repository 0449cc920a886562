//! Times the ONNX backends and prints one JSON line per model.
//!
//! ```sh
//! cargo run --release -p brisk-backends --features onnx --example onnx_bench -- [REPEATS]
//! ```
//! Models from `$BRISK_MODELS_DIR` (default `models/`): silero-vad on
//! beckett.wav played 6 times (60 s), piper-joe-medium on a 3-sentence
//! paragraph, pp-ocrv4 on a 3-line image rendered with DejaVu Sans. Reported:
//! load time, best run time (of REPEATS, default 3) and, for audio, the real
//! time factor (run seconds / audio seconds).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use brisk_backends::onnx::{ocr, piper, vad};
use brisk_core::{OcrRequest, SpeakRequest, VadParams};
use image::{Rgb, RgbImage};

fn best<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut out = None;
    let mut best = f64::MAX;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(v);
    }
    (best, out.expect("at least one run"))
}

fn render(lines: &[&str], px: f32) -> Result<RgbImage, Box<dyn std::error::Error>> {
    let font = FontVec::try_from_vec(std::fs::read(
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    )?)?;
    let scale = PxScale::from(px);
    let scaled = font.as_scaled(scale);
    let line_h = px * 1.8;
    let width = lines
        .iter()
        .map(|l| {
            l.chars()
                .map(|c| scaled.h_advance(font.glyph_id(c)))
                .sum::<f32>()
        })
        .fold(0f32, f32::max)
        + 2.0 * px;
    let mut img = RgbImage::from_pixel(
        width as u32,
        (line_h * lines.len() as f32 + px) as u32,
        Rgb([255; 3]),
    );
    for (n, line) in lines.iter().enumerate() {
        let mut x = px;
        let baseline = px + n as f32 * line_h + scaled.ascent() * 0.5;
        for c in line.chars() {
            let id = font.glyph_id(c);
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(x, baseline));
            x += scaled.h_advance(id);
            let Some(outlined) = font.outline_glyph(glyph) else {
                continue;
            };
            let b = outlined.px_bounds();
            outlined.draw(|gx, gy, cov| {
                let (ix, iy) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
                if ix >= 0 && iy >= 0 && (ix as u32) < img.width() && (iy as u32) < img.height() {
                    let p = img.get_pixel_mut(ix as u32, iy as u32);
                    let v = ((255.0 * (1.0 - cov.clamp(0.0, 1.0))) as u8).min(p[0]);
                    *p = Rgb([v; 3]);
                }
            });
        }
    }
    Ok(img)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let models = std::env::var_os("BRISK_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"));
    let repeats: usize = std::env::args().nth(1).map_or(Ok(3), |a| a.parse())?;
    let opts = BTreeMap::new();

    let t = Instant::now();
    let mut m = vad::SileroVad::load(&models.join("silero-vad"), &opts)?;
    let load = t.elapsed().as_secs_f64();
    let wav = std::fs::read(models.join("testdata/beckett.wav"))?;
    let clip = brisk_backends::whisper::audio::decode_to_mono_16k(&wav, 60.0)?;
    let audio: Vec<f32> = clip.iter().copied().cycle().take(clip.len() * 6).collect();
    let (secs, r) = best(repeats, || m.detect(&audio, &VadParams::default()));
    let audio_s = audio.len() as f64 / 16_000.0;
    println!(
        "{{\"model\":\"silero-vad\",\"load_ms\":{:.0},\"audio_s\":{audio_s:.1},\"run_ms\":{:.0},\"rtf\":{:.4},\"segments\":{}}}",
        load * 1e3,
        secs * 1e3,
        secs / audio_s,
        r?.segments.len()
    );

    let t = Instant::now();
    let mut m = piper::PiperVoice::load(&models.join("piper-joe-medium"), &opts)?;
    let load = t.elapsed().as_secs_f64();
    let req = SpeakRequest {
        text: "Welcome back. Today we practise the past tense, one sentence at a time. \
               Take your time, and read each sentence aloud."
            .into(),
        voice: None,
        speed: 1.0,
    };
    let (secs, a) = best(repeats, || m.speak(&req));
    let a = a?;
    let audio_s = a.samples.len() as f64 / a.sample_rate as f64;
    println!(
        "{{\"model\":\"piper-joe-medium\",\"load_ms\":{:.0},\"audio_s\":{audio_s:.1},\"run_ms\":{:.0},\"rtf\":{:.3}}}",
        load * 1e3,
        secs * 1e3,
        secs / audio_s
    );

    let t = Instant::now();
    let mut m = ocr::PpOcr::load(&models.join("pp-ocrv4"), &opts)?;
    let load = t.elapsed().as_secs_f64();
    let img = render(
        &[
            "Invoice 2024-117: total 58.40 EUR",
            "Pay within 30 days, thank you",
            "Questions? Write to billing@example.com",
        ],
        28.0,
    )?;
    let req = OcrRequest {
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    };
    let (secs, r) = best(repeats, || m.recognize(&req));
    println!(
        "{{\"model\":\"pp-ocrv4\",\"load_ms\":{:.0},\"image\":\"{}x{}\",\"run_ms\":{:.0},\"lines\":{}}}",
        load * 1e3,
        req.width,
        req.height,
        secs * 1e3,
        r?.lines.len()
    );
    Ok(())
}
