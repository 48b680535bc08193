"""Build the run's clean corpus the FineWeb way: documents from a source -> clean Parquet shards.

    picochat data build --run R [--source offline-web|local:PATH|warc:PATH|hf:NAME] [--langs en] [--workers N]

Steps, in order (each one's documents and bytes in/out, time, and removal reasons with examples
land in stats.json and report.md):

    read -> URL filter -> extract text -> language ID -> quality -> PII scrub
         -> MinHash near-duplicate removal -> decontamination -> clean/part-NNNNN.parquet

It runs as four datatrove jobs on its LocalPipelineExecutor (`--workers` processes, `tasks`
shards): A) read..PII, writing each task's survivors and their MinHash signatures; B) MinHash
buckets; C) duplicate clusters; D) MinHash filter + decontamination -> Parquet. Every job
records finished tasks under data/work/logs/, so a killed build restarts where it stopped and
finished shards are not redone; a build with different settings starts over. The finished
shards replace data/clean/ in one rename, so `picochat data tokenize` never reads half a corpus.

Outputs: runs/R/data/clean/part-NNNNN.parquet (id, url, source, lang, text), stats.json,
report.md + plots/ (picochat.data.report), work/ (intermediate, safe to delete when done).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from picochat.data.sources import DEFAULT_SOURCE, OfflineWebSource, open_source
from picochat.rundir import PicochatError, RunDir, atomic_dir, atomic_write_json

MB = 1_000_000


@dataclass
class BuildConfig:
    source: str = DEFAULT_SOURCE
    langs: list[str] = field(default_factory=lambda: ["en"])  # empty: keep every language
    lang_threshold: float = 0.65
    workers: int = 2
    tasks: int = 0  # 0: 2 x workers (at least 2); fixed for the life of a build
    extractor: str = "resiliparse"  # or "trafilatura" (better main-content, ~30x slower)
    max_doc_bytes: int = 10 * MB
    blocklists: list[str] = field(default_factory=list)  # extra files: one domain or host/path per line
    default_blocklists: bool = True
    decontaminate: str = "auto"  # auto | bigbench | none | path to a file of evaluation texts
    decontam_n: int = 13
    minhash_buckets: int = 14
    minhash_hashes_per_bucket: int = 8
    minhash_ngrams: int = 5
    samples_per_reason: int = 5
    limit: int = -1  # documents per task, for quick looks (-1: all)

    def fingerprint(self) -> str:
        d = dataclasses.asdict(self)
        d.pop("workers")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def build_corpus(run: RunDir, source: str = DEFAULT_SOURCE, config: BuildConfig | None = None,
                 progress: bool = True, **overrides) -> dict:
    """Run the pipeline for `source` into run.clean; returns the stats (also in stats.json)."""
    cfg = dataclasses.replace(config or BuildConfig(), source=source, **overrides)
    cfg.tasks = cfg.tasks or max(2, 2 * cfg.workers)
    src = open_source(cfg.source)
    if not src.available():
        raise PicochatError(f"source {src.name} is not installed; install it with: {src.install_hint}")
    if isinstance(src, OfflineWebSource):
        for part in src.missing():
            print(f"offline-web: {part.name} is not installed and will be skipped; install it with: "
                  f"{part.install_hint}", file=sys.stderr)
    for path in cfg.blocklists:
        if not Path(path).exists():
            raise PicochatError(f"blocklist {path} does not exist")

    work = run.data / "work"
    fp = cfg.fingerprint()
    cfg_file = work / "config.json"
    if cfg_file.exists():
        try:
            old = json.loads(cfg_file.read_text()).get("fingerprint")
        except (OSError, ValueError):
            old = None
        if old != fp:
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    resumed = (work / "logs").exists()
    atomic_write_json(cfg_file, {"fingerprint": fp, "config": dataclasses.asdict(cfg)})
    run.record_stage("data", source=cfg.source, status="running", config=dataclasses.asdict(cfg))

    started = time.time()
    timings = {}
    decontam_info = {"eval_sets": "none"}
    ngram_file = work / "decontam_ngrams.txt.gz"
    if cfg.decontaminate != "none":
        info_file = work / "decontam.json"
        if not info_file.exists():
            t = time.time()
            decontam_info = build_ngram_file_for(cfg, ngram_file)
            decontam_info["seconds"] = round(time.time() - t, 2)
            atomic_write_json(info_file, decontam_info)
        decontam_info = json.loads(info_file.read_text())

    executors = make_executors(cfg, work, ngram_file if decontam_info.get("ngrams") else None)
    if executors["filter"].get_incomplete_ranks():
        from picochat.data.steps import load_blocklist

        for step in executors["filter"].pipeline:  # load once here; forked workers share it
            for path in getattr(step, "lists", {}).values():
                load_blocklist(Path(path))
    if executors["final"].get_incomplete_ranks() and decontam_info.get("ngrams"):
        from picochat.data.decontam import load_hashes

        load_hashes(str(ngram_file))  # likewise
    _quiet_datatrove(work, progress)
    for i, (name, ex) in enumerate(executors.items()):
        t = time.time()
        todo = len(ex.get_incomplete_ranks())
        if progress:
            print(f"data build [{i + 1}/{len(executors)}] {name}: {todo} of {ex.world_size} tasks to run "
                  f"on {ex.workers} worker(s)" + (" (the rest finished earlier)" if 0 < todo < ex.world_size
                                                   else ""), file=sys.stderr, flush=True)
        ex.run()
        timings[name] = round(time.time() - t, 2)
        if progress:
            print(f"data build [{i + 1}/{len(executors)}] {name}: done in {timings[name]:.1f} s",
                  file=sys.stderr, flush=True)

    final = work / "final"
    outputs = sorted(final.glob("*.parquet")) if final.exists() else []
    with atomic_dir(run.clean) as out:
        for i, path in enumerate(outputs):
            target = out / f"part-{i:05d}.parquet"
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)

    stats = collect_stats(cfg, work, executors)
    stats["seconds"] = round(time.time() - started, 2)
    stats["stage_seconds"] = timings
    stats["resumed"] = resumed
    stats["decontamination"] = decontam_info
    stats["mb_per_s"] = round(stats["bytes_in"] / MB / max(stats["seconds"], 1e-9), 3)
    atomic_write_json(run.data / "stats.json", stats)
    if stats["documents_out"] == 0:
        run.record_stage("data", status="failed", documents=0)
        raise PicochatError(f"source {src.name} gave no documents that passed cleaning; "
                            f"see {run.data / 'stats.json'} for what was removed and why")
    from picochat.data.report import write_report

    write_report(run)
    run.record_stage("data", source=cfg.source, status="done", documents=stats["documents_out"],
                     bytes=stats["bytes_out"], seconds=stats["seconds"])
    return stats


def build_ngram_file_for(cfg: BuildConfig, out: Path) -> dict:
    """The evaluation n-grams for this build. BIG-bench's (13 s to read from the sdist) are
    cached under ~/.cache/picochat/decontam/, keyed by the sdist and n, and linked in."""
    from picochat import bigbench
    from picochat.data.decontam import build_ngram_file
    from picochat.paths import CACHE

    tarball = bigbench.tarball() if cfg.decontaminate in ("auto", "bigbench") else None
    if tarball is None:
        return build_ngram_file(cfg.decontaminate, out, cfg.decontam_n)
    key = hashlib.sha256(f"{tarball.name}:{tarball.stat().st_size}:{cfg.decontam_n}".encode()).hexdigest()[:16]
    cached, info_file = CACHE / "decontam" / f"{key}.txt.gz", CACHE / "decontam" / f"{key}.json"
    if not (cached.exists() and info_file.exists()):
        info = build_ngram_file(cfg.decontaminate, cached, cfg.decontam_n)
        atomic_write_json(info_file, info)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    try:
        os.link(cached, out)
    except OSError:
        shutil.copyfile(cached, out)
    return json.loads(info_file.read_text())


def _quiet_datatrove(work: Path, progress: bool) -> None:
    """datatrove logs every task in detail to stderr; keep that in its log files (under
    data/work/logs/) and show only errors. Tasks run in forked workers, which inherit this."""
    import datatrove.executor.base as base
    from loguru import logger

    original = getattr(base.add_task_logger, "__wrapped__", base.add_task_logger)

    def add_task_logger(logging_dir, rank, local_rank=0, node_rank=-1):
        return original(logging_dir, rank, 1, node_rank)  # local_rank != 0: stderr at ERROR only

    add_task_logger.__wrapped__ = original
    base.add_task_logger = add_task_logger
    logger.remove()
    logger.add(sys.stderr, level="ERROR")


def make_executors(cfg: BuildConfig, work: Path, ngram_file: Path | None) -> dict:
    """The four stages on datatrove's LocalPipelineExecutor (forked worker processes)."""
    from datatrove.executor import LocalPipelineExecutor

    logs = work / "logs"
    workers = max(1, min(cfg.workers, cfg.tasks))
    executors, previous = {}, None
    for name, (steps, tasks) in make_pipelines(cfg, work, ngram_file).items():
        previous = executors[name] = LocalPipelineExecutor(
            steps, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logs / STAGE_LOGS[name]),
            depends=previous, start_method="fork")
    return executors


STAGE_LOGS = {"filter": "a_filter", "minhash_buckets": "b_buckets", "minhash_cluster": "c_cluster",
              "final": "d_final"}


def make_pipelines(cfg: BuildConfig, work: Path, ngram_file: Path | None) -> dict:
    """{stage: (datatrove steps, number of tasks)} for the four stages, in order. Executor-free,
    so the same stages run on SlurmPipelineExecutor or RayPipelineExecutor (docs/data.md)."""
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter)
    from datatrove.pipeline.writers import JsonlWriter, ParquetWriter
    from datatrove.utils.hashing import HashConfig

    from picochat.data.steps import (Decontaminate, Extract, FastWordTokenizer, LanguageID, Meter, PIIScrub,
                                     Quality, RankFileReader, SampleWriter, SourceReader, UrlFilter,
                                     default_blocklists, minhash_signature_step)

    mh = MinhashConfig(n_grams=cfg.minhash_ngrams, num_buckets=cfg.minhash_buckets,
                       hashes_per_bucket=cfg.minhash_hashes_per_bucket,
                       hash_config=HashConfig(precision=64))
    removed = work / "removed"
    lists = default_blocklists() if cfg.default_blocklists else {}
    for path in cfg.blocklists:
        lists[f"user list {Path(path).name}"] = Path(path)

    def samples(step):
        return SampleWriter(str(removed / step), per_reason=cfg.samples_per_reason)

    # MinHash shingles words; datatrove's default word tokenizer (spaCy) made signatures the slowest step
    sig_tok = FastWordTokenizer(cfg.langs[0] if len(cfg.langs) == 1 else "xx")
    a = [
        SourceReader(cfg.source, cfg.max_doc_bytes, cfg.limit),
        Meter("read"),
        UrlFilter(lists, exclusion_writer=samples("url")),
        Meter("url"),
        Extract(cfg.extractor),
        Meter("extract"),
        LanguageID(cfg.langs, cfg.lang_threshold, exclusion_writer=samples("language")),
        Meter("language"),
        Quality(exclusion_writer=samples("quality")),
        Meter("quality"),
        PIIScrub(),
        Meter("pii"),
        JsonlWriter(str(work / "filtered"), output_filename="${rank}.jsonl.gz", compression="gzip"),
        minhash_signature_step(str(work / "minhash" / "signatures"), config=mh, language=sig_tok),
    ]
    b = [
        MinhashDedupBuckets(str(work / "minhash" / "signatures"), str(work / "minhash" / "buckets"), config=mh),
    ]
    c = [
        MinhashDedupCluster(str(work / "minhash" / "buckets"), str(work / "minhash" / "remove_ids"), config=mh),
    ]
    d = [
        RankFileReader(str(work / "filtered")),
        MinhashDedupFilter(str(work / "minhash" / "remove_ids"), exclusion_writer=samples("dedup")),
        Meter("dedup"),
        Decontaminate(str(ngram_file) if ngram_file else None, cfg.decontam_n,
                      exclusion_writer=samples("decontamination")),
        Meter("decontamination"),
        ParquetWriter(str(work / "final"), output_filename="part-${rank}.parquet", adapter=_clean_row),
    ]
    return {"filter": (a, cfg.tasks), "minhash_buckets": (b, mh.num_buckets), "minhash_cluster": (c, 1),
            "final": (d, cfg.tasks)}


def _clean_row(self, doc) -> dict:
    m = doc.metadata
    return {"id": doc.id, "url": m.get("url", ""), "source": m.get("source", ""),
            "lang": m.get("language", ""), "text": doc.text}


# --- statistics ----------------------------------------------------------------------------------
def _merged(logging_dir: Path):
    from datatrove.utils.stats import PipelineStats

    total = PipelineStats()
    for path in sorted((logging_dir / "stats").glob("*.json")):
        total = total + PipelineStats.from_json(json.loads(path.read_text()))
    return total.stats


def _val(stats, key: str) -> float:
    return stats.stats[key].total if key in stats.stats else 0


def _meter(stats) -> dict:
    out = {"documents": int(_val(stats, "documents")), "bytes": int(_val(stats, "bytes")),
           "length_hist": {}, "sources": {}, "source_bytes": {}, "languages": {}}
    for k, v in stats.stats.items():
        if k.startswith("len_"):
            out["length_hist"][k[4:]] = int(v.total)
        elif k.startswith("src_"):
            out["sources"][k[4:]] = int(v.total)
        elif k.startswith("srcbytes_"):
            out["source_bytes"][k[9:]] = int(v.total)
        elif k.startswith("lang_"):
            out["languages"][k[5:]] = int(v.total)
    return out


def _reasons(stats) -> dict:
    return {k.removeprefix("dropped_"): int(v.total) for k, v in stats.stats.items()
            if k.startswith("dropped_")}


def collect_stats(cfg: BuildConfig, work: Path, executors: dict) -> dict:
    logs = work / "logs"
    a = _merged(logs / "a_filter")
    b = _merged(logs / "b_buckets")
    c = _merged(logs / "c_cluster")
    d = _merged(logs / "d_final")
    if not a or not d:
        raise PicochatError(f"the build's task statistics under {logs} are missing; delete {work} and rebuild")
    reader, m_read, urlf, m_url, extract, m_extract, lid, m_lang, qual, m_qual, pii, m_pii, _w, sig = a
    _r, mh_filter, m_dedup, decon, m_decon, _pw = d
    meters = {name: _meter(s) for name, s in [("read", m_read), ("url", m_url), ("extract", m_extract),
                                              ("language", m_lang), ("quality", m_qual), ("pii", m_pii),
                                              ("dedup", m_dedup), ("decontamination", m_decon)]}
    input_problems = _reasons(reader)
    notes = {k.removeprefix("note_"): int(v.total) for k, v in reader.stats.items() if k.startswith("note_")}

    def row(name, before, after, step_stats, seconds=None, extra=None):
        removed = {}
        for s in step_stats:
            removed.update(_reasons(s))
        r = {"step": name, "documents_in": before["documents"], "documents_out": after["documents"],
             "bytes_in": before["bytes"], "bytes_out": after["bytes"],
             "seconds": round(seconds if seconds is not None else sum(s.time_stats.total for s in step_stats), 2),
             "removed": removed}
        if extra:
            r.update(extra)
        return r

    read_in = {"documents": int(_val(reader, "documents")), "bytes": int(_val(reader, "bytes"))}
    steps = [
        row("read", read_in, meters["read"], [reader], seconds=_val(reader, "own_seconds"), extra={"notes": notes}),
        row("url filter", meters["read"], meters["url"], [urlf]),
        row("extract text", meters["url"], meters["extract"], [extract]),
        row("language ID", meters["extract"], meters["language"], [lid],
            extra={"detected": {k.removeprefix("detected_"): int(v.total) for k, v in lid.stats.items()
                                if k.startswith("detected_")}}),
        row("quality", meters["language"], meters["quality"], [qual]),
        row("PII scrub", meters["quality"], meters["pii"], [pii],
            extra={"replaced": {k.removeprefix("replaced_"): int(v.total) for k, v in pii.stats.items()
                                if k.startswith("replaced_")},
                   "documents_changed": int(_val(pii, "documents changed"))}),
        row("MinHash dedup", meters["pii"], meters["dedup"], [*b, *c, mh_filter],
            seconds=sig.time_stats.total - _val(sig, "upstream_seconds") + sum(
                s.time_stats.total for s in [*b, *c, mh_filter])),
        row("decontamination", meters["dedup"], meters["decontamination"], [decon]),
    ]
    steps[6]["removed"] = {"near-duplicate (MinHash)": int(_val(mh_filter, "dropped"))}
    removed_all = {}
    for s in steps:
        for k, v in s["removed"].items():
            removed_all[f"{s['step']}: {k}"] = v
    return {
        "source": cfg.source, "langs": cfg.langs, "workers": cfg.workers, "tasks": cfg.tasks,
        "documents_in": read_in["documents"], "bytes_in": read_in["bytes"],
        "documents_out": meters["decontamination"]["documents"], "bytes_out": meters["decontamination"]["bytes"],
        "steps": steps, "removed": removed_all, "input_problems": input_problems,
        "meters": meters,
    }
