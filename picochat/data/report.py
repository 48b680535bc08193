"""The data report: what each cleaning step kept and removed, with examples and plots.

    picochat data report --run R   ->  runs/R/data/report.md, runs/R/data/plots/*.png

Made from runs/R/data/stats.json and the removed-document samples under data/work/removed/.
"""

from __future__ import annotations

import json
from pathlib import Path

from picochat.rundir import PicochatError, RunDir, atomic_write_text

MB = 1_000_000


def load_stats(run: RunDir) -> dict:
    path = run.data / "stats.json"
    if not path.exists():
        raise PicochatError(f"no data stats at {path}; run `picochat data build --run {run.path}` first")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise PicochatError(f"{path} is not valid JSON ({e}); rerun `picochat data build`") from e


def samples(run: RunDir, step: str, limit: int = 3) -> dict[str, list[dict]]:
    """Removed-document examples of one step: reason -> [{url, source, text}, ...]."""
    out: dict[str, list[dict]] = {}
    for path in sorted((run.data / "work" / "removed" / step).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            meta = d.get("metadata", {})
            reason = meta.get("reason", "?")
            if len(out.setdefault(reason, [])) < limit:
                out[reason].append({"url": meta.get("url"), "source": meta.get("source"), "text": d.get("text", "")})
    return out


def step_table(stats: dict) -> str:
    lines = ["| step | docs in | docs out | kept | MB in | MB out | seconds | MB/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in stats["steps"]:
        kept = s["documents_out"] / s["documents_in"] if s["documents_in"] else 0
        rate = s["bytes_in"] / MB / s["seconds"] if s["seconds"] > 0 else 0
        lines.append(f"| {s['step']} | {s['documents_in']:,} | {s['documents_out']:,} | {kept:.1%} | "
                     f"{s['bytes_in'] / MB:.1f} | {s['bytes_out'] / MB:.1f} | {s['seconds']:.1f} | "
                     f"{rate:.2f} |" if s["seconds"] > 0 else
                     f"| {s['step']} | {s['documents_in']:,} | {s['documents_out']:,} | {kept:.1%} | "
                     f"{s['bytes_in'] / MB:.1f} | {s['bytes_out'] / MB:.1f} | - | - |")
    return "\n".join(lines)


def plots(run: RunDir, stats: dict) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder = run.data / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    meters = stats.get("meters", {})
    fig, ax = plt.subplots(figsize=(7, 4))
    for point, label in (("extract", "after text extraction"), ("decontamination", "kept (final)")):
        hist = meters.get(point, {}).get("length_hist", {})
        if hist:
            xs = sorted(int(k) for k in hist)
            ax.bar([x + (0.4 if point != "extract" else 0) for x in xs], [hist[str(x)] for x in xs],
                   width=0.4, label=label)
    ax.set_xlabel("document length, log2(bytes)")
    ax.set_ylabel("documents")
    ax.set_title("Document length before and after cleaning")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "lengths.png", dpi=100)
    plt.close(fig)
    made.append("plots/lengths.png")

    detected = next((s.get("detected", {}) for s in stats["steps"] if s["step"] == "language ID"), {})
    kept = meters.get("decontamination", {}).get("languages", {})
    if detected:
        top = sorted(detected, key=detected.get, reverse=True)[:15]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar([i - 0.2 for i in range(len(top))], [detected[k] for k in top], width=0.4, label="detected")
        ax.bar([i + 0.2 for i in range(len(top))], [kept.get(k, 0) for k in top], width=0.4, label="kept")
        ax.set_xticks(range(len(top)), top)
        ax.set_ylabel("documents")
        ax.set_title("Languages: detected vs kept")
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / "languages.png", dpi=100)
        plt.close(fig)
        made.append("plots/languages.png")
    return made


def _quote(text: str, n: int = 400) -> str:
    t = " ".join(text.split())
    return (t[:n] + " …") if len(t) > n else t


def write_report(run: RunDir) -> Path:
    stats = load_stats(run)
    out = [f"# Data report: {stats['source']}", "",
           f"{stats['documents_in']:,} documents ({stats['bytes_in'] / MB:.1f} MB) in, "
           f"{stats['documents_out']:,} documents ({stats['bytes_out'] / MB:.1f} MB) out, "
           f"in {stats.get('seconds', 0):.0f} s ({stats.get('mb_per_s', 0):.2f} MB/s) with "
           f"{stats.get('workers')} workers / {stats.get('tasks')} tasks; languages kept: "
           f"{', '.join(stats.get('langs') or ['all'])}.", "",
           "## Steps", "", step_table(stats), "",
           "Seconds: time inside each step, summed over tasks (so over workers); MB/s: MB in per such second.", ""]
    if stats.get("input_problems"):
        out += ["## Inputs skipped", "", "| reason | documents |", "|---|---:|"]
        out += [f"| {k} | {v:,} |" for k, v in sorted(stats["input_problems"].items(), key=lambda kv: -kv[1])]
        out.append("")
    read_notes = stats["steps"][0].get("notes") or {}
    if read_notes:
        out += ["Counted and kept: " + "; ".join(f"{k}: {v:,}" for k, v in read_notes.items()), ""]
    folders = {"url filter": "url", "language ID": "language", "quality": "quality", "MinHash dedup": "dedup",
               "decontamination": "decontamination"}
    for s in stats["steps"][1:]:
        out += [f"## {s['step']}", ""]
        if s["removed"]:
            out += ["| reason | documents |", "|---|---:|"]
            out += [f"| {k} | {v:,} |" for k, v in sorted(s["removed"].items(), key=lambda kv: -kv[1])[:25]]
            out.append("")
        else:
            out += ["Nothing removed.", ""]
        if s.get("replaced"):
            out += ["Replaced: " + ", ".join(f"{k} {v:,}" for k, v in sorted(s["replaced"].items())) +
                    f" (in {s.get('documents_changed', 0):,} documents)", ""]
        if s["step"] == "decontamination":
            info = stats.get("decontamination", {})
            out += [f"Evaluation sets: {info.get('eval_sets', 'none')}; {info.get('ngrams', 0):,} "
                    f"{info.get('n', '')}-grams from {info.get('items', 0):,} items "
                    f"({info.get('items_shorter_than_n', 0):,} too short to check).", ""]
        if s["step"] in folders:
            examples = samples(run, folders[s["step"]])
            if examples:
                out += ["Examples of what was removed:", ""]
                for reason, docs in sorted(examples.items()):
                    for d in docs[:2]:
                        out.append(f"- *{reason}* — {d['url']}: “{_quote(d['text'])}”")
                out.append("")
    kept = stats.get("meters", {}).get("decontamination", {})
    if kept.get("sources"):
        out += ["## Kept, by source", "", "| source | documents | MB |", "|---|---:|---:|"]
        out += [f"| {k} | {v:,} | {kept['source_bytes'].get(k, 0) / MB:.1f} |"
                for k, v in sorted(kept["sources"].items(), key=lambda kv: -kv[1])]
        out.append("")
    for p in plots(run, stats):
        out += [f"![{Path(p).stem}]({p})", ""]
    path = run.data / "report.md"
    atomic_write_text(path, "\n".join(out))
    return path
