"""The Transformer: a Llama, parameter for parameter.

RMSNorm, rotary position embeddings (Hugging Face "rotate half" convention), grouped-query
attention, SwiGLU MLP, untied input/output embeddings, no biases. Module names follow Hugging
Face `LlamaForCausalLM`, so `state_dict()` keys are exactly the keys of a Llama checkpoint: a
picochat model directory loads in `transformers`, and a Llama checkpoint loads here.

Shapes: B batch, T time (tokens), D model dim, H query heads, K key/value heads, Dh head dim,
V vocabulary.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from picochat.rundir import PicochatError, atomic_write_json


@dataclass
class ModelConfig:
    vocab_size: int = 8192
    dim: int = 384
    n_layers: int = 6
    n_heads: int = 6
    n_kv_heads: int = 6
    ffn_dim: int = 0          # 0: about 8/3 * dim (SwiGLU's usual), rounded up to a multiple of 64
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self):
        if self.ffn_dim == 0:
            self.ffn_dim = 64 * math.ceil(8 * self.dim / 3 / 64)
        if self.dim % self.n_heads or self.n_heads % self.n_kv_heads:
            raise PicochatError(f"dim {self.dim} must divide into {self.n_heads} heads and "
                                f"{self.n_heads} heads into {self.n_kv_heads} key/value heads")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_hf(self, bos_id: int, eos_id: int, pad_id: int) -> dict:
        """This config as a Hugging Face LlamaConfig (config.json)."""
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": self.vocab_size, "hidden_size": self.dim,
            "intermediate_size": self.ffn_dim, "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads, "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim, "max_position_embeddings": self.max_seq_len,
            "rope_theta": self.rope_theta, "rms_norm_eps": self.norm_eps, "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False,
            "initializer_range": 0.02, "torch_dtype": "float32",
            "bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id,
        }

    @classmethod
    def from_hf(cls, hf: dict) -> "ModelConfig":
        # transformers >= 5 writes rope_theta (and any scaling) inside rope_parameters
        rope = hf.get("rope_parameters") or {}
        unsupported = {k: hf[k] for k in ("rope_scaling", "attention_bias", "mlp_bias")
                       if hf.get(k)}
        if rope.get("rope_type", "default") != "default":
            unsupported["rope_parameters"] = rope
        if hf.get("model_type", "llama") != "llama" or unsupported:
            raise PicochatError(f"not a plain Llama config (model_type={hf.get('model_type')}, "
                                f"{unsupported or 'ok'}); picochat loads Llama-architecture models")
        n_heads = hf["num_attention_heads"]
        if hf.get("head_dim", hf["hidden_size"] // n_heads) * n_heads != hf["hidden_size"]:
            raise PicochatError("head_dim * num_attention_heads != hidden_size is not supported")
        return cls(vocab_size=hf["vocab_size"], dim=hf["hidden_size"],
                   n_layers=hf["num_hidden_layers"], n_heads=n_heads,
                   n_kv_heads=hf.get("num_key_value_heads", n_heads),
                   ffn_dim=hf["intermediate_size"],
                   max_seq_len=hf.get("max_position_embeddings", 2048),
                   rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
                   norm_eps=hf.get("rms_norm_eps", 1e-6))


class KVCache:
    """Preallocated keys and values for every layer, for incremental decoding.

    Rows may hold prompts of different lengths, left-padded: `start[b]` is where row b's real
    tokens begin. All rows advance together; `length` is how many positions are filled.
    """

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (config.n_layers, batch_size, config.n_kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.start = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.length = 0
        self.max_len = max_len

    def keep_rows(self, rows: list[int]) -> None:
        """Keep only these rows (the others finished), in this order."""
        index = torch.tensor(rows, dtype=torch.long, device=self.start.device)
        self.k, self.v = self.k.index_select(1, index), self.v.index_select(1, index)
        self.start = self.start[index]

    def positions(self, T: int) -> torch.Tensor:
        """(B, T) rotary positions of the next T tokens, counted from each row's start."""
        steps = torch.arange(self.length, self.length + T, device=self.start.device)
        return (steps[None, :] - self.start[:, None]).clamp(min=0)

    def mask(self, T: int) -> torch.Tensor | None:
        """(B, 1, T, length+T) boolean attention mask, or None when plain causal will do."""
        total = self.length + T
        if not bool(self.start.any()):
            if T == 1:
                return None  # one new token may see every filled key
        q = torch.arange(self.length, total, device=self.start.device)[:, None]   # (T, 1)
        k = torch.arange(total, device=self.start.device)[None, :]                # (1, total)
        causal = k <= q
        real = k[None] >= self.start[:, None, None]                               # (B, 1, total)
        # a padding query sees only itself, so no row is all-masked (which would give NaN)
        return ((causal[None] & real) | (k == q)[None])[:, None]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype matrix products run in here: autocast's when it is on, else x's."""
    device_type = x.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalize in fp32 (as Hugging Face Llama does). The result goes straight into matrix
        # products, so it is returned in their dtype: under autocast each projection would
        # otherwise cast the same fp32 activations again.
        dtype = compute_dtype(x)
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.to(dtype) * x.to(dtype)


class Rotary(nn.Module):
    """cos/sin tables for rotary embeddings, indexed by position."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hd = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        t = torch.arange(config.max_seq_len, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)                  # (T, Dh/2)
        emb = torch.cat((freqs, freqs), dim=-1)           # (T, Dh): "rotate half" layout
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, positions: torch.Tensor | int, dtype: torch.dtype):
        """positions: an int T (positions 0..T-1, training) or a (B, T) tensor (decoding).
        Returns cos, sin broadcastable over heads: (1 or B, 1, T, Dh)."""
        if isinstance(positions, int):
            if positions > self.cos.shape[0]:
                raise PicochatError(f"{positions} tokens do not fit the context length {self.cos.shape[0]}")
            return self.cos[None, None, :positions].to(dtype), self.sin[None, None, :positions].to(dtype)
        if int(positions.max()) >= self.cos.shape[0]:
            raise PicochatError(f"position {int(positions.max())} is past the context "
                                f"length {self.cos.shape[0]}")
        return self.cos[positions][:, None].to(dtype), self.sin[positions][:, None].to(dtype)


def attention(q, k, v, mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh) + mask) v for q (B, H, Tq, Dh) and k, v (B, K, Tk, Dh).

    On CPU in bf16, torch's fused (flash) kernel runs ~6x slower than plain batched matrix
    products on the bf16 units (135 ms vs 21 ms forward+backward at B8 H6 T256), so there the
    product is written out: one baddbmm adds the mask and scales in the same pass. Elsewhere the
    fused kernel is faster and leaner."""
    if not (q.device.type == "cpu" and q.dtype == torch.bfloat16):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                              enable_gqa=k.shape[1] != q.shape[1])
    B, H, Tq, Dh = q.shape
    K, Tk = k.shape[1], k.shape[2]
    group = H // K
    # Query heads that share a key/value head attend together: no copies of k and v.
    q = q.reshape(B * K, group * Tq, Dh)                                      # (B*K, G*Tq, Dh)
    k, v = k.reshape(B * K, Tk, Dh), v.reshape(B * K, Tk, Dh)                 # (B*K, Tk, Dh)
    if causal:
        bias = torch.full((Tq, Tk), float("-inf"), device=q.device, dtype=q.dtype).triu(Tk - Tq + 1)
        bias = bias.repeat(group, 1)[None]                                    # (1, G*Tq, Tk)
    elif mask is not None:                                                    # (B, 1, Tq, Tk) bool
        bias = torch.zeros(mask.shape, device=q.device, dtype=q.dtype).masked_fill(~mask, float("-inf"))
        bias = bias[:, :, None].expand(B, K, group, Tq, Tk).reshape(B * K, group * Tq, Tk)
    else:
        bias = torch.zeros((1, 1, Tk), device=q.device, dtype=q.dtype)
    scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=Dh ** -0.5)     # (B*K, G*Tq, Tk)
    y = scores.softmax(dim=-1) @ v                                            # (B*K, G*Tq, Dh)
    return y.view(B, H, Tq, Dh)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


class LlamaAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.H, self.K, self.Dh = layer, config.n_heads, config.n_kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.dim, self.H * self.Dh, bias=False)
        self.k_proj = nn.Linear(config.dim, self.K * self.Dh, bias=False)
        self.v_proj = nn.Linear(config.dim, self.K * self.Dh, bias=False)
        self.o_proj = nn.Linear(self.H * self.Dh, config.dim, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None = None, mask=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.Dh).transpose(1, 2)   # (B, H, T, Dh)
        k = self.k_proj(x).view(B, T, self.K, self.Dh).transpose(1, 2)   # (B, K, T, Dh)
        v = self.v_proj(x).view(B, T, self.K, self.Dh).transpose(1, 2)   # (B, K, T, Dh)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is None:
            y = attention(q, k, v, None, causal=True)
        else:
            t0, t1 = cache.length, cache.length + T
            cache.k[self.layer, :, :, t0:t1] = k
            cache.v[self.layer, :, :, t0:t1] = v
            k, v = cache.k[self.layer, :, :, :t1], cache.v[self.layer, :, :, :t1]  # (B, K, t1, Dh)
            y = attention(q, k.to(q.dtype), v.to(q.dtype), mask, causal=mask is None and T > 1)
        y = y.transpose(1, 2).reshape(B, T, self.H * self.Dh)                    # (B, T, D)
        return self.o_proj(y)


class LlamaMLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.up_proj = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.down_proj = nn.Linear(config.ffn_dim, config.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = LlamaAttention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(self, x, cos, sin, cache=None, mask=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.rotary = Rotary(config)


class Llama(nn.Module):
    """Decoder-only Transformer; `state_dict()` matches Hugging Face LlamaForCausalLM."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)

    def init_weights(self, seed: int = 0) -> None:
        """GPT-2-style init: N(0, 0.02); residual output projections scaled by 1/sqrt(2L) so the
        residual stream's variance does not grow with depth."""
        g = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                else:
                    std = residual_std if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None, head: bool = True,
                at: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids (B, T) -> logits (B, T, V). With a cache, the T tokens continue it.
        head=False: the final norm's hidden states (B, T, D) instead (what embeddings pool).
        at: a (B, T) bool mask: only those positions' outputs, (N, V) in row order (training
        needs the output head, a small model's largest product, only where a token is predicted)."""
        B, T = input_ids.shape
        x = self.model.embed_tokens(input_ids)                                    # (B, T, D)
        if cache is None:
            positions, mask = T, None
        else:
            if cache.length + T > cache.max_len:
                raise PicochatError(f"KV cache holds {cache.max_len} tokens; "
                                    f"{cache.length + T} requested")
            positions, mask = cache.positions(T), cache.mask(T)
        # rotary tables in the compute dtype: fp32 tables would promote bf16 q/k back to fp32
        device_type = input_ids.device.type
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
        cos, sin = self.model.rotary(positions, dtype)
        for layer in self.model.layers:
            x = layer(x, cos, sin, cache, mask)
        if cache is not None:
            cache.length += T
        if at is not None:
            x = x[at]                                                             # (N, D)
        x = self.model.norm(x)                                                    # (B, T, D) or (N, D)
        return self.lm_head(x) if head else x                                     # (B, T, V) or (N, V)

    # --- accounting -----------------------------------------------------------------------
    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.model.embed_tokens.weight.numel()

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward): 6 per weight in a matrix product
        (the embedding lookup is not one) + attention's QK^T and AV, 12 * L * D * T."""
        c = self.config
        return 6 * self.num_params(embeddings=False) + 12 * c.n_layers * c.dim * seq_len


# --- Hugging Face model directories ----------------------------------------------------------
def save_pretrained(model: Llama, folder: Path, tokenizer=None, extra_files: dict | None = None,
                    architecture: dict | None = None) -> None:
    """Write a Hugging Face Llama directory: model.safetensors, generation_config.json, the
    tokenizer files when a tokenizer is given, and config.json last. Each file is written
    atomically and config.json marks a complete directory; other contents (checkpoints/) stay.
    `architecture`: config.json entries that replace LlamaForCausalLM's (a reward model's)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bos, eos, pad = (tokenizer.bos_id, tokenizer.end_id, tokenizer.pad_id) if tokenizer else (0, 0, 0)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    (folder / "config.json").unlink(missing_ok=True)
    tmp = folder / ".model.safetensors.tmp"
    save_file(state, tmp, metadata={"format": "pt"})
    os.replace(tmp, folder / "model.safetensors")
    atomic_write_json(folder / "generation_config.json", {
        "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
        "do_sample": True, "temperature": 0.8, "top_p": 0.95})
    if tokenizer is not None:
        tokenizer.save(folder)
    for name, obj in (extra_files or {}).items():
        atomic_write_json(folder / name, obj)
    atomic_write_json(folder / "config.json", {**model.config.to_hf(bos, eos, pad), **(architecture or {})})


def load_pretrained(folder: Path, device: str | torch.device = "cpu") -> Llama:
    """Load a Llama model directory (picochat's or any Llama-family checkpoint in safetensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise PicochatError(f"no model at {folder} (config.json missing); train or export one first")
    try:
        hf = json.loads(config_path.read_text())
        config = ModelConfig.from_hf(hf)
    except (json.JSONDecodeError, KeyError) as e:
        raise PicochatError(f"{config_path} is not a valid Llama config ({e!r})") from e
    if "LlamaForSequenceClassification" in hf.get("architectures", []):
        raise PicochatError(f"{folder} is a reward model: it scores answers and writes none; load it with "
                            "picochat.train.reward.load_reward, or use another stage")
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() \
        else ["model.safetensors"]
    state = {}
    for name in files:
        try:
            state.update(load_file(folder / name))
        except (SafetensorError, OSError, ValueError) as e:
            raise PicochatError(f"{folder / name} is unreadable or truncated ({e}); "
                                "re-export or retrain this model") from e
    if "lm_head.weight" not in state and "model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]  # tied checkpoints
    model = Llama(config)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    unexpected = [k for k in unexpected if "rotary_emb" not in k]
    if missing or unexpected:
        raise PicochatError(f"{folder} does not match its config: missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}")
    return model.to(device)

