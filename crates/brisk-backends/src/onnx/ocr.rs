//! OCR with PP-OCR (v4 detection and recognition, v2 direction classifier)
//! as packaged by RapidOCR.
//!
//! Pipeline: the detector scores every pixel as text or not; each connected
//! text region becomes its minimum-area (possibly rotated) rectangle, grown
//! as DB post-processing does; each rectangle is cut out straightened, turned
//! upright when the classifier is sure it is upside down, then read by the CTC recogniser whose alphabet is stored in the rec
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

/// A text region: corners top-left, top-right, bottom-right, bottom-left
/// (x, y), reading direction from top-left to top-right.
type Quad = [[f32; 2]; 4];

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
        for q in regions {
            let Some(mut crop) = straighten(&img, &q) else {
                continue;
            };
            // Tall narrow crops are vertical text: read them turned.
            if crop.height() as f32 >= 1.5 * crop.width() as f32 {
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
                bbox: q,
            });
        }
        Ok(OcrResult {
            width: req.width,
            height: req.height,
            lines,
        })
    }

    fn detect(&mut self, img: &RgbImage) -> Result<Vec<Quad>, BackendError> {
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
        for q in &mut regions {
            // Whole pixels, as DB post-processing: an upright box is then
            // cut out exactly, without resampling that blurs small text.
            for p in q.iter_mut() {
                p[0] = (p[0] * sx).round().clamp(0.0, w as f32);
                p[1] = (p[1] * sy).round().clamp(0.0, h as f32);
            }
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
/// by one pixel, grouped into 8-connected components. Each component's
/// minimum-area rectangle is kept when the mean probability inside reaches
/// [`BOX_THRESH`], then grown on every side by DB's unclip distance
/// (area * ratio / perimeter).
fn regions(prob: &[f32], w: usize, h: usize) -> Vec<Quad> {
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
    // Per row of the component: leftmost and rightmost pixel (enough for
    // the convex hull).
    let mut rows: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for start in 0..w * h {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        rows.clear();
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let r = rows.entry(y).or_insert((x, x));
            r.0 = r.0.min(x);
            r.1 = r.1.max(x);
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
        let mut corners = Vec::with_capacity(rows.len() * 4);
        for (&y, &(x0, x1)) in &rows {
            let (y, x0, x1) = (y as f32, x0 as f32, x1 as f32 + 1.0);
            corners.extend([[x0, y], [x0, y + 1.0], [x1, y], [x1, y + 1.0]]);
        }
        let rect = min_area_rect(&convex_hull(corners));
        if rect.short_side() < MIN_BOX_SIDE || rect.score(prob, w, h) < BOX_THRESH {
            continue;
        }
        let (a, b) = (rect.long_side(), rect.short_side());
        let grown = rect.grow(a * b * UNCLIP_RATIO / (2.0 * (a + b)));
        if grown.short_side() < MIN_BOX_SIDE + 2.0 {
            continue;
        }
        out.push(grown.quad());
    }
    out
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in image
/// coordinates, without repeated points.
fn convex_hull(mut pts: Vec<[f32; 2]>) -> Vec<[f32; 2]> {
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let cross = |o: [f32; 2], a: [f32; 2], b: [f32; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[f32; 2]> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &[f32; 2]>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for &p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// A rectangle: its extents along two perpendicular unit axes.
#[derive(Debug, Clone, Copy)]
struct Rect {
    /// Unit direction of one side, and its normal.
    u: [f32; 2],
    n: [f32; 2],
    /// Extents of the rectangle along `u` and `n` (projections).
    u0: f32,
    u1: f32,
    n0: f32,
    n1: f32,
}

impl Rect {
    fn long_side(&self) -> f32 {
        (self.u1 - self.u0).max(self.n1 - self.n0)
    }

    fn short_side(&self) -> f32 {
        (self.u1 - self.u0).min(self.n1 - self.n0)
    }

    fn grow(mut self, d: f32) -> Self {
        self.u0 -= d;
        self.u1 += d;
        self.n0 -= d;
        self.n1 += d;
        self
    }

    fn point(&self, a: f32, b: f32) -> [f32; 2] {
        [a * self.u[0] + b * self.n[0], a * self.u[1] + b * self.n[1]]
    }

    /// Mean probability of the pixels whose centre lies inside (DB's "fast"
    /// box score).
    fn score(&self, prob: &[f32], w: usize, h: usize) -> f32 {
        let q = self.quad();
        let clampx = |v: f32| (v.max(0.0) as usize).min(w.saturating_sub(1));
        let clampy = |v: f32| (v.max(0.0) as usize).min(h.saturating_sub(1));
        let xs = q.iter().map(|p| p[0]);
        let ys = q.iter().map(|p| p[1]);
        let (x0, x1) = (
            clampx(xs.clone().fold(f32::MAX, f32::min)),
            clampx(xs.fold(f32::MIN, f32::max)),
        );
        let (y0, y1) = (
            clampy(ys.clone().fold(f32::MAX, f32::min)),
            clampy(ys.fold(f32::MIN, f32::max)),
        );
        let (mut sum, mut n) = (0f32, 0usize);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let c = [x as f32 + 0.5, y as f32 + 0.5];
                let a = c[0] * self.u[0] + c[1] * self.u[1];
                let b = c[0] * self.n[0] + c[1] * self.n[1];
                if a >= self.u0 && a <= self.u1 && b >= self.n0 && b <= self.n1 {
                    sum += prob[y * w + x];
                    n += 1;
                }
            }
        }
        if n == 0 {
            0.0
        } else {
            sum / n as f32
        }
    }

    /// Corners ordered as PaddleOCR's get_mini_boxes: of the two leftmost
    /// corners the upper is top-left, of the two rightmost the upper is
    /// top-right.
    fn quad(&self) -> Quad {
        let mut c = [
            self.point(self.u0, self.n0),
            self.point(self.u1, self.n0),
            self.point(self.u1, self.n1),
            self.point(self.u0, self.n1),
        ];
        c.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let (tl, bl) = if c[0][1] <= c[1][1] {
            (c[0], c[1])
        } else {
            (c[1], c[0])
        };
        let (tr, br) = if c[2][1] <= c[3][1] {
            (c[2], c[3])
        } else {
            (c[3], c[2])
        };
        [tl, tr, br, bl]
    }
}

/// The smallest-area enclosing rectangle of a convex polygon: one of its
/// sides lies on a hull edge (rotating calipers, tried edge by edge).
fn min_area_rect(hull: &[[f32; 2]]) -> Rect {
    let mut best: Option<(f32, Rect)> = None;
    for (i, &p) in hull.iter().enumerate() {
        let q = hull[(i + 1) % hull.len()];
        let (dx, dy) = (q[0] - p[0], q[1] - p[1]);
        let len = (dx * dx + dy * dy).sqrt();
        let u = if len > 0.0 {
            [dx / len, dy / len]
        } else {
            [1.0, 0.0]
        };
        let n = [-u[1], u[0]];
        let mut r = Rect {
            u,
            n,
            u0: f32::MAX,
            u1: f32::MIN,
            n0: f32::MAX,
            n1: f32::MIN,
        };
        for c in hull {
            let a = c[0] * u[0] + c[1] * u[1];
            let b = c[0] * n[0] + c[1] * n[1];
            r.u0 = r.u0.min(a);
            r.u1 = r.u1.max(a);
            r.n0 = r.n0.min(b);
            r.n1 = r.n1.max(b);
        }
        let area = (r.u1 - r.u0) * (r.n1 - r.n0);
        if best.as_ref().is_none_or(|(b, _)| area < *b) {
            best = Some((area, r));
        }
    }
    // An empty hull (never: a component has a pixel) gives an empty box
    // that the side-length check drops.
    best.map(|(_, r)| r).unwrap_or(Rect {
        u: [1.0, 0.0],
        n: [0.0, 1.0],
        u0: 0.0,
        u1: 0.0,
        n0: 0.0,
        n1: 0.0,
    })
}

/// OpenCV's bicubic kernel (a = -0.75): the weights of the 4 neighbours
/// at offsets -1, 0, 1, 2 for a fraction `t` in [0, 1).
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let w = |x: f32| {
        let x = x.abs();
        if x <= 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
        } else {
            0.0
        }
    };
    [w(t + 1.0), w(t), w(1.0 - t), w(2.0 - t)]
}

/// Cuts a (possibly rotated) quad out of the image as an upright crop,
/// mapping it as a parallelogram along its top and left edges. Bicubic, as
/// PaddleOCR's warpPerspective crop: bilinear blurs small text enough to
/// cost the recogniser spaces.
fn straighten(img: &RgbImage, q: &Quad) -> Option<RgbImage> {
    let dist = |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
    let [tl, tr, br, bl] = *q;
    let w = dist(tl, tr).max(dist(bl, br)) as u32;
    let h = dist(tl, bl).max(dist(tr, br)) as u32;
    if w < 2 || h < 2 {
        return None;
    }
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let sample = |x: f32, y: f32| -> [u8; 3] {
        let (x0, y0) = (x.floor(), y.floor());
        let (wx, wy) = (cubic_weights(x - x0), cubic_weights(y - y0));
        let mut acc = [0f32; 3];
        for (j, wyj) in wy.iter().enumerate() {
            // Border pixels repeat outside the image (BORDER_REPLICATE).
            let yy = (y0 as i64 + j as i64 - 1).clamp(0, ih - 1) as u32;
            for (i, wxi) in wx.iter().enumerate() {
                let xx = (x0 as i64 + i as i64 - 1).clamp(0, iw - 1) as u32;
                let p = img.get_pixel(xx, yy);
                for (c, a) in acc.iter_mut().enumerate() {
                    *a += p[c] as f32 * wxi * wyj;
                }
            }
        }
        acc.map(|v| v.round().clamp(0.0, 255.0) as u8)
    };
    let mut out = RgbImage::new(w, h);
    for (x, y, p) in out.enumerate_pixels_mut() {
        // Output pixel (x, y) samples tl + x/w*(tr-tl) + y/h*(bl-tl), as
        // warpPerspective from the quad to a w x h rectangle does: with
        // whole-pixel corners an upright box is an exact crop.
        let (a, b) = (x as f32 / w as f32, y as f32 / h as f32);
        let sx = tl[0] + a * (tr[0] - tl[0]) + b * (bl[0] - tl[0]);
        let sy = tl[1] + a * (tr[1] - tl[1]) + b * (bl[1] - tl[1]);
        *p = image::Rgb(sample(sx, sy));
    }
    Some(out)
}

/// Top to bottom; boxes on the same line (tops within 10 px) left to right.
fn sort_reading_order(regions: &mut [Quad]) {
    regions.sort_by(|a, b| {
        a[0][1]
            .total_cmp(&b[0][1])
            .then(a[0][0].total_cmp(&b[0][0]))
    });
    // Bubble neighbours on the same line into left-to-right order, as
    // RapidOCR's sorted_boxes does.
    for i in 0..regions.len().saturating_sub(1) {
        let mut j = i;
        while (regions[j + 1][0][1] - regions[j][0][1]).abs() < 10.0
            && regions[j + 1][0][0] < regions[j][0][0]
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
        let [tl, tr, br, bl] = r[0];
        assert!(
            tl[0] < 4.0 && tl[1] < 10.0 && br[0] > 20.0 && br[1] > 16.0,
            "{r:?}"
        );
        // Axis-aligned blob, axis-aligned box.
        assert!(
            (tl[1] - tr[1]).abs() < 1e-3 && (tl[0] - bl[0]).abs() < 1e-3,
            "{r:?}"
        );
        assert!(r[1][0][0] > 30.0);
    }

    #[test]
    fn rotated_blob_gets_a_rotated_box() {
        // A 40x8 bar rotated by 30 degrees about (50, 50).
        let (w, h) = (100, 100);
        let (c, s) = (30f32.to_radians().cos(), 30f32.to_radians().sin());
        let mut prob = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 + 0.5 - 50.0, y as f32 + 0.5 - 50.0);
                let (a, b) = (dx * c + dy * s, -dx * s + dy * c);
                if a.abs() <= 20.0 && b.abs() <= 4.0 {
                    prob[y * w + x] = 0.9;
                }
            }
        }
        let r = regions(&prob, w, h);
        assert_eq!(r.len(), 1, "{r:?}");
        let [tl, tr, _, _] = r[0];
        let angle = (tr[1] - tl[1]).atan2(tr[0] - tl[0]).to_degrees();
        assert!((angle - 30.0).abs() < 4.0, "angle {angle}: {r:?}");
    }

    #[test]
    fn straighten_cuts_a_rotated_quad_upright() {
        // Bottom half dark: a quad whose text runs bottom to top must come
        // out with the dark part first (on the left).
        let mut img = RgbImage::from_pixel(20, 40, image::Rgb([255; 3]));
        for y in 20..40 {
            for x in 0..20 {
                img.put_pixel(x, y, image::Rgb([0; 3]));
            }
        }
        // Reading direction upwards: tl at bottom-left, tr at top-left.
        let q: Quad = [[0.0, 40.0], [0.0, 0.0], [20.0, 0.0], [20.0, 40.0]];
        let crop = straighten(&img, &q).expect("crop");
        assert_eq!((crop.width(), crop.height()), (40, 20));
        // The start of the text (bottom of the image, dark) is on the left.
        assert!(crop.get_pixel(5, 10)[0] < 50 && crop.get_pixel(35, 10)[0] > 200);
    }

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate() {
        for t in [0.0f32, 0.25, 0.5, 0.9] {
            let w = cubic_weights(t);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{t}: {w:?}");
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
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
