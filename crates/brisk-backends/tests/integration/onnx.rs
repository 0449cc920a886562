#![cfg(all(feature = "onnx", feature = "whisper"))]
//! The ONNX backends on the fetched models (scripts/fetch-models: onnxruntime,
//! silero-vad, piper-joe-medium, pp-ocrv4, testdata): silero VAD on real
//! speech padded with silence, a piper voice (needs espeak-ng, see
//! scripts/install-deps) and PP-OCR on text rendered at test time with
//! DejaVu Sans (Debian fonts-dejavu-core).

use crate::common;

use std::collections::BTreeMap;

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use brisk_backends::onnx::{ocr, piper, vad};
use brisk_backends::whisper::audio::decode_to_mono_16k;
use brisk_core::{
    Backend, BackendError, OcrRequest, Request, Response, SpeakRequest, Task, VadParams,
};
use image::{Rgb, RgbImage};

fn no_options() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn beckett_16k() -> Vec<f32> {
    let bytes = std::fs::read(common::fetched("testdata/beckett.wav")).expect("read beckett.wav");
    decode_to_mono_16k(&bytes, 60.0).expect("decode beckett.wav")
}

#[test]
fn vad_finds_the_speech_between_silences() {
    common::fetched("onnxruntime");
    let mut m =
        vad::SileroVad::load(&common::fetched("silero-vad"), &no_options()).expect("load silero");
    assert_eq!(m.task(), Task::Vad);
    let speech = beckett_16k();
    let pad = vec![0f32; 3 * 16_000];
    let audio = [pad.clone(), speech.clone(), pad].concat();
    let r = m.detect(&audio, &VadParams::default()).expect("vad");
    let speech_end = 3.0 + speech.len() as f64 / 16_000.0;
    assert!((r.duration - (speech_end + 3.0)).abs() < 1e-6);
    // Six phrases with pauses between them: "Ever tried. Ever failed. ..."
    assert_eq!(r.segments.len(), 6, "{:?}", r.segments);
    let first = r.segments.first().expect("segments");
    let last = r.segments.last().expect("segments");
    // Nothing in the padding; the speech inside the padded span.
    assert!(first.start >= 2.9 && first.start < 4.0, "{:?}", r.segments);
    assert!(
        last.end <= speech_end + 0.2 && last.end > speech_end - 1.5,
        "{:?}",
        r.segments
    );
    let covered: f64 = r.segments.iter().map(|s| s.end - s.start).sum();
    assert!(
        covered > 4.0,
        "only {covered:.2} s of speech found: {:?}",
        r.segments
    );
    for w in r.segments.windows(2) {
        assert!(w[0].end <= w[1].start, "overlap: {:?}", r.segments);
    }
    // Silence alone has no speech; the model's state does not leak between calls.
    let quiet = m
        .detect(&vec![0f32; 32_000], &VadParams::default())
        .expect("vad");
    assert!(quiet.segments.is_empty(), "{:?}", quiet.segments);
    // A bad threshold is the caller's error.
    let bad = VadParams {
        threshold: 1.5,
        ..VadParams::default()
    };
    assert!(matches!(
        m.detect(&audio, &bad),
        Err(BackendError::InvalidInput(_))
    ));
}

#[test]
fn vad_streamed_window_by_window_scores_as_the_whole_file() {
    common::fetched("onnxruntime");
    let dir = common::fetched("silero-vad");
    let mut whole = vad::SileroVad::load(&dir, &no_options()).expect("load");
    let audio = [vec![0f32; 8_000], beckett_16k()].concat();
    let expected = whole.probabilities(&audio).expect("whole");
    let mut live = vad::SileroStream::new(vad::SileroVad::load(&dir, &no_options()).expect("load"));
    let got: Vec<f32> = audio
        .chunks(vad::WINDOW)
        .map(|w| live.next(w).expect("window"))
        .collect();
    assert_eq!(got.len(), expected.len());
    for (i, (a, b)) in got.iter().zip(&expected).enumerate() {
        assert!((a - b).abs() < 1e-6, "window {i}: {a} vs {b}");
    }
    assert!(expected.iter().any(|p| *p > 0.9), "speech scores high");
    assert!(live.next(&[0.0; vad::WINDOW + 1]).is_err());
}

#[test]
fn piper_speaks_at_its_sample_rate() {
    common::fetched("onnxruntime");
    let mut m = piper::PiperVoice::load(&common::fetched("piper-joe-medium"), &no_options())
        .expect("load piper voice (needs espeak-ng: scripts/install-deps)");
    assert_eq!(m.task(), Task::Speech);
    let req = |text: &str, speed: f32| {
        Request::Speak(SpeakRequest {
            text: text.into(),
            voice: Some("alloy".into()),
            speed,
        })
    };
    let mut out = m.infer(vec![
        req("Hello world. This is brisk speaking.", 1.0),
        req("Hello world. This is brisk speaking.", 2.0),
        req("   ", 1.0),
        req("Hi", 9.0),
    ]);
    let audio = |r: Result<Response, BackendError>| match r {
        Ok(Response::Speech(a)) => a,
        other => panic!("expected speech, got {other:?}"),
    };
    let fast = audio(out.remove(1));
    let normal = audio(out.remove(0));
    assert_eq!(normal.sample_rate, 22_050);
    let secs = normal.samples.len() as f64 / 22_050.0;
    assert!((1.0..6.0).contains(&secs), "{secs} s");
    let rms =
        (normal.samples.iter().map(|s| s * s).sum::<f32>() / normal.samples.len() as f32).sqrt();
    assert!(rms > 0.01, "near silent: rms {rms}");
    // Twice the speed, clearly shorter.
    assert!(
        (fast.samples.len() as f64) < normal.samples.len() as f64 * 0.75,
        "{} vs {}",
        fast.samples.len(),
        normal.samples.len()
    );
    assert!(
        matches!(out[0], Err(BackendError::InvalidInput(_))),
        "{:?}",
        out[0]
    );
    assert!(
        matches!(out[1], Err(BackendError::InvalidInput(_))),
        "{:?}",
        out[1]
    );
}

/// Black text lines on white, rendered with DejaVu Sans at `px` pixels.
fn render(lines: &[&str], px: f32) -> RgbImage {
    let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let data = std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e}; install fonts-dejavu-core (scripts/install-deps)")
    });
    let font = FontVec::try_from_vec(data).expect("parse DejaVuSans.ttf");
    let scaled = font.as_scaled(PxScale::from(px));
    let line_h = (px * 1.8) as u32;
    let width = lines
        .iter()
        .map(|l| {
            l.chars()
                .map(|c| scaled.h_advance(font.glyph_id(c)))
                .sum::<f32>()
        })
        .fold(0f32, f32::max) as u32
        + 2 * px as u32;
    let mut img = RgbImage::from_pixel(
        width,
        line_h * lines.len() as u32 + px as u32,
        Rgb([255; 3]),
    );
    for (n, line) in lines.iter().enumerate() {
        let mut x = px;
        let baseline = px + n as f32 * line_h as f32 + scaled.ascent() * 0.5;
        for c in line.chars() {
            let id = font.glyph_id(c);
            let glyph = id.with_scale_and_position(PxScale::from(px), ab_glyph::point(x, baseline));
            x += scaled.h_advance(id);
            if let Some(outlined) = font.outline_glyph(glyph) {
                let b = outlined.px_bounds();
                outlined.draw(|gx, gy, cov| {
                    let (px_, py_) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
                    if px_ >= 0
                        && py_ >= 0
                        && (px_ as u32) < img.width()
                        && (py_ as u32) < img.height()
                    {
                        let v = (255.0 * (1.0 - cov.clamp(0.0, 1.0))) as u8;
                        let p = img.get_pixel_mut(px_ as u32, py_ as u32);
                        let v = v.min(p[0]);
                        *p = Rgb([v; 3]);
                    }
                });
            }
        }
    }
    img
}

/// Character error rate: edit distance / reference length.
fn cer(reference: &str, hypothesis: &str) -> f64 {
    let r: Vec<char> = reference.chars().collect();
    let h: Vec<char> = hypothesis.chars().collect();
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rc) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hc) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rc != hc))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

#[test]
fn cer_counts_edits() {
    assert_eq!(cer("abc", "abc"), 0.0);
    assert!((cer("abcd", "abxd") - 0.25).abs() < 1e-9);
    assert!((cer("abcd", "ab") - 0.5).abs() < 1e-9);
}

#[test]
fn ocr_reads_rendered_lines() {
    common::fetched("onnxruntime");
    let mut m = ocr::PpOcr::load(&common::fetched("pp-ocrv4"), &no_options()).expect("load pp-ocr");
    assert_eq!(m.task(), Task::Ocr);
    let lines = ["The quick brown fox jumps", "over the lazy dog 12345"];
    let img = render(&lines, 32.0);
    let req = OcrRequest {
        width: img.width(),
        height: img.height(),
        rgb: img.clone().into_raw(),
    };
    let r = m.recognize(&req).expect("ocr");
    let got: Vec<&str> = r.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(r.lines.len(), 2, "{got:?}");
    for (line, want) in r.lines.iter().zip(lines) {
        let e = cer(want, line.text.trim());
        assert!(e <= 0.1, "CER {e:.3}: read '{}' for '{want}'", line.text);
        assert!(line.confidence > 0.5 && line.confidence <= 1.0, "{line:?}");
        let [tl, _, br, _] = line.bbox;
        assert!(
            tl[0] >= 0.0 && br[0] <= img.width() as f32 && tl[1] < br[1],
            "{line:?}"
        );
    }
    // Reading order: the first line's box is above the second's.
    assert!(r.lines[0].bbox[2][1] <= r.lines[1].bbox[2][1]);
    // A blank page has no text.
    let blank = RgbImage::from_pixel(200, 100, Rgb([255; 3]));
    let r = m
        .recognize(&OcrRequest {
            width: 200,
            height: 100,
            rgb: blank.into_raw(),
        })
        .expect("ocr blank");
    assert!(r.lines.is_empty(), "{:?}", r.lines);
}

/// `img` rotated by `degrees` (counter-clockwise as seen) about its centre,
/// on a white canvas large enough to hold it (bilinear sampling).
fn rotate(img: &RgbImage, degrees: f32) -> RgbImage {
    let (c, s) = (degrees.to_radians().cos(), degrees.to_radians().sin());
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (ow, oh) = (w * c.abs() + h * s.abs(), w * s.abs() + h * c.abs());
    let mut out = RgbImage::from_pixel(ow.ceil() as u32, oh.ceil() as u32, Rgb([255; 3]));
    for (x, y, p) in out.enumerate_pixels_mut() {
        let (dx, dy) = (x as f32 + 0.5 - ow / 2.0, y as f32 + 0.5 - oh / 2.0);
        // Inverse rotation (y points down, so "counter-clockwise" flips sign).
        let sx = dx * c - dy * s + w / 2.0 - 0.5;
        let sy = dx * s + dy * c + h / 2.0 - 0.5;
        if sx < 0.0 || sy < 0.0 || sx > w - 1.0 || sy > h - 1.0 {
            continue;
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (x1, y1) = (
            (x0 + 1).min(img.width() - 1),
            (y0 + 1).min(img.height() - 1),
        );
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let v = img.get_pixel(x0, y0)[0] as f32 * (1.0 - fx) * (1.0 - fy)
            + img.get_pixel(x1, y0)[0] as f32 * fx * (1.0 - fy)
            + img.get_pixel(x0, y1)[0] as f32 * (1.0 - fx) * fy
            + img.get_pixel(x1, y1)[0] as f32 * fx * fy;
        *p = Rgb([v.round() as u8; 3]);
    }
    img_check(&out);
    out
}

fn img_check(img: &RgbImage) {
    assert!(img.pixels().any(|p| p[0] < 128), "rotation lost the text");
}

#[test]
fn ocr_straightens_rotated_lines_and_reads_upside_down_ones() {
    common::fetched("onnxruntime");
    let mut m = ocr::PpOcr::load(&common::fetched("pp-ocrv4"), &no_options()).expect("load pp-ocr");
    let text = "Rotated text is read too";
    let flat = render(&[text], 32.0);
    for degrees in [12.0f32, -8.0, 180.0] {
        let img = if degrees == 180.0 {
            image::imageops::rotate180(&flat)
        } else {
            rotate(&flat, degrees)
        };
        let r = m
            .recognize(&OcrRequest {
                width: img.width(),
                height: img.height(),
                rgb: img.into_raw(),
            })
            .expect("ocr");
        assert_eq!(r.lines.len(), 1, "{degrees} degrees: {:?}", r.lines);
        let line = &r.lines[0];
        let e = cer(text, line.text.trim());
        assert!(
            e <= 0.1,
            "{degrees} degrees: CER {e:.3}, read '{}'",
            line.text
        );
        if degrees != 180.0 {
            // The box follows the text: its top edge rises by `degrees`.
            let [tl, tr, _, _] = line.bbox;
            let angle = -(tr[1] - tl[1]).atan2(tr[0] - tl[0]).to_degrees();
            assert!(
                (angle - degrees).abs() < 3.0,
                "box angle {angle} for {degrees}: {line:?}"
            );
        }
    }
}
