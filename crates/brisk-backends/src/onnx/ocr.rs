//! OCR with PP-OCR (v4 detection and recognition, v2 direction classifier)
//! as packaged by RapidOCR.
//!
//! Pipeline: the detector scores every pixel as text or not; connected text
//! regions become boxes (axis-aligned: rotated text is not straightened);
//! each crop is turned upright when the classifier is sure it is upside
//! down, then read by the CTC recogniser whose alphabet is stored in the rec
//! model's ONNX metadata (`character`).

use std::collections::BTreeMap;
use std::path::Path;

use brisk_core::{Backend, BackendError, OcrLine, OcrRequest, OcrResult, Request, Response, Task};
use image::imageops::FilterType;
use image::RgbImage;
use ort::session::Session;
use ort::value::Tensor;

use super::{ort_err, runtime};

const DET_FILE: &str = "ch_PP-OCRv4_det_infer.onnx";
const REC_FILE: &str = "ch_PP-OCRv4_rec_infer.onnx";
const CLS_FILE: &str = "ch_ppocr_mobile_v2.0_cls_infer.onnx";

/// The detector's input is at most this long on its longer side (PaddleOCR's
/// default); larger images are scaled down, smaller ones are not enlarged.
const DET_MAX_SIDE: u32 = 960;
/// Pixel probability above which a pixel is text (DB post-processing).
const DET_THRESH: f32 = 0.3;
/// Regions whose mean probability is lower are dropped.
const BOX_THRESH: f32 = 0.5;
/// How far a region is grown: DB shrinks text regions when training.
const UNCLIP_RATIO: f32 = 1.6;
const MIN_BOX_SIDE: f32 = 3.0;
const REC_HEIGHT: u32 = 48;
const REC_MIN_WIDTH: u32 = 320;
const CLS_WIDTH: u32 = 192;
const CLS_THRESH: f32 = 0.9;
/// Lines read with a lower mean character probability are dropped.
const TEXT_SCORE: f32 = 0.5;
/// Largest image accepted, in pixels (about 8k x 5k).
pub const MAX_PIXELS: u64 = 40_000_000;

pub fn looks_like_ppocr(dir: &Path) -> bool {
    dir.join(DET_FILE).is_file() && dir.join(REC_FILE).is_file()
}

/// Decodes a png, jpeg or webp upload to RGB. Anything else, a corrupt file
/// or a too-large image is an input error.
pub fn decode_image(bytes: &[u8]) -> Result<OcrRequest, BackendError> {
    let format = image::guess_format(bytes).map_err(|_| {
        BackendError::InvalidInput(
            "the file is not an image brisk can read (png, jpeg or webp)".into(),
        )
    })?;
    if !matches!(
        format,
        image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP
    ) {
        return Err(BackendError::InvalidInput(format!(
            "unsupported image format {format:?}; send png, jpeg or webp"
        )));
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| {
        BackendError::InvalidInput(format!("cannot decode the {format:?} image: {e}"))
    })?;
    if u64::from(img.width()) * u64::from(img.height()) > MAX_PIXELS {
        return Err(BackendError::InvalidInput(format!(
            "the image is {}x{}; at most {MAX_PIXELS} pixels are accepted",
            img.width(),
            img.height()
        )));
    }
    let rgb = img.to_rgb8();
    Ok(OcrRequest {
        width: rgb.width(),
        height: rgb.height(),
        rgb: rgb.into_raw(),
    })
}

pub struct PpOcr {
    det: Session,
    cls: Option<Session>,
    rec: Session,
    /// CTC alphabet: index 0 is the blank.
    alphabet: Vec<String>,
    bytes: u64,
}

/// A text region in image pixels: x0, y0, x1, y1 (exclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Region {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

impl PpOcr {
    /// Options: `threads`, `onnxruntime` (see [`runtime`]).
    pub fn load(dir: &Path, options: &BTreeMap<String, String>) -> Result<Self, BackendError> {
        let env = runtime::environment(dir, options)?;
        let threads = runtime::threads_option(options)?;
        let det = runtime::session(&env, &dir.join(DET_FILE), threads)?;
        let rec = runtime::session(&env, &dir.join(REC_FILE), threads)?;
        // The classifier only fixes upside-down lines: optional.
        let cls = if dir.join(CLS_FILE).is_file() {
            Some(runtime::session(&env, &dir.join(CLS_FILE), threads)?)
        } else {
            None
        };
        let chars = rec
            .metadata()
            .ok()
            .and_then(|m| m.custom("character"))
            .ok_or_else(|| {
                BackendError::InvalidModel(format!(
                    "{REC_FILE} has no 'character' metadata (the recogniser's alphabet)"
                ))
            })?;
        let mut alphabet = vec![String::new()];
        alphabet.extend(chars.lines().map(str::to_string));
        // PaddleOCR appends the space to the dictionary (use_space_char).
        alphabet.push(" ".into());
        let bytes = super::estimate_bytes(dir).unwrap_or(0);
        Ok(Self {
            det,
            cls,
            rec,
            alphabet,
            bytes,
        })
    }

    pub fn recognize(&mut self, req: &OcrRequest) -> Result<OcrResult, BackendError> {
        let img = RgbImage::from_raw(req.width, req.height, req.rgb.clone()).ok_or_else(|| {
            BackendError::InvalidInput(format!(
                "{} bytes do not make a {}x{} RGB image",
                req.rgb.len(),
                req.width,
                req.height
            ))
        })?;
        let regions = self.detect(&img)?;
        let mut lines = Vec::new();
        for r in regions {
            let (x, y) = (r.x0.floor() as u32, r.y0.floor() as u32);
            let w = (r.x1.ceil() as u32).min(img.width()).saturating_sub(x);
            let h = (r.y1.ceil() as u32).min(img.height()).saturating_sub(y);
            if w < 2 || h < 2 {
                continue;
            }
            let mut crop = image::imageops::crop_imm(&img, x, y, w, h).to_image();
            // Tall narrow crops are vertical text: read them turned.
            if h as f32 >= 1.5 * w as f32 {
                crop = image::imageops::rotate270(&crop);
            }
            if self.upside_down(&crop)? {
                crop = image::imageops::rotate180(&crop);
            }
            let (text, confidence) = self.read(&crop)?;
            if text.trim().is_empty() || confidence < TEXT_SCORE {
                continue;
            }
            lines.push(OcrLine {
                text,
                confidence,
                bbox: [[r.x0, r.y0], [r.x1, r.y0], [r.x1, r.y1], [r.x0, r.y1]],
            });
        }
        Ok(OcrResult {
            width: req.width,
            height: req.height,
            lines,
        })
    }

    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Region>, BackendError> {
        let (w, h) = img.dimensions();
        let scale = (DET_MAX_SIDE as f32 / w.max(h) as f32).min(1.0);
        let round32 = |v: u32| (((v as f32 * scale) / 32.0).round() as u32 * 32).max(32);
        let (rw, rh) = (round32(w), round32(h));
        let resized = image::imageops::resize(img, rw, rh, FilterType::Triangle);
        let input =
            Tensor::from_array(([1usize, 3, rh as usize, rw as usize], to_chw(&resized, rw)))
                .map_err(ort_err("ocr det input"))?;
        let out = self
            .det
            .run(ort::inputs![input])
            .map_err(ort_err("ocr det run"))?;
        let (shape, prob) = out[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("ocr det output"))?;
        if prob.len() != (rw * rh) as usize {
            return Err(BackendError::Inference(format!(
                "detector returned shape {shape:?} for a {rw}x{rh} input"
            )));
        }
        let mut regions = regions(prob, rw as usize, rh as usize);
        // Back to input pixels.
        let (sx, sy) = (w as f32 / rw as f32, h as f32 / rh as f32);
        for r in &mut regions {
            r.x0 = (r.x0 * sx).clamp(0.0, w as f32);
            r.x1 = (r.x1 * sx).clamp(0.0, w as f32);
            r.y0 = (r.y0 * sy).clamp(0.0, h as f32);
            r.y1 = (r.y1 * sy).clamp(0.0, h as f32);
        }
        sort_reading_order(&mut regions);
        Ok(regions)
    }

    fn upside_down(&mut self, crop: &RgbImage) -> Result<bool, BackendError> {
        let Some(cls) = self.cls.as_mut() else {
            return Ok(false);
        };
        let data = line_tensor(crop, CLS_WIDTH, CLS_WIDTH);
        let input =
            Tensor::from_array(([1usize, 3, REC_HEIGHT as usize, CLS_WIDTH as usize], data))
                .map_err(ort_err("ocr cls input"))?;
        let out = cls
            .run(ort::inputs![input])
            .map_err(ort_err("ocr cls run"))?;
        let (_, p) = out[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("ocr cls output"))?;
        // Labels: 0 = upright, 1 = rotated 180 degrees.
        Ok(p.len() >= 2 && p[1] > p[0] && p[1] > CLS_THRESH)
    }

    /// Text and mean character probability of one upright line crop.
    fn read(&mut self, crop: &RgbImage) -> Result<(String, f32), BackendError> {
        let ratio = crop.width() as f32 / crop.height() as f32;
        let width = ((REC_HEIGHT as f32 * ratio).ceil() as u32).max(REC_MIN_WIDTH);
        let data = line_tensor(crop, width, width);
        let input = Tensor::from_array(([1usize, 3, REC_HEIGHT as usize, width as usize], data))
            .map_err(ort_err("ocr rec input"))?;
        let out = self
            .rec
            .run(ort::inputs![input])
            .map_err(ort_err("ocr rec run"))?;
        let (shape, probs) = out[0]
            .try_extract_tensor::<f32>()
            .map_err(ort_err("ocr rec output"))?;
        let classes = *shape.last().unwrap_or(&0) as usize;
        if classes == 0 || classes > self.alphabet.len() + 1 || probs.len() % classes != 0 {
            return Err(BackendError::InvalidModel(format!(
                "recogniser has {classes} classes for an alphabet of {}",
                self.alphabet.len()
            )));
        }
        Ok(ctc_greedy(probs, classes, &self.alphabet))
    }
}

/// CHW float tensor data normalised to [-1, 1], channels in BGR order (the
/// models were trained on OpenCV images).
fn to_chw(img: &RgbImage, width: u32) -> Vec<f32> {
    let (w, h) = (width as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        let i = y as usize * w + x as usize;
        for (c, ch) in [2usize, 1, 0].into_iter().enumerate() {
            out[c * w * h + i] = p[ch] as f32 / 127.5 - 1.0;
        }
    }
    out
}

/// A line crop resized to height 48 (keeping its aspect ratio, at most
/// `max_width` wide) and zero-padded on the right to `width`.
fn line_tensor(crop: &RgbImage, max_width: u32, width: u32) -> Vec<f32> {
    let ratio = crop.width() as f32 / crop.height() as f32;
    let w = ((REC_HEIGHT as f32 * ratio).ceil() as u32).clamp(1, max_width);
    let resized = image::imageops::resize(crop, w, REC_HEIGHT, FilterType::Triangle);
    to_chw(&resized, width)
}

/// Greedy CTC decoding: best class per step, repeats merged, blanks dropped.
fn ctc_greedy(probs: &[f32], classes: usize, alphabet: &[String]) -> (String, f32) {
    let mut text = String::new();
    let mut scores = Vec::new();
    let mut prev = 0usize;
    for step in probs.chunks_exact(classes) {
        let (best, p) = step
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::MIN), |a, (i, v)| if v > a.1 { (i, v) } else { a });
        if best != 0 && best != prev {
            if let Some(c) = alphabet.get(best) {
                text.push_str(c);
                scores.push(p);
            }
        }
        prev = best;
    }
    let conf = if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f32>() / scores.len() as f32
    };
    (text, conf)
}

/// Text regions of a probability map: pixels above [`DET_THRESH`], dilated
/// by one pixel, grouped into 8-connected components; each component's
/// bounding box is kept when its mean probability reaches [`BOX_THRESH`],
/// then grown by DB's unclip distance (area * ratio / perimeter).
fn regions(prob: &[f32], w: usize, h: usize) -> Vec<Region> {
    let mut mask = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            // 2x2 dilation, as PaddleOCR's use_dilation.
            let hit = |xx: usize, yy: usize| prob[yy * w + xx] > DET_THRESH;
            mask[y * w + x] = hit(x, y)
                || (x > 0 && hit(x - 1, y))
                || (y > 0 && hit(x, y - 1))
                || (x > 0 && y > 0 && hit(x - 1, y - 1));
        }
    }
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let (bw, bh) = ((x1 + 1 - x0) as f32, (y1 + 1 - y0) as f32);
        if bw.min(bh) < MIN_BOX_SIDE {
            continue;
        }
        // DB's "fast" score: mean probability inside the box.
        let mut sum = 0f32;
        for y in y0..=y1 {
            sum += prob[y * w + x0..=y * w + x1].iter().sum::<f32>();
        }
        if sum / (bw * bh) < BOX_THRESH {
            continue;
        }
        let d = bw * bh * UNCLIP_RATIO / (2.0 * (bw + bh));
        let r = Region {
            x0: (x0 as f32 - d).max(0.0),
            y0: (y0 as f32 - d).max(0.0),
            x1: (x1 as f32 + 1.0 + d).min(w as f32),
            y1: (y1 as f32 + 1.0 + d).min(h as f32),
        };
        if (r.x1 - r.x0).min(r.y1 - r.y0) < MIN_BOX_SIDE + 2.0 {
            continue;
        }
        out.push(r);
    }
    out
}

/// Top to bottom; boxes on the same line (tops within 10 px) left to right.
fn sort_reading_order(regions: &mut [Region]) {
    regions.sort_by(|a, b| a.y0.total_cmp(&b.y0).then(a.x0.total_cmp(&b.x0)));
    // Bubble neighbours on the same line into left-to-right order, as
    // RapidOCR's sorted_boxes does.
    for i in 0..regions.len().saturating_sub(1) {
        let mut j = i;
        while (regions[j + 1].y0 - regions[j].y0).abs() < 10.0 && regions[j + 1].x0 < regions[j].x0
        {
            regions.swap(j, j + 1);
            if j == 0 {
                break;
            }
            j -= 1;
        }
    }
}

impl Backend for PpOcr {
    fn task(&self) -> Task {
        Task::Ocr
    }

    fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    fn infer(&mut self, batch: Vec<Request>) -> Vec<Result<Response, BackendError>> {
        batch
            .into_iter()
            .map(|r| match r {
                Request::Ocr(o) => self.recognize(&o).map(Response::Ocr),
                other => Err(BackendError::Unsupported(other.task().to_string())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let alphabet: Vec<String> = ["", "a", "b"].iter().map(|s| s.to_string()).collect();
        // Steps: a a blank a b b -> "aab".
        let steps = [1usize, 1, 0, 1, 2, 2];
        let probs: Vec<f32> = steps
            .iter()
            .flat_map(|&k| (0..3).map(move |i| if i == k { 0.9 } else { 0.05 }))
            .collect();
        let (text, conf) = ctc_greedy(&probs, 3, &alphabet);
        assert_eq!(text, "aab");
        assert!((conf - 0.9).abs() < 1e-6);
    }

    #[test]
    fn regions_find_separate_blobs_and_grow_them() {
        let (w, h) = (64, 32);
        let mut prob = vec![0f32; w * h];
        for y in 10..16 {
            for x in 4..20 {
                prob[y * w + x] = 0.9;
            }
            for x in 40..60 {
                prob[y * w + x] = 0.9;
            }
        }
        let mut r = regions(&prob, w, h);
        sort_reading_order(&mut r);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].x0 < 4.0 && r[0].x1 > 20.0 && r[0].y0 < 10.0 && r[0].y1 > 16.0,
            "{r:?}"
        );
        assert!(r[1].x0 > 30.0);
    }

    #[test]
    fn weak_regions_are_dropped() {
        let (w, h) = (32, 32);
        let mut prob = vec![0f32; w * h];
        for y in 5..15 {
            for x in 5..25 {
                prob[y * w + x] = 0.35;
            }
        }
        assert!(regions(&prob, w, h).is_empty());
    }

    #[test]
    fn decode_rejects_non_images_and_other_formats() {
        let err = decode_image(b"definitely not an image").expect_err("garbage");
        assert!(matches!(err, BackendError::InvalidInput(_)), "{err:?}");
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        let err = decode_image(gif).expect_err("gif");
        assert!(err.to_string().contains("png, jpeg or webp"), "{err}");
        let mut png = Vec::new();
        RgbImage::new(3, 2)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encode png");
        let ok = decode_image(&png).expect("png");
        assert_eq!((ok.width, ok.height, ok.rgb.len()), (3, 2, 18));
        let err = decode_image(&png[..png.len() / 2]).expect_err("truncated");
        assert!(matches!(err, BackendError::InvalidInput(_)), "{err:?}");
    }
}
