#![cfg(all(feature = "onnx", feature = "whisper"))]
//! The ONNX models through HTTP, on the fetched files (scripts/fetch-models:
//! onnxruntime, silero-vad, piper-joe-medium, pp-ocrv4, whisper-tiny-en,
//! testdata): speech synthesized by piper comes back through brisk's own
//! Whisper, silero finds beckett.wav's phrases inside added silence, and
//! PP-OCR reads text rendered at test time with DejaVu Sans (Debian
//! fonts-dejavu-core, see scripts/install-deps). Broken uploads get 400s.

use crate::common;

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use brisk_server::AppState;
use http_body_util::BodyExt;
use image::{Rgb, RgbImage};
use serde_json::{json, Value};
use tower::ServiceExt;

const VAD: &str = "silero-vad";
const TTS: &str = "piper-joe-medium";
const OCR: &str = "pp-ocrv4";
const WHISPER: &str = "whisper-tiny-en";

/// Multipart text fields, and the optional file (name, bytes).
type Fields<'a> = &'a [(&'a str, &'a str)];
type Upload<'a> = Option<(&'a str, &'a [u8])>;

fn state() -> AppState {
    let dir = common::models_dir(&[
        "onnxruntime",
        VAD,
        TTS,
        OCR,
        WHISPER,
        "testdata/beckett.wav",
    ]);
    common::default_state(dir, |_| {})
}

/// One request; status, content type and the raw body.
async fn call(
    s: &AppState,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, String, Vec<u8>) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    let resp = brisk_server::router(s.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, ct, bytes)
}

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "brisk-onnx-boundary-51c2";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(
    s: &AppState,
    uri: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> (StatusCode, Value) {
    let (ct, body) = multipart(fields, file);
    let (st, _, bytes) = call(s, uri, &ct, body).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (st, v)
}

async fn speak(s: &AppState, body: Value) -> (StatusCode, String, Vec<u8>) {
    call(
        s,
        "/v1/audio/speech",
        "application/json",
        body.to_string().into_bytes(),
    )
    .await
}

fn cer(reference: &str, hypothesis: &str) -> f64 {
    let r: Vec<char> = reference.chars().collect();
    let h: Vec<char> = hypothesis.chars().collect();
    common::error_rate(&r, &h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_comes_back_through_whisper() {
    let s = state();
    let text = "The quick brown fox jumps over the lazy dog.";
    let (st, ct, wav) = speak(&s, json!({"model": TTS, "input": text, "voice": "alloy"})).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&wav));
    assert_eq!(ct, "audio/wav");
    assert_eq!(&wav[0..4], b"RIFF");
    let rate = u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]);
    assert_eq!(rate, 22_050);
    let secs = (wav.len() - 44) as f64 / 2.0 / rate as f64;
    assert!((1.0..8.0).contains(&secs), "{secs} s");

    let (st, v) = upload(
        &s,
        "/v1/audio/transcriptions",
        &[("model", WHISPER)],
        Some(("speech.wav", &wav)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let heard = v["text"].as_str().expect("text");
    let wer = common::error_rate(&common::words(text), &common::words(heard));
    assert!(
        wer <= 0.2,
        "WER {wer:.2}: whisper heard '{heard}' for '{text}'"
    );

    // OpenAI's pcm: raw 16-bit at 24 kHz, so about 24000/22050 as many bytes.
    let (st, ct, pcm) = speak(
        &s,
        json!({"model": TTS, "input": text, "response_format": "pcm"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ct, "audio/pcm");
    let pcm_secs = pcm.len() as f64 / 2.0 / 24_000.0;
    assert!((pcm_secs - secs).abs() < 0.5 * secs, "{pcm_secs} vs {secs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_rejects_bad_requests() {
    let s = state();
    for (body, param) in [
        (
            json!({"model": TTS, "input": "hi", "response_format": "mp3"}),
            "response_format",
        ),
        (json!({"model": TTS, "input": "   "}), "input"),
        (json!({"model": TTS}), "input"),
        (json!({"model": TTS, "input": "hi", "speed": 10.0}), "speed"),
        (json!({"input": "hi"}), "model"),
        (json!({"model": WHISPER, "input": "hi"}), "model"),
    ] {
        let (st, _, bytes) = speak(&s, body.clone()).await;
        let v: Value = serde_json::from_slice(&bytes).expect("error json");
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["param"], param, "{body}: {v}");
    }
    let (st, _, _) = speak(&s, json!({"model": "nope", "input": "hi"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

fn wav16k(samples: &[f32]) -> Vec<u8> {
    brisk_backends::whisper::audio::encode_wav_i16(samples, 16_000, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vad_finds_beckett_phrases_inside_silence() {
    let s = state();
    let dir = common::models_dir(&["testdata/beckett.wav"]);
    let bytes = std::fs::read(dir.join("testdata/beckett.wav")).expect("beckett.wav");
    let speech = brisk_backends::whisper::audio::decode_to_mono_16k(&bytes, 60.0).expect("decode");
    let pad = vec![0f32; 2 * 16_000];
    let wav = wav16k(&[pad.clone(), speech.clone(), pad].concat());
    let (st, v) = upload(
        &s,
        "/v1/audio/vad",
        &[("model", VAD)],
        Some(("padded.wav", &wav)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let segs = v["segments"].as_array().expect("segments");
    assert_eq!(segs.len(), 6, "one per phrase: {v}");
    let speech_end = 2.0 + speech.len() as f64 / 16_000.0;
    let first = segs[0]["start"].as_f64().expect("start");
    let last = segs[5]["end"].as_f64().expect("end");
    assert!((1.9..3.0).contains(&first), "{v}");
    assert!(last <= speech_end + 0.2 && last > speech_end - 1.5, "{v}");
    assert!(v["speech_duration"].as_f64().expect("speech") > 4.0, "{v}");

    // A stricter threshold and long min silence merge phrases into fewer segments.
    let (st, v2) = upload(
        &s,
        "/v1/audio/vad",
        &[("model", VAD), ("min_silence_duration_ms", "1500")],
        Some(("padded.wav", &wav)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v2}");
    assert!(
        v2["segments"].as_array().expect("segments").len() < 6,
        "{v2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vad_rejects_bad_uploads() {
    let s = state();
    let wav = wav16k(&vec![0f32; 16_000]);
    let cases: [(Fields, Upload, &str); 5] = [
        (
            &[("model", VAD)],
            Some(("x.wav", b"RIFF but not really audio")),
            "",
        ),
        (&[("model", VAD)], None, "file"),
        (&[("model", VAD)], Some(("x.wav", b"")), "file"),
        (
            &[("model", VAD), ("threshold", "2")],
            Some(("x.wav", &wav)),
            "threshold",
        ),
        (&[("model", TTS)], Some(("x.wav", &wav)), "model"),
    ];
    for (fields, file, param) in cases {
        let (st, v) = upload(&s, "/v1/audio/vad", fields, file).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{fields:?}: {v}");
        if !param.is_empty() {
            assert_eq!(v["error"]["param"], param, "{fields:?}: {v}");
        }
    }
    // Silence: no speech, not an error.
    let (st, v) = upload(
        &s,
        "/v1/audio/vad",
        &[("model", VAD)],
        Some(("x.wav", &wav)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["segments"], json!([]));
}

/// Black text on white, DejaVu Sans at `px` pixels, one entry per line.
fn render(lines: &[&str], px: f32) -> RgbImage {
    let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let data = std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e}; install fonts-dejavu-core (scripts/install-deps)")
    });
    let font = FontVec::try_from_vec(data).expect("parse DejaVuSans.ttf");
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
    let height = line_h * lines.len() as f32 + px;
    let mut img = RgbImage::from_pixel(width as u32, height as u32, Rgb([255; 3]));
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
    img
}

fn encode(img: &RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    if format == image::ImageFormat::Jpeg {
        // Quality 90, as a scanner or screenshot tool would save text; at
        // the encoder's default 75 the artifacts cost PP-OCR some spaces.
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .expect("encode jpeg");
        return out;
    }
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encode");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_reads_rendered_text_in_png_jpeg_and_webp() {
    let s = state();
    let lines = [
        "Invoice 2024-117: total 58.40 EUR",
        "Pay within 30 days, thank you",
    ];
    let img = render(&lines, 28.0);
    for (name, format) in [
        ("t.png", image::ImageFormat::Png),
        ("t.jpg", image::ImageFormat::Jpeg),
        ("t.webp", image::ImageFormat::WebP),
    ] {
        let bytes = encode(&img, format);
        let (st, v) = upload(&s, "/v1/ocr", &[("model", OCR)], Some((name, &bytes))).await;
        assert_eq!(st, StatusCode::OK, "{name}: {v}");
        assert_eq!(v["width"], img.width(), "{v}");
        let got = v["lines"].as_array().expect("lines");
        assert_eq!(got.len(), lines.len(), "{name}: {v}");
        for (line, want) in got.iter().zip(lines) {
            let text = line["text"].as_str().expect("text").trim();
            let e = cer(want, text);
            assert!(e <= 0.1, "{name}: CER {e:.3}, read '{text}' for '{want}'");
            let conf = line["confidence"].as_f64().expect("confidence");
            assert!(conf > 0.5 && conf <= 1.0, "{line}");
            assert_eq!(line["bbox"].as_array().expect("bbox").len(), 4, "{line}");
        }
        let all = v["text"].as_str().expect("text");
        assert!(cer(&lines.join("\n"), all) <= 0.1, "{name}: {all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_rejects_bad_images() {
    let s = state();
    let png = encode(
        &RgbImage::from_pixel(40, 20, Rgb([255; 3])),
        image::ImageFormat::Png,
    );
    let gif: &[u8] = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let cases: [(Fields, Upload); 5] = [
        (&[("model", OCR)], Some(("x.png", b"not an image at all"))),
        (&[("model", OCR)], Some(("x.gif", gif))),
        (&[("model", OCR)], Some(("x.png", &png[..png.len() / 2]))),
        (&[("model", OCR)], None),
        (&[("model", VAD)], Some(("x.png", &png))),
    ];
    for (fields, file) in cases {
        let (st, v) = upload(&s, "/v1/ocr", fields, file).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{:?}: {v}", file.map(|f| f.0));
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    }
    // A blank image is fine: no lines.
    let (st, v) = upload(&s, "/v1/ocr", &[("model", OCR)], Some(("x.png", &png))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["lines"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_onnx_models_report_their_tasks() {
    let s = state();
    let (st, _, bytes) = {
        let req = Request::builder()
            .uri("/v1/models")
            .body(Body::empty())
            .expect("request");
        let resp = brisk_server::router(s.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        let st = resp.status();
        let b = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (st, (), b)
    };
    assert_eq!(st, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    let data = v["data"].as_array().expect("data");
    for (model, task) in [(VAD, "vad"), (TTS, "speech"), (OCR, "ocr")] {
        let m = data
            .iter()
            .find(|m| m["id"] == model)
            .unwrap_or_else(|| panic!("{model} not discovered: {v}"));
        assert_eq!(m["brisk"]["task"], task, "{m}");
    }
    assert!(
        !data.iter().any(|m| m["id"] == "onnxruntime"),
        "the runtime library folder is not a model: {v}"
    );
}

const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transcription_chunks_long_audio_at_silences() {
    let s = state();
    let dir = common::models_dir(&["testdata/beckett.wav"]);
    let bytes = std::fs::read(dir.join("testdata/beckett.wav")).expect("beckett.wav");
    let speech = brisk_backends::whisper::audio::decode_to_mono_16k(&bytes, 60.0).expect("decode");
    let gap = vec![0f32; 3 * 16_000];
    // ~38 s: more than one Whisper window, so the cut placement matters.
    let long = [speech.clone(), gap.clone(), speech.clone(), gap, speech].concat();
    let wav = wav16k(&long);
    let (st, v) = upload(
        &s,
        "/v1/audio/transcriptions",
        &[
            ("model", WHISPER),
            ("response_format", "verbose_json"),
            ("chunking_strategy", "auto"),
        ],
        Some(("long.wav", &wav)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let text = v["text"].as_str().expect("text");
    let reference = [BECKETT; 3].join(" ");
    let wer = common::error_rate(&common::words(&reference), &common::words(text));
    assert!(wer <= 0.2, "WER {wer:.2}: {text}");
    let duration = v["duration"].as_f64().expect("duration");
    assert!(
        (duration - long.len() as f64 / 16_000.0).abs() < 0.01,
        "{v}"
    );
    let segs = v["segments"].as_array().expect("segments");
    let times: Vec<(f64, f64)> = segs
        .iter()
        .map(|s| {
            (
                s["start"].as_f64().expect("start"),
                s["end"].as_f64().expect("end"),
            )
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0].0 <= w[1].0), "{times:?}");
    assert!(
        times.iter().all(|&(a, b)| a <= b && b <= duration + 0.01),
        "{times:?}"
    );
    // The last phrase is heard in the last repetition, after both gaps.
    let last = times.last().expect("a segment").1;
    assert!(last > 2.0 * 13.0, "{times:?}");

    // OpenAI's server_vad object, and bad values.
    let (st, v) = upload(
        &s,
        "/v1/audio/transcriptions",
        &[
            ("model", WHISPER),
            (
                "chunking_strategy",
                r#"{"type":"server_vad","silence_duration_ms":500}"#,
            ),
        ],
        Some(("long.wav", &wav)),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = upload(
        &s,
        "/v1/audio/transcriptions",
        &[("model", WHISPER), ("chunking_strategy", "sometimes")],
        Some(("long.wav", &wav)),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["param"], "chunking_strategy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunking_without_a_vad_model_is_a_clear_400() {
    let dir = common::models_dir(&[WHISPER]);
    let mut config = brisk_server::config::Config::from_toml(&format!(
        "[server]\ndiscover = false\n[models.{WHISPER}]\nsource = \"{WHISPER}\"\n"
    ))
    .expect("config");
    config.server.models_dir = dir;
    let s = brisk_server::build_state(
        config,
        brisk_engine::Timeline::new(std::time::Instant::now()),
    )
    .expect("state");
    let wav = wav16k(&vec![0f32; 16_000]);
    let (st, v) = upload(
        &s,
        "/v1/audio/transcriptions",
        &[("model", WHISPER), ("chunking_strategy", "auto")],
        Some(("x.wav", &wav)),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let msg = v["error"]["message"].as_str().expect("message");
    assert!(msg.contains("voice activity detection model"), "{msg}");
}
