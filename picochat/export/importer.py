"""Bring a Llama-family model into a run, from a Hugging Face directory or a GGUF file.

    picochat import path/to/hf-folder --run R [--stage base]
    picochat import path/to/model.gguf --run R [--stage sft]

The model lands in runs/R/<stage>/ as a picochat model directory, so `picochat sample`, `chat`,
`serve`, `eval` and `sft` work on it as on a trained one.

Weights: any plain Llama (model_type llama, no rope scaling, no biases; tied embeddings are
untied). From GGUF, tensors are dequantized to fp32 (f32, f16, bf16, q8_0 and whatever else
`gguf.quants` reads) and W_q / W_k rows are put back from llama.cpp's adjacent-pair rotary
layout into Hugging Face's rotate-half layout.

Tokenizer: picochat runs on its own tokenizer kind, and an import is only useful if the model
keeps the tokenizer it was trained with. So an import requires, and checks:
- byte-level BPE (all 256 bytes are tokens; tokenizer.json's BPE model, or GGUF's "gpt2"),
- one of picochat's split patterns (tokenizer.json's Split regex, or GGUF pre "qwen2": GPT-4's
  with single digits; "llama-bpe": GPT-4's own, as older picochat runs have),
- merges ordered like the token ids (picochat encodes with tiktoken, which merges by the rank
  of the merged token; that equals BPE's merge order only when the two orders agree),
- picochat's special tokens (<|bos|>, <|end|>, the role and tool markers): the chat template,
  SFT and the engine are written in them.
Models exported by picochat pass; a model with another tokenizer (Llama 3's own special
tokens, SentencePiece) gets a one-line error naming what does not match, rather than a model
that would load but silently mis-tokenize. Only the vocabulary, merges, split pattern and
special tokens are read; the tokenizer files are then written anew, so a folder from an older
picochat (whose tokenizer.json did not put <|bos|> before plain text for transformers) comes
out as current ones are.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from picochat.rundir import STAGES, PicochatError, RunDir

# llama.cpp's pre-tokenizer names -> the split pattern they stand for ("llama3" and "llama-v3" are
# older names of "llama-bpe")
def gguf_pre_tokenizers() -> dict[str, str]:
    from picochat.tokenizer import PRE_TOKENIZERS

    names = {name: pattern for pattern, name in PRE_TOKENIZERS.items()}
    return {**names, "llama3": names["llama-bpe"], "llama-v3": names["llama-bpe"]}


def import_model(path: str | Path, run: RunDir | str | Path, stage: str = "base") -> Path:
    """Write the model at `path` into run/<stage>/; returns that folder. Given a path, the run
    folder is created only once the model has been read, so a failed import leaves nothing."""
    from picochat.model import save_pretrained

    path = Path(path)
    if stage not in STAGES:
        raise PicochatError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    dest = (run.path if isinstance(run, RunDir) else Path(run)) / stage
    if not path.exists():
        raise PicochatError(f"{path} does not exist; give a Hugging Face model folder or a .gguf file")
    if (dest / "config.json").exists():
        raise PicochatError(f"{dest} already holds a model; import into another --stage or another --run")
    if path.is_dir():
        model, tokenizer = from_hf_dir(path)
    elif is_gguf(path):
        model, tokenizer = from_gguf(path)
    else:
        raise PicochatError(f"{path} is neither a model folder (with config.json) nor a GGUF file")
    if not isinstance(run, RunDir):
        run = RunDir(run)
    save_pretrained(model.eval(), dest, tokenizer)
    if not (run.tokenizer / "tokenizer.json").exists():
        tokenizer.save(run.tokenizer)   # so `picochat data tokenize` can prepare data for it
    run.record_stage(stage, status="done", imported_from=str(path.resolve()),
                     model=asdict(model.config), params=model.num_params())
    print(f"imported {path} ({model.num_params():,} parameters) -> {dest}")
    return dest


def is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


# --- tokenizer checks ---------------------------------------------------------------------------
def check_merge_order(merges: list[tuple[str, str]], vocab: dict[str, int], where: str) -> None:
    """BPE applies merges in list order; tiktoken merges by the merged token's id. Both give the
    same tokens when the merged tokens' ids never go down along the list."""
    last = -1
    for a, b in merges:
        rank = vocab.get(a + b)
        if rank is None:
            raise PicochatError(f"{where}: merge {a!r} + {b!r} makes a token that is not in the vocabulary")
        if rank < last:
            raise PicochatError(f"{where}: merges are not in token-id order, so picochat's tokenizer "
                                "(ranks by id) would tokenize differently; this tokenizer cannot be imported")
        last = rank


def check_tokenizer(tokenizer, vocab_size: int, where: str) -> None:
    from picochat.tokenizer import PRE_TOKENIZERS, SPECIAL_TOKENS

    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.special_tokens]
    if missing:
        raise PicochatError(f"{where}: the tokenizer lacks picochat's special tokens "
                            f"({', '.join(missing[:4])}{'...' if len(missing) > 4 else ''}); picochat's chat "
                            "template, SFT and engine need them, so only models with a picochat tokenizer import")
    if tokenizer.pattern not in PRE_TOKENIZERS:
        raise PicochatError(f"{where}: the tokenizer's split pattern is not one picochat uses (GPT-4's, "
                            "with single or grouped digits)")
    if any(bytes([b]) not in tokenizer.ranks for b in range(256)):
        raise PicochatError(f"{where}: not a byte-level BPE tokenizer (some single bytes are not tokens)")
    ids = list(tokenizer.ranks.values()) + list(tokenizer.special_tokens.values())
    if len(set(ids)) != len(ids) or max(ids) >= vocab_size:
        raise PicochatError(f"{where}: token ids overlap or exceed the model's vocabulary of {vocab_size}")
    try:
        tokenizer.encode("Hello, world!")
    except Exception as e:  # tiktoken rejects malformed vocabularies with assorted errors
        raise PicochatError(f"{where}: the tokenizer does not load ({e})") from e


# --- Hugging Face directories -------------------------------------------------------------------
def from_hf_dir(folder: Path):
    from picochat.model import load_pretrained
    from picochat.tokenizer import Tokenizer

    if not (folder / "config.json").exists():
        raise PicochatError(f"{folder} is not a model folder (no config.json); give a Hugging Face "
                            "Llama directory or a .gguf file")
    spec_path = folder / "tokenizer.json"
    if not spec_path.exists():
        raise PicochatError(f"{folder} has no tokenizer.json; picochat needs the model's byte-level "
                            "BPE tokenizer next to its weights")
    model = load_pretrained(folder)
    try:
        spec = json.loads(spec_path.read_text())
        bpe = spec["model"]
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in bpe.get("merges", [])]
        kind = bpe.get("type")
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise PicochatError(f"{spec_path} is not a readable tokenizer.json ({e!r})") from e
    if kind != "BPE":
        raise PicochatError(f"{spec_path}: a {kind} tokenizer; picochat imports byte-level BPE only")
    tokenizer = Tokenizer.load(folder)
    check_merge_order(merges, bpe["vocab"], str(spec_path))
    check_tokenizer(tokenizer, model.config.vocab_size, str(spec_path))
    return model, tokenizer


# --- GGUF files ---------------------------------------------------------------------------------
def field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def from_gguf(path: Path):
    from picochat.export.gguf import require_gguf

    gguf = require_gguf()
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # the reader fails on damaged files with assorted numpy/struct errors
        raise PicochatError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e}); "
                            "it may be truncated: download or export it again") from e
    arch = field(reader, "general.architecture")
    if arch != "llama":
        raise PicochatError(f"{path} holds a {arch!r} model; picochat imports 'llama' GGUF files only")
    config = gguf_config(reader, path)
    tokenizer = gguf_tokenizer(reader, config.vocab_size, path)
    model = gguf_model(reader, config, path)
    return model, tokenizer


def gguf_config(reader, path: Path):
    from picochat.model import ModelConfig

    def hp(key, default=None):
        value = field(reader, f"llama.{key}", default)
        if value is None:
            raise PicochatError(f"{path} lacks llama.{key}; not a complete llama GGUF")
        return value

    if field(reader, "llama.rope.scaling.type") not in (None, "none"):
        raise PicochatError(f"{path} uses rope scaling, which picochat's model does not implement")
    dim, n_heads = int(hp("embedding_length")), int(hp("attention.head_count"))
    if int(hp("rope.dimension_count", dim // n_heads)) != dim // n_heads:
        raise PicochatError(f"{path}: rotary dimension differs from the head dimension; not supported")
    tokens = field(reader, "tokenizer.ggml.tokens") or []
    return ModelConfig(vocab_size=int(field(reader, "llama.vocab_size", len(tokens))), dim=dim,
                       n_layers=int(hp("block_count")), n_heads=n_heads,
                       n_kv_heads=int(hp("attention.head_count_kv", n_heads)),
                       ffn_dim=int(hp("feed_forward_length")), max_seq_len=int(hp("context_length")),
                       rope_theta=float(hp("rope.freq_base", 10000.0)),
                       norm_eps=float(hp("attention.layer_norm_rms_epsilon")))


def gguf_tokenizer(reader, vocab_size: int, path: Path):
    from picochat.export.gguf import require_gguf
    from picochat.tokenizer import Tokenizer, str_to_token

    kind, pre = field(reader, "tokenizer.ggml.model"), field(reader, "tokenizer.ggml.pre", "default")
    if kind != "gpt2":
        raise PicochatError(f"{path}: tokenizer kind {kind!r}; picochat imports byte-level BPE ('gpt2') only")
    patterns = gguf_pre_tokenizers()
    if pre not in patterns:
        raise PicochatError(f"{path}: pre-tokenizer {pre!r} is not a split picochat uses "
                            f"({', '.join(patterns)})")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    T = require_gguf().TokenType
    ranks, special = {}, {}
    for i, (text, kind) in enumerate(zip(tokens, types)):
        if kind == T.NORMAL:
            try:
                ranks[str_to_token(text)] = i
            except KeyError:
                raise PicochatError(f"{path}: token {i} ({text!r}) is not in byte-level form") from None
        elif kind == T.CONTROL:
            special[text] = i
        elif kind != T.UNUSED:
            raise PicochatError(f"{path}: token {i} ({text!r}) has type {kind}; picochat imports "
                                "normal, control and unused tokens only")
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges") or []]
    check_merge_order(merges, {t: i for i, t in enumerate(tokens)}, str(path))
    tokenizer = Tokenizer(ranks, patterns[pre], special)
    check_tokenizer(tokenizer, vocab_size, str(path))
    return tokenizer


def gguf_model(reader, config, path: Path):
    from gguf.quants import dequantize

    from picochat.export.gguf import hf_to_gguf_names, unpermute_qk
    from picochat.model import Llama

    names = {gg: hf for hf, gg in hf_to_gguf_names(config.n_layers).items()}
    state = {}
    for t in reader.tensors:
        hf = names.get(t.name)
        if hf is None:
            if t.name.startswith("rope_"):
                continue  # precomputed rotary tables some converters add
            raise PicochatError(f"{path}: unexpected tensor {t.name}; not a plain llama model")
        try:
            w = dequantize(t.data, t.tensor_type)
        except NotImplementedError as e:
            raise PicochatError(f"{path}: cannot dequantize {t.name} ({t.tensor_type.name})") from e
        w = np.asarray(w, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
        if hf.endswith("q_proj.weight"):
            w = unpermute_qk(w, config.n_heads)
        elif hf.endswith("k_proj.weight"):
            w = unpermute_qk(w, config.n_kv_heads)
        state[hf] = torch.from_numpy(np.array(w, dtype=np.float32, order="C"))   # a writable copy
    if "lm_head.weight" not in state and "model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()   # tied embeddings
    model = Llama(config)
    expected = set(model.state_dict())
    if set(state) != expected:
        missing = sorted(expected - set(state))
        raise PicochatError(f"{path} lacks tensors {', '.join(missing[:3])}; not a complete llama model")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise PicochatError(f"{path}: tensor shapes do not match its hyperparameters ({e})") from e
    return model
