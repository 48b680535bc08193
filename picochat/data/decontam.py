"""Decontamination: find the evaluation sets' word n-grams in training documents.

The evaluation texts come from BIG-bench's task.json files (picochat.bigbench's DECONTAMINATED
tasks, read straight from the sdist in the cache), or from a file you name: .txt (one text per
line), .jsonl / .json (every string value). Texts are lower-cased and split into words; every
`n`-word window (13 by default, as in GPT-3's decontamination) goes into a set, and a training
document sharing any window with it is dropped. Evaluation items shorter than `n` words are
too short to match this way and are counted as skipped.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Iterator

from picochat import bigbench
from picochat.rundir import PicochatError

WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterator[str]:
    w = words(text)
    for i in range(len(w) - n + 1):
        yield " ".join(w[i:i + n])


def doc_ngram_hashes(text: str, n: int) -> Iterator[str]:
    """The document's n-grams, as the strings stored in the set (name kept for the block)."""
    return ngrams(text, n)


def file_texts(path: Path) -> Iterator[str]:
    if not path.exists():
        raise PicochatError(f"decontamination file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        if ".jsonl" in path.suffixes:
            for line in f:
                if line.strip():
                    yield from bigbench.strings_in(json.loads(line))
        elif ".json" in path.suffixes:
            yield from bigbench.strings_in(json.load(f))
        else:
            yield from (line for line in f if line.strip())


def eval_texts(spec: str) -> tuple[str, Iterator[str]]:
    """("what", texts) for a spec: "auto" (BIG-bench if cached, else nothing), "bigbench",
    "none", or a file path."""
    if spec == "none":
        return "none", iter(())
    if spec in ("auto", "bigbench"):
        if bigbench.tarball() is None:
            if spec == "bigbench":
                raise PicochatError(f"BIG-bench is not in the cache; install it with: {bigbench.FETCH_HINT}")
            return "none (BIG-bench sdist not cached)", iter(())
        return f"BIG-bench tasks: {', '.join(bigbench.DECONTAMINATED)}", bigbench.example_texts()
    return str(spec), file_texts(Path(spec).expanduser())


def build_ngram_file(spec: str, out: Path, n: int = 13) -> dict:
    """Collect the n-grams of the evaluation texts into `out` (gzip, one per line)."""
    what, texts = eval_texts(spec)
    grams: set[str] = set()
    items = short = 0
    for t in texts:
        items += 1
        w = words(t)
        if len(w) < n:
            short += 1
            continue
        grams.update(" ".join(w[i:i + n]) for i in range(len(w) - n + 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for g in sorted(grams):
            f.write(g + "\n")
    tmp.replace(out)
    return {"eval_sets": what, "items": items, "items_shorter_than_n": short, "ngrams": len(grams), "n": n}


_LOADED: dict = {}


def load_hashes(path: str) -> set[str]:
    """The n-gram set of a file, cached per process (forked workers inherit the parent's)."""
    p = Path(path)
    key = (str(p), p.stat().st_mtime_ns)
    if key not in _LOADED:
        with gzip.open(p, "rt", encoding="utf-8") as f:
            _LOADED[key] = set(f.read().splitlines())
    return _LOADED[key]
