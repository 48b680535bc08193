"""Export a run's model for use outside picochat, and import Llama-family models into a run.

    picochat export --run R [--stage sft] --format gguf|hf|twofiles --out DIR [--dtype f32|f16|bf16|q8_0]
    picochat import PATH --run R [--stage base]

- gguf (`gguf.py`): DIR/model.gguf for llama.cpp, plus DIR/Modelfile for ollama.
- hf (`hf.py`): a Hugging Face directory with a model card (README.md).
- twofiles (`twofiles.py`): DIR/model.gguf + DIR/run.py, a single-file NumPy program (`run.py`).
- import (`importer.py`): a Hugging Face Llama directory or a llama GGUF -> runs/R/<stage>/.
"""

from __future__ import annotations

from pathlib import Path

from picochat.rundir import PicochatError, RunDir, atomic_write_text

FORMATS = ("gguf", "hf", "twofiles")


def export_model(run: RunDir, stage: str, format: str, out: str | Path, dtype: str = "f32") -> Path:
    """Write the run's `stage` model to `out` in `format`; returns the folder written."""
    from picochat.export.gguf import DTYPES, modelfile, write_gguf
    from picochat.model import load_pretrained
    from picochat.tokenizer import Tokenizer

    if format not in FORMATS:
        raise PicochatError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise PicochatError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if format == "hf" and dtype != "f32":
        raise PicochatError("--dtype applies to GGUF files; the hf format always writes fp32 safetensors")
    folder = run.require_model(stage)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PicochatError(f"--out {out} is a file; give a folder to write into")
    if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
        raise PicochatError(f"--out {out} is inside the model folder {folder}; pick a folder outside it")
    model = load_pretrained(folder).eval()
    tokenizer = Tokenizer.load(folder)
    name = f"picochat-{stage}"
    if format == "gguf":
        write_gguf(model, tokenizer, out / "model.gguf", dtype=dtype, name=name)
        atomic_write_text(out / "Modelfile", modelfile("model.gguf"))
    elif format == "twofiles":
        from picochat.export.twofiles import write_twofiles

        write_twofiles(model, tokenizer, out, dtype=dtype, name=name)
    else:
        from picochat.export.hf import write_hf

        write_hf(model, tokenizer, run, stage, out)
    run.record_stage("export", status="done", model_stage=stage, format=format, dtype=dtype,
                     out=str(out.resolve()))
    print(f"exported {stage} as {format}{'' if format == 'hf' else f' ({dtype})'} -> {out}")
    return out
