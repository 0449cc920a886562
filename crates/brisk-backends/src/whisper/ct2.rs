//! Reader for CTranslate2 `model.bin` files (binary version 6, as written by
//! `ct2-transformers-converter`).
//!
//! Layout (little-endian): `u32 binary_version`, `string spec`, `u32
//! revision`, `u32 n_variables`, then per variable `string name`, `u8 rank`,
//! `u32[rank] shape`, `u8 dtype`, `u32 n_bytes`, `n_bytes` of data; finally
//! `u32 n_aliases` and `(string alias, string target)` pairs. A string is a
//! `u16` length followed by that many bytes, the last one a NUL.

use std::collections::HashMap;
use std::path::Path;

use brisk_core::BackendError;

/// Element type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl Ct2DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One stored variable (the raw little-endian bytes).
#[derive(Debug, Clone)]
pub struct Ct2Variable {
    pub shape: Vec<usize>,
    pub dtype: Ct2DType,
    pub data: Vec<u8>,
}

impl Ct2Variable {
    /// The value of an integer scalar (or the first element of an integer
    /// tensor), if this is one.
    pub fn as_int(&self) -> Option<i64> {
        let d = &self.data;
        match self.dtype {
            Ct2DType::I8 => d.first().map(|&b| i64::from(b as i8)),
            Ct2DType::I16 => Some(i64::from(i16::from_le_bytes(d.get(..2)?.try_into().ok()?))),
            Ct2DType::I32 => Some(i64::from(i32::from_le_bytes(d.get(..4)?.try_into().ok()?))),
            _ => None,
        }
    }
}

/// A parsed `model.bin`.
#[derive(Debug, Clone)]
pub struct Ct2Model {
    pub binary_version: u32,
    /// The model spec name, e.g. `WhisperSpec`.
    pub spec: String,
    pub revision: u32,
    pub variables: HashMap<String, Ct2Variable>,
    /// `alias -> target` (e.g. `decoder/projection/weight -> decoder/embeddings/weight`).
    pub aliases: HashMap<String, String>,
}

fn bad(msg: impl std::fmt::Display) -> BackendError {
    BackendError::InvalidModel(format!("CTranslate2 model.bin: {msg}"))
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BackendError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| bad(format!("truncated at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, BackendError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, BackendError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, BackendError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, BackendError> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))
    }
}

/// Reads only the header: `(binary_version, spec name)`. Cheap: reads a few
/// bytes of the file.
pub fn read_spec(path: &Path) -> Option<(u32, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 6];
    f.read_exact(&mut head).ok()?;
    let version = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let len = usize::from(u16::from_le_bytes([head[4], head[5]]));
    if !(1..=256).contains(&len) {
        return None;
    }
    let mut name = vec![0u8; len];
    f.read_exact(&mut name).ok()?;
    let name = name.strip_suffix(&[0]).unwrap_or(&name);
    Some((version, String::from_utf8(name.to_vec()).ok()?))
}

impl Ct2Model {
    /// Parses a whole `model.bin` file.
    pub fn read(path: &Path) -> Result<Self, BackendError> {
        let buf = std::fs::read(path)
            .map_err(|e| BackendError::NotFound(format!("{}: {e}", path.display())))?;
        Self::parse(&buf)
    }

    /// Parses `model.bin` bytes.
    pub fn parse(buf: &[u8]) -> Result<Self, BackendError> {
        let mut c = Cursor { buf, pos: 0 };
        let binary_version = c.u32()?;
        if !(5..=6).contains(&binary_version) {
            return Err(bad(format!(
                "unsupported binary version {binary_version} (expected 5 or 6)"
            )));
        }
        let spec = c.string()?;
        let revision = c.u32()?;
        let n = c.u32()? as usize;
        let mut variables = HashMap::with_capacity(n.min(4096));
        for _ in 0..n {
            let name = c.string()?;
            let rank = usize::from(c.u8()?);
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(c.u32()? as usize);
            }
            let code = c.u8()?;
            let dtype = Ct2DType::from_code(code)
                .ok_or_else(|| bad(format!("{name}: unknown dtype code {code}")))?;
            let n_bytes = c.u32()? as usize;
            let elems = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| bad(format!("{name}: shape overflow")))?;
            if elems.checked_mul(dtype.size()) != Some(n_bytes) {
                return Err(bad(format!(
                    "{name}: {n_bytes} bytes do not match shape {shape:?} of {dtype:?}"
                )));
            }
            let data = c.take(n_bytes)?.to_vec();
            variables.insert(name, Ct2Variable { shape, dtype, data });
        }
        let mut aliases = HashMap::new();
        if c.pos < buf.len() {
            let n_aliases = c.u32()? as usize;
            for _ in 0..n_aliases {
                let alias = c.string()?;
                let target = c.string()?;
                aliases.insert(alias, target);
            }
        }
        Ok(Self {
            binary_version,
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// A variable by name, following aliases.
    pub fn get(&self, name: &str) -> Option<&Ct2Variable> {
        self.variables.get(name).or_else(|| {
            self.aliases
                .get(name)
                .and_then(|target| self.variables.get(target))
        })
    }

    /// Integer scalar by name.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name)?.as_int()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        string(&mut b, "a/weight");
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b.extend_from_slice(&(-2f32).to_le_bytes());
        string(&mut b, "num_heads");
        b.push(0);
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&6i16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "b/weight");
        string(&mut b, "a/weight");
        b
    }

    #[test]
    fn parses_variables_scalars_and_aliases() {
        let m = Ct2Model::parse(&sample()).expect("parse");
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.revision, 3);
        assert_eq!(m.int("num_heads"), Some(6));
        let v = m.get("b/weight").expect("alias");
        assert_eq!(v.shape, vec![2, 1]);
        assert_eq!(v.dtype, Ct2DType::F32);
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let full = sample();
        for cut in 0..full.len() - 1 {
            // Cutting inside the alias table may still parse the variables;
            // anything else must be an error.
            let _ = Ct2Model::parse(&full[..cut]);
        }
        assert!(Ct2Model::parse(&full[..20]).is_err());
    }
}
