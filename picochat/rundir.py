"""RunDir: where every artifact of a run lives.

    runs/<name>/run.json        what ran: preset, stage configs, git commit, hardware, timings, status
    runs/<name>/data/           clean documents, stats, token shards
    runs/<name>/tokenizer/      tokenizer.json + tokenizer_config.json
    runs/<name>/base/ sft/ ...  Hugging Face model directories (+ checkpoints/ for resuming)
    runs/<name>/metrics/        <stage>.jsonl, one JSON object per logged step
    runs/<name>/samples/        <stage>.json, generations at a fixed seed (picochat.sample)
    runs/<name>/evals/          <stage>.json, benchmark results (picochat.evals)
    runs/<name>/prefs/          comparisons.jsonl: pairs and labels (picochat.prefs)

Every write goes through `atomic_write*` (temp file in the same folder + rename), so a killed
process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

RUN_MARKER = "run.json"
STAGES = ("base", "mid", "sft", "reward", "dpo", "rl")   # model stages, in pipeline order
MADE_BY = {"base": "pretrain", "mid": "midtrain"}                   # the command that trains a stage, where not its name


class PicochatError(Exception):
    """An error with a message meant for the user: what is wrong and what to do."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces `final` in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json(path: Path) -> dict | None:
    """A JSON object, or None when the file is missing or unreadable (readers that show what a
    run has so far treat both as "not there yet")."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def known_stage(stage: str) -> str:
    if stage not in STAGES:
        raise PicochatError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    return stage


class RunDir:
    """A run's folder. Created on first use; refuses folders that are not picochat runs."""

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        marker = self.path / RUN_MARKER
        if self.path.exists() and not self.path.is_dir():
            raise PicochatError(f"run directory {self.path} is a file, not a folder; pick another --run")
        if self.path.is_dir() and not marker.exists() and any(self.path.iterdir()):
            raise PicochatError(
                f"{self.path} exists but is not a picochat run (no {RUN_MARKER}); "
                "pick a new or empty folder for --run")
        if not marker.exists():
            if not create:
                raise PicochatError(f"no run at {self.path}; create it first, e.g. "
                                    f"`picochat data build --run {self.path}`")
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(marker, {"created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                       "stages": {}})
        else:
            self.read_meta()  # fail early on a corrupt run.json

    # --- layout -------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def clean(self) -> Path:
        return self.data / "clean"

    @property
    def tokens(self) -> Path:
        return self.data / "tokens"

    @property
    def tokenizer(self) -> Path:
        return self.path / "tokenizer"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics"

    @property
    def prefs(self) -> Path:
        return self.path / "prefs"

    @property
    def report(self) -> Path:
        return self.path / "report"

    def model(self, stage: str) -> Path:
        return self.path / known_stage(stage)

    def checkpoints(self, stage: str) -> Path:
        return self.model(stage) / "checkpoints"

    def samples(self, stage: str) -> Path:
        return self.path / "samples" / f"{known_stage(stage)}.json"

    def evals(self, stage: str) -> Path:
        return self.path / "evals" / f"{known_stage(stage)}.json"

    # --- run.json -----------------------------------------------------------------------------
    def read_meta(self) -> dict:
        marker = self.path / RUN_MARKER
        try:
            return json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PicochatError(f"{marker} is unreadable ({e}); restore it or start a new run") from e

    def record_stage(self, stage: str, **info: Any) -> None:
        """Merge `info` into run.json's entry for `stage` (config, status, timings...)."""
        meta = self.read_meta()
        entry = meta.setdefault("stages", {}).setdefault(stage, {})
        entry.update(info)
        entry["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        meta["git_commit"] = git_commit()
        meta["host"] = {"hostname": socket.gethostname(), "platform": platform.platform(),
                        "python": platform.python_version(), "cpus": os.cpu_count()}
        atomic_write_json(self.path / RUN_MARKER, meta)

    def require(self, path: Path, what: str, how: str) -> Path:
        """Return `path` if it exists, else fail saying which command makes it."""
        if not path.exists():
            raise PicochatError(f"{what} not found at {path}; run `{how}` first")
        return path

    def require_model(self, stage: str) -> Path:
        """The stage's model folder, if it holds a model (config.json: a folder with only
        checkpoints/ is a training still under way); else fail naming the command that makes it."""
        folder = self.model(stage)
        if not (folder / "config.json").exists():
            missing = " (the folder has no config.json)" if folder.exists() else ""
            raise PicochatError(f"the {stage} model not found at {folder}{missing}; run "
                                f"`picochat {MADE_BY.get(stage, stage)} --run {self.path}` first")
        return folder
