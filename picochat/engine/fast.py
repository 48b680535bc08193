"""`FastLlama`: a decode-oriented copy of a `Llama`'s weights.

Fused QKV and gate/up matrices, q/k rows permuted per head so rotary embedding is one complex
multiply, the attention scale folded into W_q, matrices in the compute dtype (bf16 halves the
bytes read per token, which is what bounds decoding), residual stream, norms, attention and KV
cache in fp32. Batch-1 decoding is bounded by per-op overhead as much as by bandwidth, so every
step runs the fewest ops it can. It uses the model's `KVCache` layout (left-padded ragged rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from picochat.model import KVCache, Llama
from picochat.rundir import PicochatError


class FastLlama:
    """A `Llama`'s weights rearranged for incremental decoding (see the module docstring).

    Exact in what it computes (same function as `Llama.forward`, up to float rounding): the
    per-head permutation of q and k rows is applied to both, so q.k is unchanged, and it maps
    Hugging Face's rotate-half pairs (i, i + Dh/2) onto adjacent (real, imaginary) pairs."""

    def __init__(self, model: Llama, dtype: "torch.dtype | str | None" = None):
        c = self.config = model.config
        first = next(model.parameters())
        # "int8": weight-only int8 (one scale per output row), bf16 activations, through
        # torch's decode kernel for it; a quarter of fp32's bytes per token
        self.int8 = dtype == "int8"
        self.device = first.device
        self.dtype = torch.bfloat16 if self.int8 else (dtype or first.dtype)
        H, K, Dh, D = c.n_heads, c.n_kv_heads, c.head_dim, c.dim
        self.H, self.K, self.G, self.Dh, self.ffn = H, K, H // K, Dh, c.ffn_dim
        half = torch.arange(Dh // 2, device=self.device)
        interleave = torch.stack([half, half + Dh // 2], dim=-1).flatten()       # (Dh,)

        def per_head(w, n):  # (n*Dh, D) rows -> rotate-half pairs adjacent
            return w.view(n, Dh, D)[:, interleave].reshape(n * Dh, D)

        self.layers = []
        with torch.no_grad():
            for layer in model.model.layers:
                a, m = layer.self_attn, layer.mlp
                wqkv = torch.cat([per_head(a.q_proj.weight.float(), H) * Dh ** -0.5,
                                  per_head(a.k_proj.weight.float(), K), a.v_proj.weight.float()])
                self.layers.append((
                    layer.input_layernorm.weight.detach().float(), self._matrix(wqkv),
                    self._matrix(a.o_proj.weight),
                    layer.post_attention_layernorm.weight.detach().float(),
                    self._matrix(torch.cat([m.gate_proj.weight, m.up_proj.weight])),
                    self._matrix(m.down_proj.weight)))
            self.embed = model.model.embed_tokens.weight.detach().float()
            self.norm = model.model.norm.weight.detach().float()
            self.lm_head = self._matrix(model.lm_head.weight)
            inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, Dh, 2, dtype=torch.int64,
                                                            device=self.device).float() / Dh))
            freqs = torch.outer(torch.arange(c.max_seq_len, device=self.device, dtype=torch.float32), inv_freq)
            self.cis = torch.polar(torch.ones_like(freqs), freqs)                  # (T, Dh/2) complex64
        self.eps = c.norm_eps

    def _matrix(self, w: torch.Tensor):
        """Store W for `x @ W`: transposed (in, out) and contiguous in fp32, where MKL's batch-1
        product runs ~3x faster that way; as (out, in) for F.linear in bf16 (oneDNN); as int8
        rows + fp32->bf16 row scales for int8."""
        w = w.detach()
        if self.int8:
            scale = (w.float().abs().amax(dim=1) / 127).clamp(min=1e-12)
            q = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            return q, scale.to(self.dtype)
        w = w.to(self.dtype)
        return w.t().contiguous() if self.dtype == torch.float32 else w.contiguous()

    def _mm(self, x: torch.Tensor, w) -> torch.Tensor:
        if self.int8:
            q, scale = w
            y = torch._weight_int8pack_mm(x.reshape(-1, x.shape[-1]), q, scale)
            return y.view(*x.shape[:-1], q.shape[0])
        return x @ w if self.dtype == torch.float32 else F.linear(x, w)

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        return KVCache(self.config, batch_size, max_len, device=self.device, dtype=torch.float32)

    def weight_bytes_per_token(self) -> int:
        """Bytes of weights one decoding step reads (every matrix once, one embedding row)."""
        mats = [w for layer in self.layers for w in (layer[1], layer[2], layer[4], layer[5])] + [self.lm_head]
        flat = [t for m in mats for t in (m if isinstance(m, tuple) else (m,))]
        return sum(t.numel() * t.element_size() for t in flat) + self.embed.shape[1] * 4

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """ids (B, T) continue the cache -> logits (B, V) of the last position, fp32."""
        B, T = ids.shape
        if cache.length + T > cache.max_len:
            raise PicochatError(f"KV cache holds {cache.max_len} tokens; {cache.length + T} requested")
        H, K, G, Dh, Fd, dt = self.H, self.K, self.G, self.Dh, self.ffn, self.dtype
        D = H * Dh
        t0, t1 = cache.length, cache.length + T
        cis = self.cis[cache.positions(T)][:, :, None]                        # (B, T, 1, Dh/2)
        mask = cache.mask(T)                                                  # (B, 1, T, t1) | None
        if mask is None and T > 1:
            mask = torch.ones(T, t1, dtype=torch.bool, device=ids.device).tril(t0)[None, None]
        if mask is not None:
            bias = torch.zeros(mask.shape, device=ids.device).masked_fill_(~mask, float("-inf"))
            bias = bias[:, :, None]                                           # (B, 1, 1, T, t1)
        x = F.embedding(ids, self.embed)                                      # (B, T, D) fp32
        low = dt != torch.float32      # (fewest dispatches: batch-1 decoding is overhead-bound)
        QK = (H + K) * Dh
        for i, (n1, wqkv, wo, n2, wgu, wd) in enumerate(self.layers):
            h = F.rms_norm(x, (D,), n1, self.eps)
            qkv = self._mm(h.to(dt) if low else h, wqkv)                      # (B, T, (H+2K) Dh)
            if low:
                qkv = qkv.float()
            qk = torch.view_as_complex(qkv[..., :QK].view(B, T, H + K, Dh // 2, 2))
            qk = torch.view_as_real(qk * cis).view(B, T, H + K, Dh)
            kc, vc = cache.k[i], cache.v[i]                                   # (B, K, T_max, Dh)
            kc.narrow(2, t0, T).copy_(qk.narrow(2, H, K).transpose(1, 2))
            vc.narrow(2, t0, T).copy_(qkv[..., QK:].view(B, T, K, Dh).transpose(1, 2))
            if T == 1:
                q = qk.narrow(2, 0, H).view(B, K, G, Dh)
            else:
                q = qk[:, :, :H].reshape(B, T, K, G, Dh).permute(0, 2, 3, 1, 4).reshape(B, K, G * T, Dh)
            s = q @ kc.narrow(2, 0, t1).transpose(2, 3)                       # (B, K, G*T, t1)
            if mask is not None:
                s = (s.view(B, K, G, T, t1) + bias).view(B, K, G * T, t1)
            y = s.softmax(dim=-1) @ vc.narrow(2, 0, t1)                       # (B, K, G*T, Dh)
            if T > 1:
                y = y.view(B, K, G, T, Dh).permute(0, 3, 1, 2, 4)
            y = y.reshape(B, T, D)
            x = x + self._mm(y.to(dt) if low else y, wo)
            h = F.rms_norm(x, (D,), n2, self.eps)
            gu = self._mm(h.to(dt) if low else h, wgu)
            x = x + self._mm(F.silu(gu[..., :Fd]) * gu[..., Fd:], wd)
        cache.length = t1
        x = F.rms_norm(x[:, -1], (D,), self.norm, self.eps).to(dt)
        return self._mm(x, self.lm_head).float()                              # (B, V)


def as_fast(model: "Llama | FastLlama", dtype: "torch.dtype | str | None" = None) -> FastLlama:
    if isinstance(model, FastLlama):
        return model
    return FastLlama(model, dtype)
