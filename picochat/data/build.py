"""Build the run's clean corpus: documents from a source -> Parquet shards of plain text.

    picochat data build --run R [--source shakespeare|local:PATH]

Plain-text documents pass through with whitespace normalised; documents with no text are
counted and dropped. Output: runs/R/data/clean/part-NNNNN.parquet (id, url, source, lang, text)
and runs/R/data/stats.json.
"""

from __future__ import annotations

import time

from picochat.data.sources import DEFAULT_SOURCE, open_source
from picochat.rundir import PicochatError, RunDir, atomic_dir, atomic_write_json

DOCS_PER_SHARD = 10_000


def build_corpus(run: RunDir, source: str = DEFAULT_SOURCE) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = open_source(source)
    if not src.available():
        raise PicochatError(f"source {src.name} is not installed; install it with: {src.install_hint}")
    started = time.time()
    stats = {"source": src.name, "documents_in": 0, "documents_out": 0, "bytes_in": 0,
             "bytes_out": 0, "removed": {}}
    rows: list[dict] = []
    with atomic_dir(run.clean) as out:
        shard = 0
        for doc in src.documents():
            raw = doc.content if isinstance(doc.content, str) else doc.content.decode("utf-8", "replace")
            stats["documents_in"] += 1
            stats["bytes_in"] += len(raw.encode("utf-8"))
            text = raw.replace("\r\n", "\n").strip()
            if doc.content_type != "text/plain" or not text:
                reason = "not plain text" if text else "empty"
                stats["removed"][reason] = stats["removed"].get(reason, 0) + 1
                continue
            rows.append({"id": doc.id, "url": doc.url, "source": doc.source, "lang": "", "text": text})
            stats["documents_out"] += 1
            stats["bytes_out"] += len(text.encode("utf-8"))
            if len(rows) == DOCS_PER_SHARD:
                pq.write_table(pa.Table.from_pylist(rows), out / f"part-{shard:05d}.parquet")
                rows, shard = [], shard + 1
        if rows:
            pq.write_table(pa.Table.from_pylist(rows), out / f"part-{shard:05d}.parquet")
    if stats["documents_out"] == 0:
        raise PicochatError(f"source {src.name} gave no documents with text; nothing to train on")
    stats["seconds"] = round(time.time() - started, 2)
    atomic_write_json(run.data / "stats.json", stats)
    run.record_stage("data", source=src.name, status="done", documents=stats["documents_out"])
    return stats
