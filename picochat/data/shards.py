"""Token shards: clean documents -> train/val token files the trainer reads.

    runs/R/data/clean/*.parquet        documents (id, url, source, lang, text)
    runs/R/data/tokens/train_000.bin   flat token ids (uint16 when the vocabulary fits, else uint32),
    runs/R/data/tokens/val_000.bin     each document prefixed with <|bos|>
    runs/R/data/tokens/index.json      dtype, vocab size, tokenizer hash, shards and token counts

A document goes to validation by a hash of its id (the lowest 2% of hashes), so the split does
not depend on document order, and the tokenizer (trained on train documents only) is measured on text it never saw.

    picochat data tokenize --run R
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from picochat.rundir import PicochatError, RunDir, atomic_write_bytes, atomic_write_json

SHARD_TOKENS = 50_000_000  # ~100 MB of uint16 per shard
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


def tokenize_corpus(run: RunDir, threads: int = 2, progress: bool = True) -> dict:
    """Encode every clean document into train/val shards; returns the index."""
    from tqdm import tqdm

    from picochat.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(run.tokenizer)
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    tok_hash = hashlib.sha256((run.tokenizer / "tokenizer.json").read_bytes()).hexdigest()[:16]
    run.tokens.mkdir(parents=True, exist_ok=True)
    index = {"dtype": np.dtype(dtype).name, "vocab_size": tokenizer.vocab_size,
             "tokenizer_sha256": tok_hash, "bos_id": tokenizer.bos_id, "shards": []}
    writers = {s: ShardWriter(run.tokens, s, dtype, index) for s in ("train", "val")}
    totals = {"train": 0, "val": 0}
    bar = tqdm(desc="tokenize", unit="doc", disable=not progress)
    batch: list[dict] = []
    for doc in iter_documents(run):
        batch.append(doc)
        if len(batch) == 256:
            _encode_batch(tokenizer, batch, writers, totals, threads)
            bar.update(len(batch))
            batch = []
    _encode_batch(tokenizer, batch, writers, totals, threads)
    bar.update(len(batch))
    bar.close()
    for w in writers.values():
        w.close()
    if totals["train"] == 0 or totals["val"] == 0:
        raise PicochatError(f"the corpus in {run.clean} has no text to train on "
                            f"({totals['train']} train / {totals['val']} val tokens); "
                            "check the source and `picochat data report`")
    index["tokens"] = totals
    atomic_write_json(run.tokens / "index.json", index)
    return index


def _encode_batch(tokenizer, docs: list[dict], writers: dict, totals: dict, threads: int) -> None:
    if not docs:
        return
    texts = [d["text"] for d in docs]
    for doc, ids in zip(docs, tokenizer.encode_batch(texts, bos=True, threads=threads)):
        writers[doc["split"]].write(ids)
        totals[doc["split"]] += len(ids)


class ShardWriter:
    """Appends token ids to <split>_NNN.bin files of at most SHARD_TOKENS tokens each."""

    def __init__(self, folder: Path, split: str, dtype, index: dict):
        self.folder, self.split, self.dtype, self.index = folder, split, dtype, index
        self.buffer: list[np.ndarray] = []
        self.count = 0
        self.shard = 0

    def write(self, ids: list[int]) -> None:
        self.buffer.append(np.asarray(ids, dtype=self.dtype))
        self.count += len(ids)
        if self.count >= SHARD_TOKENS:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        data = np.concatenate(self.buffer)
        name = f"{self.split}_{self.shard:03d}.bin"
        atomic_write_bytes(self.folder / name, data.tobytes())
        self.index["shards"].append({"split": self.split, "file": name, "tokens": int(len(data)),
                                     "sha256": hashlib.sha256(data.tobytes()).hexdigest()[:16]})
        self.buffer, self.count = [], 0
        self.shard += 1

    def close(self) -> None:
        self.flush()


class TokenShards:
    """Memory-mapped token shards of one split, read as one flat array."""

    def __init__(self, folder: Path, split: str):
        index_path = Path(folder) / "index.json"
        if not index_path.exists():
            raise PicochatError(f"no token shards at {folder}; run `picochat data tokenize` first")
        self.index = json.loads(index_path.read_text())
        dtype = np.dtype(self.index["dtype"])
        arrays = []
        for shard in self.index["shards"]:
            if shard["split"] != split:
                continue
            path = Path(folder) / shard["file"]
            if not path.exists() or path.stat().st_size != shard["tokens"] * dtype.itemsize:
                raise PicochatError(f"token shard {path} is missing or has the wrong size; "
                                    "rerun `picochat data tokenize`")
            arrays.append(np.memmap(path, dtype=dtype, mode="r"))
        if not arrays:
            raise PicochatError(f"no {split} shards in {index_path}; rerun `picochat data tokenize`")
        self.tokens = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        self.vocab_size = self.index["vocab_size"]

    def __len__(self) -> int:
        return len(self.tokens)
