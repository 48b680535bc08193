"""The report card of a run: one markdown page with plots, made from what the stages left behind.

    picochat report --run runs/demo [--price-per-hour 0.09]   ->  runs/demo/report/report.md + *.png

Every input is optional; a section whose input is missing says "not run":

    run.json                       status, wall time and config of each stage, git commit, host
    metrics/<objective>.jsonl      loss, lr, tokens/s, MFU per logged step; val_bpb / val_loss
    base/ sft/ ...                 model directories (config.json gives size and FLOPs per token)
    evals/<stage>.json             benchmark results (`picochat eval`)
    samples/<stage>.json           generations the speedrun stored (else made here, at seed 0)
    data/stats.json, tokens/       what each cleaning step kept; token counts

The folder is written whole into a temporary sibling and renamed into place, so a reader sees
the old report or the new one, never a mix.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from picochat.rundir import STAGES, PicochatError, RunDir, atomic_dir, git_commit, read_json

# Cost assumptions, in dollars per hour of the machine the run used. A CPU run is priced per
# vCPU-hour of an on-demand cloud instance: AWS c7i.large is 2 vCPUs for $0.0893/h in us-east-1,
# about $0.045 per vCPU-hour. A GPU run is priced per GPU at typical on-demand rental rates.
CPU_VCPU_HOUR = 0.045
GPU_HOUR = {"H200": 3.50, "H100": 2.50, "A100": 1.50, "L40S": 1.00, "A10": 0.75, "L4": 0.70, "T4": 0.35}
GPU_DEFAULT_HOUR = 2.00

# (run.json stage, label) in pipeline order; other stages found in run.json follow these
PIPELINE = [("data", "data build"), ("tokenizer", "tokenizer train"), ("tokenize", "data tokenize"),
            ("base", "pretrain"), ("sample", "sample base"), ("mid", "midtrain"), ("factuality", "factuality labels"),
            ("sft", "sft"), ("sample_sft", "sample sft"), ("eval_base", "eval base"), ("eval_mid", "eval mid"),
            ("eval_sft", "eval sft"), ("prefs", "comparisons"), ("reward", "reward model"), ("dpo", "dpo"),
            ("eval_dpo", "eval dpo"), ("compare", "compare dpo / sft"), ("rl", "rl"), ("eval_rl", "eval rl"),
            ("report", "report")]
OBJECTIVES = {"pretrain": "base"}      # metrics file stem -> model stage, when they differ
NOT_RUN = "_not run_"


# --- reading the run ----------------------------------------------------------------------------
@dataclass
class Metrics:
    """One metrics file as one uninterrupted run: the last record of each step wins (a resumed
    attempt re-logs the steps after its checkpoint), torn lines of a killed writer are skipped."""
    train: list[dict] = field(default_factory=list)      # records with "loss", by step
    evals: list[dict] = field(default_factory=list)      # validation records (val_*), by step
    dropped: int = 0                                     # duplicate steps replaced by later ones
    unreadable: int = 0                                  # lines that are not JSON objects


def read_metrics(path: Path) -> Metrics:
    train: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    m = Metrics()
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            m.unreadable += 1
            continue
        kind = train if "loss" in record else evals if any(k.startswith("val_") for k in record) else None
        if kind is None:
            continue
        m.dropped += step in kind
        kind[step] = record
    m.train = [train[s] for s in sorted(train)]
    m.evals = [evals[s] for s in sorted(evals)]
    return m


def metrics_files(run: RunDir) -> dict[str, Path]:
    """Model stage -> its training metrics file, in pipeline order."""
    found = {OBJECTIVES.get(p.stem, p.stem): p for p in sorted(run.metrics.glob("*.jsonl"))}
    order = list(STAGES)
    return dict(sorted(found.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def model_stages(run: RunDir) -> list[str]:
    return [s for s in STAGES if (run.path / s / "config.json").exists()]


def eval_files(run: RunDir) -> dict[str, dict]:
    out = {}
    for stage in STAGES:
        results = read_json(run.evals(stage))
        if results and isinstance(results.get("tasks"), dict):
            out[stage] = results
    return out


# --- formatting ---------------------------------------------------------------------------------
def fmt_count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def fmt_seconds(s: float | None, unknown: str = "-") -> str:
    if s is None:
        return unknown
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def fmt_dollars(d: float) -> str:
    return f"${d:.4f}" if d < 0.1 else f"${d:.2f}"


def fence(text: str) -> str:
    """A code block that the text cannot close early (its fence is longer than any run inside)."""
    longest = max((len(run) for run in text.replace("`", "`\0").split("\0") if run.endswith("`")), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}text\n{text}\n{ticks}"


def one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- hardware, code, cost -----------------------------------------------------------------------
def machine() -> dict:
    """This machine: CPU model, cores, RAM, GPUs, torch, bf16 support."""
    import torch

    from picochat.hardware import cpu_has_fast_bf16

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "ram_gb": None,
            "gpus": [], "torch": torch.__version__, "fast_bf16": cpu_has_fast_bf16()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gb"] = int(line.split()[1]) / 2**20
    except OSError:
        pass
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append(f"{p.name} ({p.total_memory / 2**30:.0f} GiB)")
    return info


def git_state() -> tuple[str | None, bool | None]:
    """The code's commit and whether tracked files differ from it."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10, check=False)
        dirty = bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return git_commit(), dirty


def price(info: dict, per_hour: float | None) -> tuple[float, str]:
    """Dollars per hour of this machine, and the assumption behind the figure."""
    if per_hour is not None:
        if not per_hour >= 0:
            raise PicochatError(f"--price-per-hour must be a number >= 0, not {per_hour}")
        return per_hour, f"${per_hour:.4g}/hour, as given (--price-per-hour)"
    if info["gpus"]:
        name = info["gpus"][0]
        rate = next((r for key, r in GPU_HOUR.items() if key in name), GPU_DEFAULT_HOUR)
        n = len(info["gpus"])
        return rate * n, (f"{n} x {name} at ${rate:.2f}/GPU-hour, a typical on-demand cloud rental rate "
                          "(pass --price-per-hour to use yours)")
    cores = info["cores"] or 1
    return cores * CPU_VCPU_HOUR, (
        f"{cores} vCPUs at ${CPU_VCPU_HOUR}/vCPU-hour = ${cores * CPU_VCPU_HOUR:.3f}/hour, the on-demand "
        "price of the same cores in the cloud (AWS c7i.large: 2 vCPUs for $0.0893/h, us-east-1); "
        "on a laptop you own the marginal cost is the electricity, far less (pass --price-per-hour "
        "to use your own figure)")


def hardware_section(meta: dict, info: dict) -> str:
    from picochat.hardware import measured_peaks

    commit, dirty = git_state()
    rows = [("CPU", f"{info['cpu']}, {info['cores']} cores"),
            ("RAM", f"{info['ram_gb']:.1f} GiB" if info["ram_gb"] else "unknown"),
            ("GPU", ", ".join(info["gpus"]) or "none"),
            ("torch", f"{info['torch']}; fast bf16 on this CPU (AMX / AVX-512 BF16): "
                      f"{'yes' if info['fast_bf16'] else 'no'}")]
    machine_names = [info["cpu"].split("@")[0].strip()] + [g.rsplit(" (", 1)[0] for g in info["gpus"]]
    peaks = {k: v for k, v in measured_peaks().items() if any(k.startswith(n) for n in machine_names)}
    rows.append(("matmul peak (measured, the MFU denominator)",
                 "; ".join(f"{k}: {v / 1e9:,.0f} GFLOP/s" for k, v in sorted(peaks.items()))
                 or "not measured yet (the trainer measures it on first use)"))
    host = meta.get("host") or {}
    if host:
        rows.append(("run host (run.json)", f"{host.get('hostname')}, {host.get('platform')}, "
                                            f"Python {host.get('python')}, {host.get('cpus')} CPUs"))
    rows.append(("code", f"{commit or 'unknown commit'}" + {True: " (uncommitted changes)", False: " (clean)",
                                                           None: ""}[dirty]))
    if meta.get("git_commit") and meta["git_commit"] != commit:
        rows.append(("code of the last recorded stage", meta["git_commit"]))
    rows.append(("run created", meta.get("created", "unknown")))
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


# --- stages: time and cost ----------------------------------------------------------------------
def stage_seconds(name: str, entry: dict, evals: dict[str, dict]) -> float | None:
    if isinstance(entry.get("seconds"), (int, float)):
        return float(entry["seconds"])
    if name.startswith("eval_") and name[5:] in evals:
        # an eval run in pieces: the tasks' own times add up to the whole
        tasks = evals[name[5:]]["tasks"].values()
        return sum(float(t.get("seconds") or 0) for t in tasks) or evals[name[5:]].get("seconds")
    return None


def stage_output(name: str, entry: dict, evals: dict[str, dict]) -> str:
    m = entry.get("metrics") or {}
    if name == "data" and "documents" in entry:
        return f"{entry['documents']:,} documents, {entry.get('bytes', 0) / 1e6:.1f} MB"
    if name == "tokenizer" and "vocab_size" in entry:
        return f"{entry['vocab_size']:,}-token vocabulary"
    if name == "tokenize" and "tokens" in entry:
        return f"{fmt_count(entry['tokens'].get('train', 0))} train / {fmt_count(entry['tokens'].get('val', 0))} val tokens"
    if name in STAGES and "steps" in entry:
        val = next((f"{k} {v:.4f}" for k, v in m.items() if k.startswith("val_")), "")
        return f"{entry['steps']} steps, loss {m.get('loss', float('nan')):.3f}" + (f", {val}" if val else "")
    if name.startswith("eval_") and name[5:] in evals:
        results = evals[name[5:]]
        agg = results.get("aggregate") or {}
        head = f"{agg['name']} {agg['value']:.4f}, " if isinstance(agg.get("value"), (int, float)) else ""
        return f"{head}{len(results['tasks'])} tasks"
    if name == "factuality" and "questions" in entry:
        return (f"right on {entry['kept_answers']} of {entry['questions']} dictionary questions; "
                "the rest labeled I don't know")
    if name.startswith("sample") and "samples" in entry:
        return f"{entry['samples']} samples"
    return ""


def made_by(run: RunDir, name: str, evals: dict[str, dict]) -> bool:
    """Whether a stage's artifacts exist, for runs whose run.json predates its record."""
    if name.startswith("eval_"):
        return name[5:] in evals
    if name.startswith("sample"):
        return run.samples("base" if name == "sample" else name[7:]).exists()
    made = {"data": run.data / "stats.json", "tokenizer": run.tokenizer / "tokenizer.json",
            "tokenize": run.tokens / "index.json", "report": run.report / "report.md"}.get(name)
    return bool(made and made.exists()) or (name in STAGES and (run.path / name / "config.json").exists())


def stages_section(run: RunDir, meta: dict, evals: dict[str, dict], rate: float, assumption: str) -> str:
    recorded = meta.get("stages") or {}
    names = [n for n, _ in PIPELINE] + [n for n in recorded if n not in dict(PIPELINE) and n != "speedrun"]
    labels = dict(PIPELINE)
    lines = ["| stage | status | wall time | cost | made |", "|---|---|---:|---:|---|"]
    total = 0.0
    for name in names:
        entry = recorded.get(name) or {}
        if name == "report" and entry.get("status") != "done":
            lines.append("| report | writing (this file) | - | - | |")
            continue
        seconds = stage_seconds(name, entry, evals)
        status = entry.get("status") or ("done" if made_by(run, name, evals) else "not run")
        status = "running or interrupted" if status == "running" else status
        if status == "not run" and seconds is None:
            lines.append(f"| {labels.get(name, name)} | not run | - | - | |")
            continue
        total += seconds or 0
        cost = fmt_dollars(seconds / 3600 * rate) if seconds is not None else "-"
        lines.append(f"| {labels.get(name, name)} | {status} | {fmt_seconds(seconds, 'not recorded')} | {cost} | "
                     f"{stage_output(name, entry, evals)} |")
    lines.append(f"| **total** | | **{fmt_seconds(total)}** | **{fmt_dollars(total / 3600 * rate)}** | |")
    notes = [f"Cost assumption: {assumption}."]
    speedrun = recorded.get("speedrun") or {}
    if speedrun.get("status") == "running":
        notes.append("This report is the last stage of a `picochat speedrun` still running.")
    elif isinstance(speedrun.get("seconds"), (int, float)):
        notes.append(f"The last `picochat speedrun` took {fmt_seconds(speedrun['seconds'])} end to end "
                     "(stages already done were skipped).")
    if (speedrun.get("step_scale") or 1) < 1:
        notes.append(f"A training step takes longer on this machine than on the one the preset's steps were "
                     f"sized for, so the speedrun trained each stage for {speedrun['step_scale']:.0%} of its "
                     "steps, except mid-training, which dropped web-text rows and kept the steps its skills need "
                     "(the conversations it sees): expect weaker document modelling and chat than the preset "
                     "reaches at full length.")
    notes.append("A stage's wall time is that of its last attempt (a resumed stage does not count "
                 "the attempts before it).")
    return "\n".join(lines) + "\n\n" + " ".join(notes)


# --- model: size, FLOPs, tokens -----------------------------------------------------------------
def world_size(run: RunDir, stage: str) -> int:
    """Processes the stage trained on, from its newest checkpoint (1 when unknown)."""
    folders = sorted(run.checkpoints(stage).glob("step_*")) if run.checkpoints(stage).exists() else []
    for folder in reversed(folders):
        state = read_json(folder / "trainer.json")
        if state and isinstance(state.get("world_size"), int):
            return state["world_size"]
    return 1


def model_section(run: RunDir, meta: dict) -> str:
    import torch

    from picochat.model import Llama, ModelConfig

    stages = model_stages(run)
    if not stages:
        return NOT_RUN + " (no model directory: `picochat pretrain` makes base/)"
    rows: dict[str, list[str]] = {k: [] for k in (
        "shape", "parameters", "parameters without embeddings", "training FLOPs per token",
        "tokens seen in training", "tokens per parameter", "training compute")}
    for stage in stages:
        cfg = ModelConfig.from_hf(json.loads((run.path / stage / "config.json").read_text()))
        with torch.device("meta"):   # sizes only: no memory, no initialisation
            model = Llama(cfg)
        entry = (meta.get("stages") or {}).get(stage) or {}
        train = entry.get("train") or {}
        seq_len = train.get("seq_len") or cfg.max_seq_len
        per_token = model.flops_per_token(seq_len)
        params = model.num_params()
        rows["shape"].append(f"{cfg.n_layers} layers x {cfg.dim} dim, {cfg.n_heads} heads ({cfg.n_kv_heads} kv), "
                             f"FFN {cfg.ffn_dim}, vocab {cfg.vocab_size:,}, context {cfg.max_seq_len}")
        rows["parameters"].append(f"{params:,} ({fmt_count(params)})")
        rows["parameters without embeddings"].append(f"{model.num_params(embeddings=False):,}")
        rows["training FLOPs per token"].append(f"{fmt_count(per_token)} (at {seq_len} tokens of context)")
        if entry.get("steps") and train:
            tokens = (entry["steps"] * train.get("batch_size", 0) * train.get("grad_accum", 1) * seq_len
                      * world_size(run, stage))
            rows["tokens seen in training"].append(f"{fmt_count(tokens)} ({entry['steps']} steps)")
            rows["tokens per parameter"].append(f"{tokens / params:.2f}")
            rows["training compute"].append(f"{fmt_count(per_token * tokens)}FLOP")
        else:
            for k in ("tokens seen in training", "tokens per parameter", "training compute"):
                rows[k].append("not recorded")
    lines = ["| | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    lines += [f"| {k} | " + " | ".join(v) + " |" for k, v in rows.items()]
    return ("\n".join(lines) + "\n\nFLOPs per token = 6 x (parameters without the embedding table) + "
            "12 x layers x dim x context (forward + backward, attention included). Tokens seen count "
            "every position of every row (padding included for SFT rows that are not packed).")


# --- training curves ----------------------------------------------------------------------------
def figure(ncols: int = 1, width: float = 5.5, height: float = 3.6):
    """A matplotlib figure without pyplot: no global state, no display backend needed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def training_section(run: RunDir, out: Path) -> str:
    files = metrics_files(run)
    if not files:
        return NOT_RUN + " (no metrics/*.jsonl: `picochat pretrain` writes metrics/pretrain.jsonl)"
    metrics = {stage: read_metrics(path) for stage, path in files.items()}
    metrics = {s: m for s, m in metrics.items() if m.train or m.evals}
    if not metrics:
        return NOT_RUN + " (the metrics files hold no records yet)"
    lines = ["| stage | logged steps | last step | final loss | last validation | median tokens/s | median MFU |",
             "|---|---:|---:|---:|---|---:|---:|"]
    notes = []
    for stage, m in metrics.items():
        tps = [r["tokens_per_s"] for r in m.train if isinstance(r.get("tokens_per_s"), (int, float))]
        mfu = [r["mfu"] for r in m.train if isinstance(r.get("mfu"), (int, float))]
        last_val = m.evals[-1] if m.evals else {}
        val = ", ".join(f"{k} {v:.4f}" for k, v in last_val.items() if k.startswith("val_"))
        last = m.train[-1] if m.train else {}
        lines.append(" | ".join([
            f"| {stage}", str(len(m.train)), str(last.get("step", "-")),
            f"{last['loss']:.4f}" if "loss" in last else "-",
            f"{val} (step {last_val['step']})" if val else "-",
            f"{statistics.median(tps):,.0f}" if tps else "-",
            f"{100 * statistics.median(mfu):.1f}%" if mfu else "-"]) + " |")
        if m.dropped or m.unreadable:
            notes.append(f"{files[stage].name}: {m.dropped} records of resumed steps replaced by the later "
                         f"attempt's, {m.unreadable} unreadable lines skipped.")
    plots = [plot_loss(metrics, out), plot_lr(metrics, out), plot_throughput(metrics, out)]
    text = "\n".join(lines) + ("\n\n" + " ".join(notes) if notes else "")
    captions = {"loss.png": "Training loss (lines) and validation (markers: bits per byte for pretraining, "
                            "loss in nats for SFT)",
                "lr.png": "Learning rate", "throughput.png": "Throughput: tokens/s and MFU (model FLOPs "
                                                             "utilisation vs the measured matmul peak)"}
    for name in plots:
        if name:
            text += f"\n\n![{captions[name]}]({name})"
    return text


def plot_loss(metrics: dict[str, Metrics], out: Path) -> str | None:
    fig, axes = figure(len(metrics))
    for ax, (stage, m) in zip(axes, metrics.items()):
        ax.plot([r["step"] for r in m.train], [r["loss"] for r in m.train], color="tab:blue", label="train loss")
        ax.set(title=stage, xlabel="step", ylabel="loss (nats/token)")
        val_keys = sorted({k for r in m.evals for k in r if k.startswith("val_")})
        if val_keys:
            twin = ax.twinx() if val_keys != ["val_loss"] else ax
            for key, color in zip(val_keys, ("tab:red", "tab:green", "tab:purple")):
                pts = [(r["step"], r[key]) for r in m.evals if isinstance(r.get(key), (int, float))]
                twin.plot(*zip(*pts), "o--", color=color, label=key)
            if twin is not ax:
                twin.set_ylabel(", ".join(val_keys))
                twin.legend(loc="upper center")
        ax.legend(loc="upper right")
        ax.grid(alpha=0.3)
    fig.savefig(out / "loss.png", dpi=100)
    return "loss.png"


def plot_lr(metrics: dict[str, Metrics], out: Path) -> str | None:
    series = {s: [(r["step"], r["lr"]) for r in m.train if "lr" in r] for s, m in metrics.items()}
    series = {s: pts for s, pts in series.items() if pts}
    if not series:
        return None
    fig, (ax,) = figure()
    for stage, pts in series.items():
        ax.plot(*zip(*pts), label=stage)
    ax.set(xlabel="step", ylabel="learning rate")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(out / "lr.png", dpi=100)
    return "lr.png"


def plot_throughput(metrics: dict[str, Metrics], out: Path) -> str | None:
    if not any("tokens_per_s" in r for m in metrics.values() for r in m.train):
        return None
    fig, (ax_tps, ax_mfu) = figure(2)
    for stage, m in metrics.items():
        rows = [r for r in m.train if "tokens_per_s" in r]
        ax_tps.plot([r["step"] for r in rows], [r["tokens_per_s"] for r in rows], label=stage)
        ax_mfu.plot([r["step"] for r in rows], [100 * r.get("mfu", 0.0) for r in rows], label=stage)
    ax_tps.set(xlabel="step", ylabel="tokens/s")
    ax_mfu.set(xlabel="step", ylabel="MFU (%)")
    for ax in (ax_tps, ax_mfu):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.savefig(out / "throughput.png", dpi=100)
    return "throughput.png"


# --- evaluations --------------------------------------------------------------------------------
def fmt_value(task: dict) -> str:
    if task.get("skipped"):
        return "skipped"
    value = task.get("value")
    if not isinstance(value, (int, float)):
        return "-"
    ci = task.get("ci95")
    text = f"{value:.3f}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text + (f" (n={task['n']})" if task.get("n") is not None else "")


def fmt_number(x) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "-"


def evals_section(run: RunDir, evals: dict[str, dict], out: Path) -> str:
    if not evals:
        return NOT_RUN + f" (no evals/<stage>.json: `picochat eval --run {run.path} --stage base`)"
    stages = list(evals)
    tasks: dict[str, dict] = {}              # task -> its first description (family, metric, chance)
    for results in evals.values():
        for name, task in results["tasks"].items():
            tasks.setdefault(name, task)
    head = "| task | family | metric | chance | " + " | ".join(f"{s} | {s} centered" for s in stages) + " |"
    lines = [head, "|---|---|---|---:|" + "---:|---:|" * len(stages)]
    for name, first in tasks.items():
        cells = []
        for s in stages:
            t = evals[s]["tasks"].get(name)
            cells += [fmt_value(t), fmt_number(t.get("centered"))] if t else ["-", "-"]
        lines.append(f"| {name} | {first.get('family', '-')} | {first.get('metric', '-')} | "
                     f"{fmt_number(first.get('chance'))} | " + " | ".join(cells) + " |")
    aggregates = {}
    for s in stages:
        agg = evals[s].get("aggregate") or {}
        if agg.get("name"):
            aggregates.setdefault(agg["name"], {})[s] = agg
    for name, per_stage in aggregates.items():
        cells = []
        for s in stages:
            agg = per_stage.get(s)
            cells += ["", f"**{agg['value']:.4f}**" if agg and isinstance(agg.get("value"), (int, float)) else "-"]
        lines.append(f"| **{name}** | aggregate | mean centered | | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    skipped = {f"{name}: {one_line(t['skipped'], 200)}" for r in evals.values() for name, t in r["tasks"].items()
               if t.get("skipped")}
    if skipped:
        text += "\n\nSkipped (could not run here): " + "; ".join(sorted(skipped)) + "."
    text += ("\n\nValue with its bootstrap 95% interval and the number of examples scored; centered = "
             "(value - chance) / (1 - chance), so 0 is guessing and 1 is perfect. Aggregates: "
             + "; ".join(f"{name} over {', '.join(next(iter(ps.values())).get('tasks') or [])}"
                         for name, ps in aggregates.items()) + ".") if aggregates else ""
    when = "; ".join(f"{s}: {evals[s].get('updated', '?')} ({fmt_seconds(evals[s].get('seconds'))})" for s in stages)
    text += f"\n\nEvaluated {when}."
    plot = plot_centered(evals, out)
    if plot:
        text += f"\n\n![Centered accuracy per task and stage]({plot})"
    return text + "\n\n" + eval_examples(evals)


SKILLS = ("identity", "calculator", "copying", "unknowable", "factuality", "hhh_heldout")


def skills_section(run: RunDir, evals: dict[str, dict]) -> str:
    """picochat's own tasks per stage (held-out splits), with how often the model abstained on
    what it can answer, and the factuality trade-off before and after its labels were trained on."""
    stages = [s for s in evals if any(k in evals[s]["tasks"] for k in SKILLS)]
    if not stages:
        return NOT_RUN + f" (`picochat eval --run {run.path} --stage sft --tasks {','.join(SKILLS)}`)"
    lines = ["| skill | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    for name in SKILLS:
        cells = [fmt_value(evals[s]["tasks"].get(name, {})) for s in stages]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for extra, title in (("operands_copied", "calculator called with the user's operands"),
                         ("abstained", "said I don't know")):
        for name in SKILLS:
            values = [evals[s]["tasks"].get(name, {}).get(extra) for s in stages]
            if any(isinstance(v, (int, float)) for v in values) and not (extra == "abstained" and name == "unknowable"):
                lines.append(f"| {name}: {title} | " + " | ".join(fmt_number(v) for v in values) + " |")
    for name in SKILLS:
        kept = [still_right(evals[a]["tasks"].get(name), evals[b]["tasks"].get(name))
                for a, b in zip(stages, stages[1:])]
        if any(kept):
            lines.append(f"| {name}: still right, of what the stage before got right | - | " +
                         " | ".join(k or "-" for k in kept) + " |")
    text = "\n".join(lines) + ("\n\nHeld-out splits: phrasings and values training never used. "
                               "Accuracy with its bootstrap 95% interval (n examples); \"still right\" with its "
                               "Wilson interval, over the same problems.")
    curves = {s: evals[s]["tasks"]["factuality"].get("curve") for s in stages
              if evals[s]["tasks"].get("factuality", {}).get("curve")}
    if curves:
        text += ("\n\nFactuality trade-off (held-out dictionary words): keep an answer when the model did not "
                 "abstain and its mean token log-probability clears a threshold.\n\n"
                 "| stage | threshold | answer rate | answered accuracy | answered |\n|---|---:|---:|---:|---:|\n")
        text += "\n".join(f"| {s} | {'none' if p['threshold'] is None else format(p['threshold'], '.2f')} | "
                          f"{p['answer_rate']:.3f} | "
                          f"{fmt_number(p['answered_accuracy'])} | {p['answered']} |"
                          for s, curve in curves.items() for p in curve)
    return text


def still_right(before: dict | None, after: dict | None) -> str | None:
    """Of the problems one stage got right, the share the next still gets right ("12/13 0.923
    [lo, hi]"), where both were scored on the same problems (same settings); else None."""
    if not before or not after or before.get("settings") != after.get("settings"):
        return None
    was, now = before.get("right"), after.get("right")
    if not isinstance(was, str) or not isinstance(now, str) or len(was) != len(now) or "1" not in was:
        return None
    n = was.count("1")
    kept = sum(a == b == "1" for a, b in zip(was, now))
    lo, hi = wilson(kept / n, n)
    return f"{kept}/{n} {kept / n:.3f} [{lo:.3f}, {hi:.3f}]"


def wilson(p: float, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion p of n."""
    if not n:
        return 0.0, 1.0
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pair_accuracy_rows(metrics: dict) -> list[str]:
    """| source | n | held-out pair accuracy [95% CI] | rows from a reward or DPO stage's final metrics."""
    rows = []
    for key in ["heldout"] + sorted(k[len("heldout_"):-len("_pairs")] for k in metrics
                                    if k.startswith("heldout_") and k.endswith("_pairs")):
        prefix = "heldout" if key == "heldout" else f"heldout_{key}"
        n, acc = metrics.get(f"{prefix}_pairs"), metrics.get(f"{prefix}_accuracy")
        if isinstance(n, (int, float)) and isinstance(acc, (int, float)) and n:
            lo, hi = wilson(acc, int(n))
            rows.append(f"| {'all' if key == 'heldout' else key} | {int(n)} | {acc:.3f} [{lo:.3f}, {hi:.3f}] |")
    return rows


def preferences_section(run: RunDir) -> str:
    """What was compared, how well the reward model and DPO rank held-out pairs, and whether DPO
    beats SFT on held-out problems judged blind."""
    from picochat.evals.preference import comparison_path
    from picochat.prefs.store import Store, summary

    contents = Store(run.prefs).read()
    if not contents.labels and not contents.ratings:
        return NOT_RUN + f" (`picochat prefs --run {run.path} --collect verifier,rules,hhh`)"
    parts = ["| label source | pairs | train comparisons | held-out comparisons | labelers |\n|---|---:|---:|---:|---|"]
    for source, e in sorted(summary(contents).items()):
        if "train" in e:
            labelers = ", ".join(e["labelers"])[:60]
            parts[0] += f"\n| {source} | {e['pairs']} | {e['train']} | {e['heldout']} | {labelers} |"
    stages = run.read_meta().get("stages", {})
    for stage, title in (("reward", "Reward model (Bradley-Terry): held-out pair accuracy"),
                         ("dpo", "DPO: held-out pairs ranked by the implicit reward beta * log(pi / ref)")):
        m = (stages.get(stage) or {}).get("metrics") or {}
        rows = pair_accuracy_rows(m)
        if rows:
            extra = f" (loss {stages[stage].get('loss')}, beta {stages[stage].get('beta')})" if stage == "dpo" else ""
            margin = m.get("heldout_margin")
            parts.append(f"{title}{extra}; mean held-out margin {fmt_number(margin)}.\n\n"
                         "| source | n | accuracy [95% CI] |\n|---|---:|---:|\n" + "\n".join(rows))
    compared = read_json(comparison_path(run, "dpo", "sft"))
    if compared:
        lines = ["| temperature | judge | n | wins / ties / losses | win rate [95% CI] | decisive win rate |",
                 "|---:|---|---:|---:|---:|---:|"]
        for t, entry in compared["temperatures"].items():
            for judge in ("checker", "reward_model"):
                c = entry.get(judge)
                if c:
                    ci = c.get("ci95") or [None, None]
                    lines.append(f"| {t} | {judge.replace('_', ' ')} | {c['n']} | {c['wins']} / {c['ties']} / "
                                 f"{c['losses']} | {fmt_number(c['win_rate'])} [{fmt_number(ci[0])}, "
                                 f"{fmt_number(ci[1])}] | {fmt_number(c['decisive_win_rate'])} |")
        parts.append(f"DPO against SFT, blind, on {compared['problems']} fresh held-out problems of "
                     f"{', '.join(compared['tasks'])} (a tie counts half):\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def centered_interval(task: dict) -> tuple[float, float] | None:
    """The 95% interval of the value, on the centered scale."""
    ci, chance, value = task.get("ci95"), task.get("chance"), task.get("centered")
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and isinstance(chance, (int, float))
            and isinstance(value, (int, float)) and chance < 1):
        return None
    low, high = ((x - chance) / (1 - chance) for x in ci)
    return max(value - low, 0.0), max(high - value, 0.0)


def plot_centered(evals: dict[str, dict], out: Path) -> str | None:
    tasks = list(dict.fromkeys(name for r in evals.values() for name, t in r["tasks"].items()
                               if isinstance(t.get("centered"), (int, float))))
    if not tasks:
        return None
    fig, (ax,) = figure(width=min(16.0, max(6.0, 0.3 * len(tasks) * len(evals) + 2)), height=4.5)
    width = 0.8 / len(evals)
    for i, (stage, results) in enumerate(evals.items()):
        bars = [(j + (i - (len(evals) - 1) / 2) * width, results["tasks"].get(t) or {}) for j, t in enumerate(tasks)]
        bars = [(x, t) for x, t in bars if isinstance(t.get("centered"), (int, float))]
        errors = [centered_interval(t) or (0.0, 0.0) for _, t in bars]
        ax.bar([x for x, _ in bars], [t["centered"] for _, t in bars], width, label=stage,
               yerr=[[e[0] for e in errors], [e[1] for e in errors]], capsize=2, error_kw={"linewidth": 0.8})
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right")
    ax.set_ylabel("centered accuracy (0 = chance)")
    ax.set_title("Centered accuracy per task, with 95% intervals")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(out / "evals.png", dpi=100)
    return "evals.png"


def eval_examples(evals: dict[str, dict]) -> str:
    parts = ["<details><summary>Scored examples (per task and stage: a wrong answer and a right one, "
             "where the stage gave both)</summary>\n"]
    for stage, results in evals.items():
        for name, task in results["tasks"].items():
            examples = task.get("examples") or []
            shown = [next((e for e in examples if e.get("correct") is not None and bool(e["correct"]) == want), None)
                     for want in (False, True)]
            for ex in [e for e in shown if e] or examples[:1]:
                mark = "" if ex.get("correct") is None else ("correct" if ex["correct"] else "wrong")
                parts.append(f"**{stage} / {name}** ({mark})\n\n" + fence(
                    f"prompt: {str(ex.get('prompt', ''))[-600:]}\nanswer: {ex.get('answer', '')}\n"
                    f"target: {ex.get('target', '')}"))
    parts.append("</details>")
    return "\n\n".join(parts) if len(parts) > 2 else ""


# --- samples ------------------------------------------------------------------------------------
def samples_section(run: RunDir) -> str:
    from picochat.sample import make_samples, samples_fresh

    stages = [s for s in model_stages(run) if s != "reward"]      # the reward model writes no text
    if not stages:
        return NOT_RUN + " (no model to sample from)"
    parts = []
    for stage in stages:
        stored = read_json(run.samples(stage)) if samples_fresh(run, stage) else None
        if stored and isinstance(stored.get("samples"), list):
            samples, origin = stored["samples"], f"stored by the speedrun ({stored.get('sampling')})"
        else:   # none stored, stale (the model was retrained since) or unreadable
            params, samples = make_samples(run, stage, out=io.StringIO())
            origin = f"generated for this report ({params})"
        kind = "completions of a document start" if stage == "base" else "answers to a user message"
        parts.append(f"### {stage}: {kind}\n\nSampling: {origin}.")
        for s in samples:
            if stage == "base":
                parts.append(fence(f"{s['prompt']}▌{s['output']}"))
            else:
                parts.append(fence(f"user: {s['prompt']}\nassistant: {s['output']}"))
    return ("The prompt ends at ▌ in base completions.\n\n" if "base" in stages else "") + "\n\n".join(parts)


# --- data ---------------------------------------------------------------------------------------
def data_section(run: RunDir) -> str:
    from picochat.data.report import step_table

    stats = read_json(run.data / "stats.json")
    index = read_json(run.tokens / "index.json")
    parts = []
    if stats and isinstance(stats.get("steps"), list):
        parts.append(
            f"Source `{stats.get('source', '?')}`: {stats.get('documents_in', 0):,} documents "
            f"({stats.get('bytes_in', 0) / 1e6:.1f} MB) in, {stats.get('documents_out', 0):,} documents "
            f"({stats.get('bytes_out', 0) / 1e6:.1f} MB) out, in {fmt_seconds(stats.get('seconds'))} "
            f"with {stats.get('workers', '?')} workers ({stats.get('mb_per_s', '?')} MB/s).")
        parts.append(step_table(stats))
        links = ["[data/report.md](../data/report.md)" if (run.data / "report.md").exists() else None]
        links += [f"[{p.name}](../data/plots/{p.name})" for p in sorted((run.data / "plots").glob("*.png"))]
        if any(links):
            parts.append("Per-step removal reasons and examples: " + ", ".join(x for x in links if x) + ".")
    else:
        parts.append(NOT_RUN + " (no data/stats.json: `picochat data build` makes it)")
    if index and isinstance(index.get("tokens"), dict):
        t = index["tokens"]
        parts.append(f"Token shards: {t.get('train', 0):,} train / {t.get('val', 0):,} val tokens "
                     f"({index.get('dtype', '?')}, vocabulary {index.get('vocab_size', '?'):,}).")
    else:
        parts.append("Token shards: " + NOT_RUN)
    return "\n\n".join(parts)


# --- the page -----------------------------------------------------------------------------------
def rl_section(run: RunDir, out: Path) -> str:
    """Held-out accuracy per RL task before the first step and after the last (greedy, the
    task's eval split), and the reward and answer-length curves of training."""
    entry = run.read_meta().get("stages", {}).get("rl") or {}
    before, after = entry.get("before") or {}, entry.get("metrics") or {}
    if not entry.get("tasks"):
        return NOT_RUN + f" (`picochat rl --run {run.path}`)"
    r = entry.get("rollouts") or {}
    lines = ["| task | n | before RL [95% CI] | after RL [95% CI] | change |", "|---|---:|---:|---:|---:|"]
    for task in entry["tasks"]:
        a, b = before.get(f"heldout_{task}_accuracy"), after.get(f"heldout_{task}_accuracy")
        n = int(after.get(f"heldout_{task}_n") or before.get(f"heldout_{task}_n") or 0)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and n:
            cells = [f"{x:.3f} [{wilson(x, n)[0]:.3f}, {wilson(x, n)[1]:.3f}]" for x in (a, b)]
            lines.append(f"| {task} | {n} | {cells[0]} | {cells[1]} | {b - a:+.3f} |")
    text = (f"GRPO from `{entry.get('from')}`: {entry.get('steps')} steps, {r.get('group')} answers per problem "
            f"at temperature {r.get('temperature')}, {r.get('loss_norm')} loss normalisation, "
            f"{r.get('advantage')} advantages, KL {r.get('kl')}. Held-out problems, greedy:\n\n" + "\n".join(lines))
    plot = plot_rl(read_metrics(run.metrics / "rl.jsonl"), out) if (run.metrics / "rl.jsonl").exists() else None
    if plot:
        text += f"\n\n![RL: mean reward and answer length per step]({plot})"
    return text


def plot_rl(metrics: Metrics, out: Path) -> str | None:
    rows = [r for r in metrics.train if isinstance(r.get("reward"), (int, float))]
    if not rows:
        return None
    fig, (left, right) = figure(ncols=2)
    steps = [r["step"] for r in rows]
    left.plot(steps, [r["reward"] for r in rows], label="reward")
    left.plot(steps, [r.get("signal", 0) for r in rows], label="groups with signal", alpha=0.6)
    left.set_xlabel("step")
    left.legend()
    right.plot(steps, [r.get("answer_tokens", 0) for r in rows], label="answer tokens")
    right.plot(steps, [r.get("thinking_tokens", 0) for r in rows], label="thinking tokens")
    right.set_xlabel("step")
    right.legend()
    fig.savefig(out / "rl.png")
    return "rl.png"


def guarded(title: str, build, *args) -> str:
    """One section; a section that fails says why instead of taking the whole report down."""
    try:
        body = build(*args)
    except Exception as e:  # noqa: BLE001 - a report card with one broken section beats none
        body = f"_could not be built: {type(e).__name__}: {one_line(e, 300)}_"
    return f"## {title}\n\n{body}\n"


def headline(meta: dict, evals: dict[str, dict]) -> str:
    stages = meta.get("stages") or {}
    items = []
    preset = next((e.get("preset") for e in stages.values() if isinstance(e, dict) and e.get("preset")), None)
    if preset:
        items.append(f"preset **{preset}**")
    for stage in STAGES:
        m = (stages.get(stage) or {}).get("metrics") or {}
        for key in ("val_bpb", "val_loss"):
            if isinstance(m.get(key), (int, float)):
                items.append(f"{stage} {key} **{m[key]:.4f}**")
    for stage, results in evals.items():
        agg = results.get("aggregate") or {}
        if isinstance(agg.get("value"), (int, float)):
            items.append(f"{stage} {agg.get('name')} **{agg['value']:.4f}**")
    return ", ".join(items) if items else "nothing trained yet"


def write_report(run: RunDir, price_per_hour: float | None = None) -> Path:
    """Write runs/R/report/report.md and its plots; returns the path of report.md."""
    meta = run.read_meta()
    info = machine()
    rate, assumption = price(info, price_per_hour)
    evals = eval_files(run)
    with atomic_dir(run.report) as out:
        sections = [
            f"# picochat report card: {run.path.name}\n\n"
            f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} for `{run.path}`: {headline(meta, evals)}.\n",
            guarded("Hardware and code", hardware_section, meta, info),
            guarded("Stages: time and cost", stages_section, run, meta, evals, rate, assumption),
            guarded("Model", model_section, run, meta),
            guarded("Training", training_section, run, out),
            guarded("Evaluations", evals_section, run, evals, out),
            guarded("Skills: copying, tools and knowing what it doesn't know", skills_section, run, evals),
            guarded("Preferences: reward model and DPO", preferences_section, run),
            guarded("RL: verifiable rewards", rl_section, run, out),
            guarded("Samples", samples_section, run),
            guarded("Data", data_section, run),
        ]
        (out / "report.md").write_text("\n".join(sections), encoding="utf-8")
    return run.report / "report.md"
