"""Write a picochat model as GGUF (llama.cpp's file format), with its tokenizer and chat template.

    picochat export --run R --stage sft --format gguf --out DIR [--dtype f32|f16|bf16|q8_0]

One file holds everything llama.cpp, ollama or picochat's own run.py need: the `llama.*`
hyperparameters, the byte-level BPE tokenizer (`tokenizer.ggml.model = "gpt2"`: tokens in
GPT-2's byte-to-unicode form, token types, merges, special ids), the chat template, and the
tensors under llama.cpp's names (token_embd, blk.N.attn_q ..., output).

Two conversions happen on the way:
- Rotary layout. picochat (like Hugging Face) rotates the pairs (i, i + Dh/2) of each head
  ("rotate half"); llama.cpp's LLAMA graph rotates adjacent pairs (2i, 2i + 1), Meta's original
  layout. Permuting the rows of W_q and W_k within each head maps one onto the other; q.k is
  unchanged because both sides move together (`permute_qk`, undone by `unpermute_qk`).
- Pre-tokenizer. GGUF names the split regex rather than storing it. picochat splits with the
  GPT-4 (cl100k) pattern with single digits, which llama.cpp calls "qwen2" (Qwen2 uses that
  regex), with `(?i:'s|...)` spelled as explicit case classes; tokenizers of older runs, with
  cl100k's digit triples, are "llama-bpe" (Llama 3's regex). "llama-bpe" also turns on
  `ignore_merges` (a piece that is itself a token is taken whole), tiktoken's rule; "qwen2"
  merges such a piece pair by pair, which reaches the same token for merges learned on the
  same split, as picochat's are. ("gpt-4o" is a different, case-splitting pattern.)

Tensor types: f32; f16 and bf16 for matrices; q8_0 (blocks of 32 int8 + one f16 scale, through
`gguf.quants.quantize`) for matrices whose rows divide into blocks (others fall back to f16).
Norm weights (1-D) always stay f32, as llama.cpp's converter keeps them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from picochat.rundir import PicochatError

DTYPES = ("f32", "f16", "bf16", "q8_0")
# llama.cpp tensor name for each Hugging Face Llama parameter ({i}: layer index)
TENSOR_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "model.layers.{i}.input_layernorm.weight": "blk.{i}.attn_norm.weight",
    "model.layers.{i}.self_attn.q_proj.weight": "blk.{i}.attn_q.weight",
    "model.layers.{i}.self_attn.k_proj.weight": "blk.{i}.attn_k.weight",
    "model.layers.{i}.self_attn.v_proj.weight": "blk.{i}.attn_v.weight",
    "model.layers.{i}.self_attn.o_proj.weight": "blk.{i}.attn_output.weight",
    "model.layers.{i}.post_attention_layernorm.weight": "blk.{i}.ffn_norm.weight",
    "model.layers.{i}.mlp.gate_proj.weight": "blk.{i}.ffn_gate.weight",
    "model.layers.{i}.mlp.up_proj.weight": "blk.{i}.ffn_up.weight",
    "model.layers.{i}.mlp.down_proj.weight": "blk.{i}.ffn_down.weight",
}


def require_gguf():
    try:
        import gguf
    except ImportError as e:
        raise PicochatError("the `gguf` package is missing; pip install 'picochat[export]' "
                            "(or pip install gguf)") from e
    return gguf


# --- the rotary layout --------------------------------------------------------------------------
def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """(n_heads*Dh, D) rows in rotate-half order -> rows in adjacent-pair order, per head:
    new row 2i + j of a head is old row j*Dh/2 + i."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of `permute_qk` (GGUF -> Hugging Face layout)."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def hf_to_gguf_names(n_layers: int) -> dict[str, str]:
    names = {}
    for hf, gg in TENSOR_NAMES.items():
        if "{i}" in hf:
            names.update({hf.format(i=i): gg.format(i=i) for i in range(n_layers)})
        else:
            names[hf] = gg
    return names


# --- tensors ------------------------------------------------------------------------------------
def gguf_tensors(model, dtype: str):
    """Yield (llama.cpp name, array, raw ggml type or None) for every parameter, in file order."""
    gguf = require_gguf()
    from gguf.quants import quantize

    Q = gguf.GGMLQuantizationType
    c = model.config
    state = model.state_dict()
    block = gguf.GGML_QUANT_SIZES[Q.Q8_0][0]
    for hf, name in hf_to_gguf_names(c.n_layers).items():
        w = state[hf].detach().to("cpu", torch.float32).numpy()
        if hf.endswith("q_proj.weight"):
            w = permute_qk(w, c.n_heads)
        elif hf.endswith("k_proj.weight"):
            w = permute_qk(w, c.n_kv_heads)
        w = np.ascontiguousarray(w)
        if w.ndim == 1 or dtype == "f32":
            yield name, w, None
        elif dtype == "f16" or (dtype == "q8_0" and w.shape[-1] % block):
            yield name, w.astype(np.float16), None
        elif dtype == "bf16":
            yield name, quantize(w, Q.BF16), Q.BF16
        else:
            yield name, quantize(w, Q.Q8_0), Q.Q8_0


def file_type(dtype: str) -> int:
    gguf = require_gguf()
    F = gguf.LlamaFileType
    return {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "bf16": F.MOSTLY_BF16, "q8_0": F.MOSTLY_Q8_0}[dtype]


# --- tokenizer ----------------------------------------------------------------------------------
def tokenizer_fields(tokenizer, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) in GGUF's "gpt2" form. Ids past the tokenizer's own (a model
    vocabulary padded for speed) become unused placeholder tokens."""
    gguf = require_gguf()
    from picochat.tokenizer import PRE_TOKENIZERS, merges_for, token_to_str

    T = gguf.TokenType
    if tokenizer.pattern not in PRE_TOKENIZERS:
        raise PicochatError("the tokenizer's split pattern is not one of picochat's, so no "
                            "llama.cpp pre-tokenizer name describes it; GGUF export needs one")
    if tokenizer.vocab_size > vocab_size:
        raise PicochatError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                            f"{vocab_size}; this model and tokenizer do not belong together")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [int(T.UNUSED)] * vocab_size
    for token, rank in tokenizer.ranks.items():
        tokens[rank], types[rank] = token_to_str(token), int(T.NORMAL)
    for text, i in tokenizer.special_tokens.items():
        tokens[i], types[i] = text, int(T.CONTROL)
    merges = [f"{a} {b}" for a, b in merges_for(tokenizer.ranks)]
    return tokens, types, merges


# --- the file -----------------------------------------------------------------------------------
def write_gguf(model, tokenizer, path: Path, dtype: str = "f32", name: str = "picochat",
               description: str = "") -> Path:
    """Write `model` + `tokenizer` to `path` (atomically: a temp file, then one rename)."""
    if dtype not in DTYPES:
        raise PicochatError(f"GGUF dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    gguf = require_gguf()
    from picochat.tokenizer import BOS, CHAT_TEMPLATE, END, PAD, PRE_TOKENIZERS

    c = model.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    try:
        w.add_name(name)
        if description:
            w.add_description(description)
        w.add_file_type(int(file_type(dtype)))
        if dtype == "q8_0":
            w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_context_length(c.max_seq_len)
        w.add_embedding_length(c.dim)
        w.add_block_count(c.n_layers)
        w.add_feed_forward_length(c.ffn_dim)
        w.add_head_count(c.n_heads)
        w.add_head_count_kv(c.n_kv_heads)
        w.add_rope_dimension_count(c.head_dim)
        w.add_rope_freq_base(float(c.rope_theta))
        w.add_layer_norm_rms_eps(float(c.norm_eps))
        w.add_vocab_size(c.vocab_size)

        tokens, types, merges = tokenizer_fields(tokenizer, c.vocab_size)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(PRE_TOKENIZERS[tokenizer.pattern])
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        sp = tokenizer.special_tokens
        w.add_bos_token_id(sp[BOS])
        w.add_eos_token_id(sp[END])      # end of an assistant turn: where generation stops
        w.add_eot_token_id(sp[END])
        w.add_pad_token_id(sp[PAD])
        # pretraining documents start with <|bos|>, so plain completion does too, as in the
        # Hugging Face tokenizer's post-processor (picochat/tokenizer.py); the chat template
        # writes its own <|bos|> (as Llama 3's does), so a rendered chat is tokenized without
        # adding another (llama-cpp-python's chat handler and transformers both do that)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_chat_template(CHAT_TEMPLATE)

        for tname, array, raw in gguf_tensors(model, dtype):
            w.add_tensor(tname, array, raw_dtype=raw)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    return path


# --- ollama -------------------------------------------------------------------------------------
# picochat's chat template in ollama's Go template syntax. ollama adds <|bos|> itself (the GGUF
# says add_bos_token), so the template starts at the first turn. Tool calls and thinking are
# not rendered here: ollama's own tool-call format is not picochat's.
OLLAMA_TEMPLATE = (
    '{{- range .Messages }}<|{{ .Role }}|>'
    '{{- if eq .Role "tool" }}<|tool_result|>{{ .Content }}<|/tool_result|>'
    '{{- else }}{{ .Content }}{{ end }}<|end|>'
    '{{- end }}<|assistant|>'
)


def modelfile(gguf_name: str = "model.gguf", system: str | None = None) -> str:
    """An ollama Modelfile for the GGUF beside it: `ollama create picochat -f Modelfile`."""
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{OLLAMA_TEMPLATE}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += ['PARAMETER stop "<|end|>"', 'PARAMETER stop "<|user|>"',
              "PARAMETER temperature 0.8", "PARAMETER top_p 0.95"]
    return "\n".join(lines) + "\n"
