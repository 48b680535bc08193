"""SFT mixtures: which sources, how much of each, and the built data set.

A mixture file (JSON, see mixtures/default.json) lists sources:

    {"name": "arithmetic", "generator": "arithmetic", "count": 3000, "weight": 1.0}
    {"name": "chatterbot", "source": "chatterbot", "cap": 2000, "weight": 1.0}
    {"name": "sharegpt", "source": "sharegpt", "cap": 3000, "enabled": false, "licence": "..."}

`count` (generators) is how many conversations to make; `cap` (sources) the most distinct
conversations to keep, taken in the source's order after filtering; `weight` how many times each
kept conversation is seen per epoch (fractions take a seeded random subset). A conversation is
kept when it fits the context (truncated to whole turns, see picochat.chat) and shares no
13-word window with the evaluation sets (picochat.data.decontam).

`build_mixture` writes the result into the run, so training (and resuming) reads fixed data:

    runs/R/sft/data/mixture.json   the mixture as used
    runs/R/sft/data/train.jsonl    one {"source", "messages"} per line, weighted and shuffled
    runs/R/sft/data/val.jsonl      held-out conversations (by content hash), never trained on
    runs/R/sft/data/stats.json     per source: read, too long, contaminated, kept, rows
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from picochat import bigbench
from picochat.chat import encode_conversation, normalize
from picochat.data.decontam import eval_texts, ngrams, words
from picochat.rundir import PicochatError, atomic_write_json, atomic_write_text
from picochat.sft_data import generators, sources
from picochat.tokenizer import Tokenizer

MIXTURES_DIR = Path(__file__).resolve().parent.parent.parent / "mixtures"
BIGBENCH_SOURCES = ("natural_instructions", "topical_chat")
SOURCE_NAMES = (*BIGBENCH_SOURCES, "chatterbot", "sharegpt", "jsonl")


@dataclass
class SourceSpec:
    name: str
    generator: str | None = None
    source: str | None = None
    count: int = 0
    cap: int | None = None
    weight: float = 1.0
    enabled: bool = True
    options: dict = field(default_factory=dict)
    licence: str = ""


@dataclass
class Mixture:
    name: str
    sources: list[SourceSpec]
    seed: int = 0
    val_fraction: float = 0.02
    decontaminate: str = "auto"     # auto | bigbench | none | FILE (as `picochat data build`)
    decontam_n: int = 13
    description: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "seed": self.seed,
                "val_fraction": self.val_fraction, "decontaminate": self.decontaminate,
                "decontam_n": self.decontam_n,
                "sources": [{k: v for k, v in vars(s).items() if v not in (None, {}, "")}
                            for s in self.sources]}


def resolve_mixture_path(spec: str | None) -> Path:
    """A mixture file path, or the name of one in mixtures/ ("default", "tiny")."""
    if spec is None:
        spec = "default"
    path = Path(spec).expanduser()
    if path.exists():
        return path
    named = MIXTURES_DIR / f"{spec}.json"
    if named.exists():
        return named
    known = ", ".join(sorted(p.stem for p in MIXTURES_DIR.glob("*.json"))) or "none"
    raise PicochatError(f"no mixture file {spec!r}; pass a path or one of: {known}")


def load_mixture(spec: str | None) -> Mixture:
    path = resolve_mixture_path(spec)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PicochatError(f"mixture {path} is not valid JSON ({e})") from e
    return parse_mixture(raw, default_name=path.stem)


def parse_mixture(raw: dict, default_name: str = "mixture") -> Mixture:
    if not isinstance(raw, dict) or not isinstance(raw.get("sources"), list) or not raw["sources"]:
        raise PicochatError("a mixture is an object with a non-empty \"sources\" list")
    specs = []
    allowed = {f for f in SourceSpec.__dataclass_fields__}
    for i, s in enumerate(raw["sources"]):
        unknown = set(s) - allowed if isinstance(s, dict) else {"<not an object>"}
        if unknown:
            raise PicochatError(f"mixture source {i}: unknown field(s) {sorted(unknown)}; "
                                f"allowed: {', '.join(sorted(allowed))}")
        spec = SourceSpec(**s)
        if (spec.generator is None) == (spec.source is None):
            raise PicochatError(f"mixture source {spec.name!r}: give exactly one of "
                                "\"generator\" or \"source\"")
        if spec.generator is not None and spec.generator not in generators.GENERATORS:
            raise PicochatError(f"mixture source {spec.name!r}: unknown generator {spec.generator!r}; "
                                f"choose from {', '.join(generators.GENERATORS)}")
        if spec.source is not None and spec.source not in SOURCE_NAMES:
            raise PicochatError(f"mixture source {spec.name!r}: unknown source {spec.source!r}; "
                                f"choose from {', '.join(SOURCE_NAMES)}")
        if spec.weight < 0 or spec.count < 0 or (spec.cap is not None and spec.cap < 0):
            raise PicochatError(f"mixture source {spec.name!r}: weight, count and cap must be >= 0")
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise PicochatError(f"mixture source names must be unique: {names}")
    known = {f for f in Mixture.__dataclass_fields__} - {"sources", "name"}
    extra = {k: raw[k] for k in known if k in raw}
    return Mixture(name=raw.get("name", default_name), sources=specs, **extra)


def _conversations(spec: SourceSpec, rng: random.Random, bigbench_tasks: dict, base: Path | None):
    if spec.generator is not None:
        yield from generators.GENERATORS[spec.generator](rng, spec.count)
    elif spec.source == "natural_instructions":
        yield from sources.natural_instructions(bigbench_tasks["natural_instructions"], **spec.options)
    elif spec.source == "topical_chat":
        yield from sources.topical_chat(bigbench_tasks["topical_chat"])
    elif spec.source == "chatterbot":
        yield from sources.chatterbot(**spec.options)
    elif spec.source == "sharegpt":
        yield from sources.sharegpt(**spec.options)
    elif spec.source == "jsonl":
        yield from sources.jsonl(Path(base or ".") / spec.options["path"])


def in_val(messages: list[dict], fraction: float) -> bool:
    digest = hashlib.sha1(json.dumps(messages, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def build_mixture(mixture: Mixture, tokenizer: Tokenizer, max_tokens: int, out: Path,
                  progress: bool = True, base: Path | None = None) -> dict:
    """Make the mixture's conversations and write them under `out` (see the module docstring);
    a "jsonl" source's relative path is read from `base` (the run folder)."""
    started = time.time()
    enabled = [s for s in mixture.sources if s.enabled and s.weight > 0]
    if not enabled:
        raise PicochatError(f"mixture {mixture.name!r} has no enabled source with a weight > 0")
    wanted = {s.source for s in enabled if s.source in BIGBENCH_SOURCES}
    bigbench_tasks, bb_eval = {}, []
    if wanted or mixture.decontaminate == "bigbench" or \
            (mixture.decontaminate == "auto" and bigbench.tarball() is not None):
        if progress:
            print("sft data: reading BIG-bench (instruction sources + evaluation sets)", flush=True)
        bigbench_tasks, bb_eval = sources.read_bigbench(wanted)
    # evaluation n-grams: BIG-bench's from the pass above, or those of a named file
    if mixture.decontaminate in ("auto", "bigbench"):
        decontam_what, texts = (("BIG-bench evaluation tasks", bb_eval) if bb_eval
                                else ("none (BIG-bench sdist not cached)", []))
    else:
        decontam_what, texts = eval_texts(mixture.decontaminate)
    n = mixture.decontam_n
    grams = {g for t in texts if len(words(t)) >= n for g in ngrams(t, n)}

    rng = random.Random(mixture.seed)
    train: list[tuple[str, list[dict]]] = []
    val: list[tuple[str, list[dict]]] = []
    stats: dict = {"mixture": mixture.name, "max_tokens": max_tokens,
                   "decontamination": {"eval_sets": decontam_what, "n": n, "ngrams": len(grams)},
                   "sources": {}}
    for spec in enabled:
        s = {"read": 0, "invalid": 0, "too_long": 0, "contaminated": 0, "kept": 0, "val": 0,
             "weight": spec.weight, "licence": spec.licence or None}
        kept: list[list[dict]] = []
        cap = spec.cap if spec.cap is not None else (spec.count or None)
        source_rng = random.Random(f"{mixture.seed}:{spec.name}")
        for messages in _conversations(spec, source_rng, bigbench_tasks, base):
            if cap is not None and len(kept) + s["val"] >= cap:
                break
            s["read"] += 1
            try:
                messages = normalize(messages)
                rendered = encode_conversation(tokenizer, messages, max_tokens)
            except PicochatError:
                s["invalid"] += 1
                continue
            if rendered is None:
                s["too_long"] += 1
                continue
            messages = messages[:len(rendered.turn_ends)]
            if grams and any(g in grams for g in ngrams(" ".join(m["content"] for m in messages), n)):
                s["contaminated"] += 1
                continue
            if in_val(messages, mixture.val_fraction):
                val.append((spec.name, messages))
                s["val"] += 1
            else:
                kept.append(messages)
        s["kept"] = len(kept)
        # weight: whole copies, plus a seeded random subset for the fraction
        whole, frac = int(spec.weight), spec.weight - int(spec.weight)
        rows = [m for _ in range(whole) for m in kept]
        rows += rng.sample(kept, round(frac * len(kept))) if frac else []
        s["rows"] = len(rows)
        train.extend((spec.name, m) for m in rows)
        stats["sources"][spec.name] = s
        if progress:
            print(f"sft data: {spec.name:22s} kept {s['kept']:6,} (+{s['val']} val) of {s['read']:,} read; "
                  f"{s['too_long']} too long, {s['contaminated']} contaminated, {s['invalid']} invalid "
                  f"-> {s['rows']:,} rows", flush=True)
    if not train:
        raise PicochatError(f"mixture {mixture.name!r} produced no training conversations; check "
                            "that its sources are installed (`picochat data sources`) and fit the context")
    rng.shuffle(train)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("val", val)):
        atomic_write_text(out / f"{name}.jsonl", "".join(
            json.dumps({"source": src, "messages": m}, ensure_ascii=False) + "\n" for src, m in rows))
    stats.update(train_rows=len(train), val_rows=len(val), seconds=round(time.time() - started, 1))
    atomic_write_json(out / "mixture.json", mixture.to_json())
    atomic_write_json(out / "stats.json", stats)
    return stats


def read_rows(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as e:
        raise PicochatError(f"{path} is unreadable ({e}); delete {path.parent} to rebuild the SFT data") from e
