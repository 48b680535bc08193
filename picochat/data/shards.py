"""Token shards: clean documents -> train/val token files the trainer reads.

    runs/R/data/clean/*.parquet        documents (id, url, source, lang, text)
    runs/R/data/tokens/train_000.bin   flat token ids (uint16 when the vocabulary fits, else uint32),
    runs/R/data/tokens/val_000.bin     each document prefixed with <|bos|>
    runs/R/data/tokens/index.json      dtype, vocab size, tokenizer hash, shards and token counts

Which documents are validation is picochat.data.corpus's split (by a hash of the id).

    picochat data tokenize --run R
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from picochat.data.corpus import iter_documents
from picochat.rundir import PicochatError, RunDir, atomic_write_bytes, atomic_write_json
from picochat.tokenizer import Tokenizer

SHARD_TOKENS = 50_000_000  # ~100 MB of uint16 per shard


def tokenize_corpus(run: RunDir, threads: int = 2, progress: bool = True) -> dict:
    """Encode every clean document into train/val shards; returns the index."""
    from tqdm import tqdm

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
