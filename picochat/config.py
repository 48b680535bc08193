"""Configuration: dataclasses with defaults, and named presets.

A preset names a model shape and a training recipe. The CLI maps flags onto these; nothing is
configured any other way (no globals, no exec'd config files).

    picochat presets
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from picochat.model import ModelConfig
from picochat.rundir import PicochatError


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 8            # sequences per micro-batch, per process
    grad_accum: int = 1            # micro-batches per optimizer step
    seq_len: int = 256
    lr: float = 3e-3
    min_lr_frac: float = 0.1       # final LR as a fraction of lr
    warmup_steps: int = 50
    schedule: str = "cosine"       # "cosine" or "wsd" (warmup-stable-decay)
    decay_frac: float = 0.2        # wsd: the last fraction of steps decays linearly
    optimizer: str = "adamw"       # "adamw", or "muon" for the hidden matrices (picochat.train.optim)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    dtype: str = "auto"            # "auto" (bf16 where the hardware has it), "bf16", "fp32"
    compile: bool = False          # torch.compile the model
    device: str = "auto"           # "auto", "cpu", "cuda", "mps"
    seed: int = 1337
    eval_every: int = 100          # steps between validation passes (0: only at the end)
    eval_tokens: int = 65_536      # validation tokens per pass
    ckpt_every: int = 100          # steps between checkpoints (0: none until the end)
    keep_checkpoints: int = 2
    log_every: int = 10

    def __post_init__(self):
        if self.schedule not in ("cosine", "wsd"):
            raise PicochatError(f"schedule must be cosine or wsd, not {self.schedule!r}")
        if self.optimizer not in ("adamw", "muon"):
            raise PicochatError(f"optimizer must be adamw or muon, not {self.optimizer!r}")


@dataclass
class Preset:
    name: str
    description: str
    model: ModelConfig
    train: TrainConfig
    vocab_size: int = 8192         # tokenizer size this preset expects
    sft: TrainConfig | None = None  # fine-tuning recipe (picochat sft); None: derived from train
    mid: TrainConfig | None = None  # mid-training recipe (picochat midtrain); None: derived from train
    reward: TrainConfig | None = None  # reward-model recipe (picochat reward); None: derived from sft
    dpo: TrainConfig | None = None  # preference tuning (picochat dpo); None: derived from sft
    rl: TrainConfig | None = None  # RL with verifiable rewards (picochat rl); None: derived from sft
    # The share of each mid-training batch that is web text (the rest: conversations)
    mid_text_fraction: float = 0.5
    # Seconds of one pretraining step on the machine its step counts were sized for: the speedrun
    # shortens every stage on a slower machine so the main job keeps its time (0: never).
    sized_for_step_seconds: float = 0.0


def _presets() -> dict[str, Preset]:
    return {p.name: p for p in [
        Preset("micro", "seconds: 2 layers x 64 dim, context 64 (smoke tests)",
               ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64),
               TrainConfig(max_steps=20, batch_size=4, seq_len=64, lr=3e-3, warmup_steps=2,
                           eval_every=10, ckpt_every=10, eval_tokens=4096, log_every=1),
               vocab_size=512,
               sft=TrainConfig(max_steps=20, batch_size=4, seq_len=64, lr=1e-3, warmup_steps=2,
                               eval_every=10, ckpt_every=10, log_every=1)),
        Preset("cpu-tiny", "minutes on a 2-core laptop: 4 layers x 256 dim, context 256",
               ModelConfig(dim=256, n_layers=4, n_heads=4, n_kv_heads=2, max_seq_len=256),
               TrainConfig(max_steps=300, batch_size=16, seq_len=256, lr=1e-2, optimizer="muon",
                           warmup_steps=10, eval_every=0, ckpt_every=100),
               sft=TrainConfig(max_steps=300, batch_size=8, seq_len=256, lr=1e-3, optimizer="muon",
                               warmup_steps=5, eval_every=0, ckpt_every=40),
               mid=TrainConfig(max_steps=1200, batch_size=16, seq_len=256, lr=8e-3, optimizer="muon",
                               warmup_steps=10, eval_every=0, ckpt_every=100),
               # a step time that fits the whole chain in 30 minutes on the slowest 2-core machine
               # seen (fp32 only, fastest step 1.04 s: there 0.36 made it 32 minutes, since
               # mid-training's floor of conversation rows does not shrink with the step scale)
               sized_for_step_seconds=0.27),
        Preset("cpu-small", "about an hour on 2 cores: 6 layers x 384 dim, context 256",
               ModelConfig(dim=384, n_layers=6, n_heads=6, n_kv_heads=3, max_seq_len=256),
               TrainConfig(max_steps=2500, batch_size=16, seq_len=256, lr=8e-3, optimizer="muon",
                           warmup_steps=100, eval_every=500, ckpt_every=250),
               # mid-training sized by conversations seen (8 rows a step: 8,000, above what cpu-tiny's
               # skills needed, speedrun.MIN_MID_CONVERSATION_ROWS), its rate in cpu-tiny's ratio to
               # pretraining's; not yet measured at this size
               mid=TrainConfig(max_steps=1000, batch_size=16, seq_len=256, lr=6.4e-3, optimizer="muon",
                               warmup_steps=10, eval_every=0, ckpt_every=100)),
        Preset("gpu-small", "one GPU, ~20 minutes: 12 layers x 768 dim, context 1024",
               ModelConfig(dim=768, n_layers=12, n_heads=12, n_kv_heads=4, max_seq_len=1024),
               TrainConfig(max_steps=5000, batch_size=32, seq_len=1024, lr=1.5e-3, warmup_steps=200,
                           compile=True, eval_every=500, ckpt_every=500, eval_tokens=524_288),
               vocab_size=32768),
        Preset("gpt2", "GPT-2 small class (124M) for one GPU: 12 x 768, context 1024, 0.5M-token batches",
               ModelConfig(dim=768, n_layers=12, n_heads=12, n_kv_heads=12, max_seq_len=1024),
               TrainConfig(max_steps=19000, batch_size=32, grad_accum=16, seq_len=1024, lr=6e-4,
                           warmup_steps=700, compile=True, eval_every=1000, ckpt_every=1000,
                           eval_tokens=1_048_576),
               vocab_size=50304),
    ]}


PRESETS = _presets()


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise PicochatError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)} "
                            "(`picochat presets` describes them)")
    p = PRESETS[name]
    return replace(p, model=replace(p.model), train=replace(p.train),
                   **{stage: replace(getattr(p, stage)) if getattr(p, stage) else None
                      for stage in ("sft", "mid", "reward", "dpo", "rl")})


def parse_settings(obj, settings: list[str]) -> dict:
    """`key=value` strings -> typed overrides for the fields of config dataclass `obj`."""
    types = {f.name: type(getattr(obj, f.name)) for f in fields(obj)}
    out = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types:
            raise PicochatError(f"bad setting {item!r}: expected key=value with key one of "
                                f"{', '.join(sorted(types))}")
        kind = types[key]
        try:
            out[key] = (value.lower() in ("1", "true", "yes", "on")) if kind is bool else kind(value)
        except ValueError as e:
            raise PicochatError(f"bad value for {key}: {value!r} is not a {kind.__name__}") from e
    return out


def override(obj, **values):
    """A copy of a config dataclass with the given (non-None) fields replaced."""
    names = {f.name for f in fields(obj)}
    unknown = set(values) - names
    if unknown:
        raise PicochatError(f"unknown setting(s) {sorted(unknown)} for {type(obj).__name__}")
    return replace(obj, **{k: v for k, v in values.items() if v is not None})
