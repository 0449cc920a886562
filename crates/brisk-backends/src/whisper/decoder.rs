//! Whisper's text decoder with a self-attention key/value cache.
//!
//! A fork of the decoder half of `candle_transformers::models::whisper::model`
//! (0.11.1): same layers, loaded from the same `VarBuilder` names, so the
//! weights are shared with candle's `Whisper` unchanged. candle's
//! `TextDecoder` runs the whole token sequence through self-attention at
//! every step (it only caches the cross-attention keys/values), which makes
//! a window's decoding quadratic in its length. This one takes only the new
//! tokens and their position offset, appends their keys/values to a
//! per-layer cache, and keeps the cross-attention keys/values of the current
//! window's audio features. [`TextDecoder::reset`] starts a new window.

use candle_core::{IndexOp, Result, Tensor};
use candle_nn::{
    embedding, linear, linear_no_bias, Embedding, LayerNorm, Linear, Module, VarBuilder,
};
use candle_transformers::models::whisper::Config;

fn layer_norm(size: usize, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get(size, "weight")?;
    let bias = vb.get(size, "bias")?;
    Ok(LayerNorm::new(weight, bias, 1e-5))
}

/// `(1, n, n_state)` to `(1, n_head, n, head_dim)`.
fn reshape_head(x: &Tensor, n_head: usize) -> Result<Tensor> {
    let (b, n, n_state) = x.dims3()?;
    x.reshape((b, n, n_head, n_state / n_head))?.transpose(1, 2)
}

/// Softmax attention of `q` (heads split, scaled) over `k_t` (heads split,
/// scaled, transposed: `(1, h, head_dim, T)`) and `v` (`(1, h, T,
/// head_dim)`), heads merged again.
fn attend(q: &Tensor, k_t: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let mut qk = q.matmul(k_t)?;
    if let Some(mask) = mask {
        qk = qk.broadcast_add(mask)?;
    }
    let w = candle_nn::ops::softmax_last_dim(&qk)?;
    w.matmul(v)?.transpose(1, 2)?.flatten_from(2)
}

#[derive(Debug, Clone)]
struct MultiHeadAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    n_head: usize,
    /// `head_dim^-0.25`, applied to both queries and keys (as Whisper).
    scale: f64,
}

impl MultiHeadAttention {
    fn load(n_state: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: linear(n_state, n_state, vb.pp("q_proj"))?,
            key: linear_no_bias(n_state, n_state, vb.pp("k_proj"))?,
            value: linear(n_state, n_state, vb.pp("v_proj"))?,
            out: linear(n_state, n_state, vb.pp("out_proj"))?,
            n_head,
            scale: ((n_state / n_head) as f64).powf(-0.25),
        })
    }

    fn query(&self, x: &Tensor) -> Result<Tensor> {
        reshape_head(&self.query.forward(x)?, self.n_head)? * self.scale
    }

    /// Scaled, transposed keys `(1, h, head_dim, T)` and values
    /// `(1, h, T, head_dim)` of `x`, both contiguous.
    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let k = (reshape_head(&self.key.forward(x)?, self.n_head)?.transpose(2, 3)? * self.scale)?;
        let v = reshape_head(&self.value.forward(x)?, self.n_head)?.contiguous()?;
        Ok((k, v))
    }
}

#[derive(Debug, Clone)]
struct ResidualAttentionBlock {
    attn: MultiHeadAttention,
    attn_ln: LayerNorm,
    cross_attn: MultiHeadAttention,
    cross_attn_ln: LayerNorm,
    mlp_linear1: Linear,
    mlp_linear2: Linear,
    mlp_ln: LayerNorm,
    /// Self-attention keys (transposed) and values of the tokens so far.
    self_kv: Option<(Tensor, Tensor)>,
    /// Cross-attention keys (transposed) and values of the window's audio.
    cross_kv: Option<(Tensor, Tensor)>,
}

impl ResidualAttentionBlock {
    fn load(n_state: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        let n_mlp = n_state * 4;
        Ok(Self {
            attn: MultiHeadAttention::load(n_state, n_head, vb.pp("self_attn"))?,
            attn_ln: layer_norm(n_state, vb.pp("self_attn_layer_norm"))?,
            cross_attn: MultiHeadAttention::load(n_state, n_head, vb.pp("encoder_attn"))?,
            cross_attn_ln: layer_norm(n_state, vb.pp("encoder_attn_layer_norm"))?,
            mlp_linear1: linear(n_state, n_mlp, vb.pp("fc1"))?,
            mlp_linear2: linear(n_mlp, n_state, vb.pp("fc2"))?,
            mlp_ln: layer_norm(n_state, vb.pp("final_layer_norm"))?,
            self_kv: None,
            cross_kv: None,
        })
    }

    fn forward(&mut self, x: &Tensor, xa: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        // Self-attention over the cached tokens and the new ones.
        let h = self.attn_ln.forward(x)?;
        let q = self.attn.query(&h)?;
        let (k, v) = self.attn.keys_values(&h)?;
        let (k, v) = match self.self_kv.take() {
            None => (k, v),
            Some((k0, v0)) => (Tensor::cat(&[&k0, &k], 3)?, Tensor::cat(&[&v0, &v], 2)?),
        };
        let attn = attend(&q, &k, &v, mask)?;
        self.self_kv = Some((k, v));
        let mut x = (x + self.attn.out.forward(&attn)?)?;

        // Cross-attention over the audio features (keys/values computed once).
        let h = self.cross_attn_ln.forward(&x)?;
        let q = self.cross_attn.query(&h)?;
        if self.cross_kv.is_none() {
            self.cross_kv = Some(self.cross_attn.keys_values(xa)?);
        }
        if let Some((k, v)) = &self.cross_kv {
            let attn = attend(&q, k, v, None)?;
            x = (&x + self.cross_attn.out.forward(&attn)?)?;
        }

        let mlp = self.mlp_linear2.forward(
            &self
                .mlp_linear1
                .forward(&self.mlp_ln.forward(&x)?)?
                .gelu()?,
        )?;
        x + mlp
    }
}

/// Whisper's text decoder with self- and cross-attention caches.
#[derive(Debug, Clone)]
pub struct TextDecoder {
    token_embedding: Embedding,
    positional_embedding: Tensor,
    blocks: Vec<ResidualAttentionBlock>,
    ln: LayerNorm,
    /// Causal mask `(n_ctx, n_ctx)`: -inf above the diagonal.
    mask: Tensor,
    /// Tokens in the self-attention cache.
    cached: usize,
}

impl TextDecoder {
    /// Loads from the same names as candle's decoder (`vb` at
    /// `model.decoder`).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let n_state = cfg.d_model;
        let n_head = cfg.decoder_attention_heads;
        let n_ctx = cfg.max_target_positions;
        let token_embedding = embedding(cfg.vocab_size, n_state, vb.pp("embed_tokens"))?;
        let positional_embedding = vb.get((n_ctx, n_state), "embed_positions.weight")?;
        let blocks = (0..cfg.decoder_layers)
            .map(|i| ResidualAttentionBlock::load(n_state, n_head, vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let ln = layer_norm(n_state, vb.pp("layer_norm"))?;
        let mask: Vec<f32> = (0..n_ctx)
            .flat_map(|i| (0..n_ctx).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (n_ctx, n_ctx), vb.device())?;
        Ok(Self {
            token_embedding,
            positional_embedding,
            blocks,
            ln,
            mask,
            cached: 0,
        })
    }

    /// Forgets the tokens and the audio features: the next
    /// [`forward`](Self::forward) starts a new window at offset 0.
    pub fn reset(&mut self) {
        for b in &mut self.blocks {
            b.self_kv = None;
            b.cross_kv = None;
        }
        self.cached = 0;
    }

    /// Tokens in the cache (the offset the next tokens go to).
    pub fn cached_len(&self) -> usize {
        self.cached
    }

    /// Runs the new `tokens` (`1 x n`) at positions `offset..offset + n`,
    /// given the window's audio `features` (used only right after
    /// [`reset`](Self::reset): their keys/values are then cached). `offset`
    /// must be the number of tokens already cached. Returns the final hidden
    /// states of the new tokens, `(1, n, n_state)`.
    pub fn forward(&mut self, tokens: &Tensor, features: &Tensor, offset: usize) -> Result<Tensor> {
        if offset != self.cached {
            candle_core::bail!(
                "decoder offset {offset} but {} tokens are cached",
                self.cached
            );
        }
        let n = tokens.dim(1)?;
        let n_ctx = self.positional_embedding.dim(0)?;
        if offset + n > n_ctx {
            candle_core::bail!(
                "{} tokens exceed the decoder context of {n_ctx}",
                offset + n
            );
        }
        let positions = self.positional_embedding.narrow(0, offset, n)?;
        let mut x = self
            .token_embedding
            .forward(tokens)?
            .broadcast_add(&positions)?;
        // Causal masking is only needed among the new tokens: every cached
        // token comes before all of them.
        let mask = if n > 1 {
            Some(self.mask.i((offset..offset + n, 0..offset + n))?)
        } else {
            None
        };
        for block in &mut self.blocks {
            x = block.forward(&x, features, mask.as_ref())?;
        }
        self.cached += n;
        self.ln.forward(&x)
    }

    /// Logits `(1, n, vocab)` of hidden states `(1, n, n_state)` (the token
    /// embedding, transposed, is the output projection).
    pub fn final_linear(&self, x: &Tensor) -> Result<Tensor> {
        let b_size = x.dim(0)?;
        let w = self.token_embedding.embeddings().broadcast_left(b_size)?;
        x.matmul(&w.t()?)
    }
}
