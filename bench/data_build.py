"""Time `picochat data build` end to end and per step.

    python bench/data_build.py [--source offline-web] [--workers 2] [--keep DIR]

Prints MB in/out, seconds and MB/s per step, the whole build's MB/s and CPU time, and the ratio
to the baseline measured in shared/OFFLINE_DATA.md for the same kind of pipeline with datatrove
(trafilatura -> lid.176 -> Gopher -> C4 -> FineWeb -> PII -> MinHash): 0.40 MB/s on 2 workers.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
from pathlib import Path

BASELINE_MB_S = 0.40


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", default="offline-web")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--langs", default="en")
    ap.add_argument("--keep", help="build into this run folder (kept) instead of a temporary one")
    a = ap.parse_args()

    from picochat.data.build import BuildConfig, build_corpus
    from picochat.data.report import step_table
    from picochat.rundir import RunDir

    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="picochat-bench-"))
    try:
        run = RunDir(root / "run" if not a.keep else root)
        stats = build_corpus(run, a.source, BuildConfig(workers=a.workers, langs=a.langs.split(",")))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        cpu = children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime
        print(step_table(stats))
        print(f"{a.source}: {stats['bytes_in'] / 1e6:.1f} MB in -> {stats['bytes_out'] / 1e6:.1f} MB out, "
              f"{stats['documents_in']:,} -> {stats['documents_out']:,} documents")
        print(f"wall {stats['seconds']:.0f} s, {stats['mb_per_s']:.3f} MB/s with {a.workers} workers "
              f"(x{stats['mb_per_s'] / BASELINE_MB_S:.2f} the {BASELINE_MB_S} MB/s baseline); CPU {cpu:.0f} s")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
