""""Two files": a parameters file and a small program that runs it.

    picochat export --run R --stage sft --format twofiles --out DIR [--dtype q8_0]
    python DIR/run.py DIR/model.gguf                          # chat
    python DIR/run.py DIR/model.gguf --prompt "Once upon a"   # complete

DIR/model.gguf is the GGUF export (weights, tokenizer, hyperparameters, chat template) and
DIR/run.py is picochat/export/run.py copied verbatim: one file of Python that needs only the
standard library and NumPy, no torch, no picochat, no internet.
"""

from __future__ import annotations

import os
from pathlib import Path

from picochat.rundir import atomic_write_bytes

RUN_PY = Path(__file__).with_name("run.py")


def write_twofiles(model, tokenizer, out: Path, dtype: str = "f32", name: str = "picochat") -> Path:
    from picochat.export.gguf import write_gguf

    out = Path(out)
    write_gguf(model, tokenizer, out / "model.gguf", dtype=dtype, name=name)
    atomic_write_bytes(out / "run.py", RUN_PY.read_bytes())
    os.chmod(out / "run.py", 0o755)     # ./run.py model.gguf works too
    return out
