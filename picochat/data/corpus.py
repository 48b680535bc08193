"""The run's clean corpus as documents, its train/val split, and the tokenizer stage trained on it.

    runs/R/data/clean/*.parquet        documents (id, url, source, lang, text)

A document goes to validation by a hash of its id (the lowest 2% of hashes), so the split does
not depend on document order, and the tokenizer (trained on train documents only) is measured
on text it never saw. Token shards (picochat.data.shards), the tokenizer stage and the held-out
evals all read the split from here.

    picochat tokenizer train --run R [--vocab-size 8192]
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Iterable, Iterator

from picochat.rundir import PicochatError, RunDir
from picochat.tokenizer import Tokenizer

VAL_FRACTION = 0.02


def id_hash(doc_id: str) -> int:
    return int(hashlib.sha1(doc_id.encode()).hexdigest()[:12], 16)


def val_threshold(run: RunDir, fraction: float = VAL_FRACTION) -> int:
    """Documents whose id hash is at most this go to validation: the lowest `fraction` of
    hashes, and at least one document, so even a tiny corpus has a validation split."""
    import pyarrow.parquet as pq

    hashes = []
    for path in clean_files(run):
        try:
            ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        except Exception as e:  # pyarrow raises several types for damaged files
            raise PicochatError(f"{path} is not a readable Parquet file ({e}); rerun "
                                "`picochat data build`") from e
        hashes.extend(id_hash(i) for i in ids)
    if len(hashes) < 2:
        raise PicochatError(f"the corpus in {run.clean} has {len(hashes)} document(s); "
                            "at least 2 are needed (one for validation)")
    hashes.sort()
    return hashes[max(1, round(fraction * len(hashes))) - 1]


def clean_files(run: RunDir) -> list[Path]:
    files = sorted(run.clean.glob("*.parquet"))
    if not files:
        raise PicochatError(f"no clean documents in {run.clean}; run "
                            f"`picochat data build --run {run.path}` first")
    return files


def iter_documents(run: RunDir, split: str | None = None, batch_size: int = 512) -> Iterator[dict]:
    """Clean documents as dicts (id, url, source, lang, text, split)."""
    import pyarrow.parquet as pq

    threshold = val_threshold(run)
    for path in clean_files(run):
        table = pq.ParquetFile(path)
        for batch in table.iter_batches(batch_size=batch_size, columns=["id", "url", "source", "lang", "text"]):
            for doc in batch.to_pylist():
                doc["split"] = "val" if id_hash(doc["id"]) <= threshold else "train"
                if split is None or split == doc["split"]:
                    yield doc


# --- the tokenizer stage ----------------------------------------------------------------------
def train_run_tokenizer(run: RunDir, vocab_size: int, max_chars: int = 2_000_000_000) -> tuple[Tokenizer, float]:
    """Train on the run's train documents (at most `max_chars`), save it in run.tokenizer and
    record the stage; returns the tokenizer and the seconds it took."""
    started = time.time()
    texts = iter_chars((d["text"] for d in iter_documents(run, "train")), max_chars)
    tokenizer = Tokenizer.train(texts, vocab_size)
    tokenizer.save(run.tokenizer)
    seconds = time.time() - started
    run.record_stage("tokenizer", status="done", vocab_size=tokenizer.vocab_size, seconds=round(seconds, 2))
    return tokenizer, seconds


def iter_chars(texts: Iterable[str], max_chars: int) -> Iterator[str]:
    """Stop a text stream after `max_chars` characters (tokenizer training budget)."""
    seen = 0
    for text in texts:
        if seen >= max_chars:
            return
        yield text[: max_chars - seen]
        seen += len(text)
