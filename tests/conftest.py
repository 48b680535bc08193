"""Shared fixtures: a small real corpus and a run directory prepared up to token shards.

Everything is real (the tokenizer is trained, shards are written, models train); only the size
is small so the whole suite stays within a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import os

# Test models are tiny: one thread per process is faster than two (threads only add
# synchronisation), and far faster when other work shares the cores. Set before torch loads,
# so subprocesses started by tests (CLI, torchrun, servers) inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import random
import shutil
from pathlib import Path

import pytest

from picochat.cli import main

WORDS = ("the a king queen castle river light dark night morning speaks answers walks sleeps "
         "gold silver sword letter garden window friend enemy brother sister love fear war peace "
         "quickly slowly never always under over through beyond and but or because when while").split()


def write_corpus(folder: Path, n_docs: int = 40, seed: int = 0) -> Path:
    """Deterministic prose-like text files: sentences from a small vocabulary, with numbers,
    punctuation and a few non-ASCII words so every tokenizer path is exercised."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(n_docs):
        sentences = []
        for _ in range(rng.randint(20, 60)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
            if rng.random() < 0.2:
                words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
            if rng.random() < 0.05:
                words.append(rng.choice(["café", "naïve", "Straße", "日本", "🙂"]))
            sentences.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ";"]))
        (folder / f"doc{d:03d}.txt").write_text(" ".join(sentences) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def write_clean(run: Path, corpus: Path) -> None:
    """Put the corpus in the run as clean documents directly: these fixtures serve the
    tokenizer and trainer tests, which must not depend on what the cleaning filters keep."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from picochat.rundir import RunDir

    rows = [{"id": p.stem, "url": p.as_uri(), "source": "test", "lang": "en", "text": p.read_text()}
            for p in sorted(corpus.glob("*.txt"))]
    clean = RunDir(run).clean
    clean.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), clean / "part-00000.parquet")


@pytest.fixture(scope="session")
def prepared_run(tmp_path_factory, corpus) -> Path:
    """A run with clean documents, a 512-token tokenizer and token shards (read-only: copy it)."""
    run = tmp_path_factory.mktemp("runs") / "prepared"
    write_clean(run, corpus)
    assert main(["tokenizer", "train", "--run", str(run), "--vocab-size", "512"]) == 0
    assert main(["data", "tokenize", "--run", str(run)]) == 0
    return run


@pytest.fixture
def fresh_run(prepared_run, tmp_path) -> Path:
    """A private copy of the prepared run, for tests that train or break things."""
    run = tmp_path / "run"
    shutil.copytree(prepared_run, run)
    return run


@pytest.fixture(scope="module")
def run_tokenizer(prepared_run):
    """The prepared run's tokenizer (512 tokens, picochat's special tokens)."""
    from picochat.tokenizer import Tokenizer

    return Tokenizer.load(prepared_run / "tokenizer")
