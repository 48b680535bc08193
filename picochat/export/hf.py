"""Write a self-contained Hugging Face model directory with a model card.

    picochat export --run R --stage sft --format hf --out DIR

DIR gets what `picochat.model.save_pretrained` writes (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json with the chat template,
special_tokens_map.json) and README.md: a model card with YAML front matter, built from the
run's own records (run.json, evals/<stage>.json), so it says what was actually done.
"""

from __future__ import annotations

import json
from pathlib import Path

from picochat.rundir import RunDir, atomic_write_text


def write_hf(model, tokenizer, run: RunDir, stage: str, out: Path) -> Path:
    from picochat.model import save_pretrained

    out = Path(out)
    save_pretrained(model, out, tokenizer)
    atomic_write_text(out / "README.md", model_card(model, run, stage))
    return out


# --- the model card -----------------------------------------------------------------------------
def training_tokens(stage_meta: dict) -> int | None:
    """Tokens seen in training: steps x rows per step x sequence length (one process's batch
    times the process count, when the run recorded one)."""
    t = stage_meta.get("train") or {}
    steps = stage_meta.get("steps") or t.get("max_steps")
    if not (steps and t.get("batch_size") and t.get("seq_len")):
        return None
    return int(steps * t["batch_size"] * t.get("grad_accum", 1) * t["seq_len"] * stage_meta.get("world_size", 1))


def _human(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(int(n))


def _eval_lines(evals: dict) -> list[str]:
    """evals/<stage>.json (`picochat eval`: tasks with metric, value, chance, n; an aggregate)
    as a table."""
    num = lambda x: f"{x:.3f}" if isinstance(x, (int, float)) else "-"
    tasks = evals.get("tasks") if isinstance(evals.get("tasks"), dict) else {}
    rows = [f"| {name} | {t.get('metric', '-')} | {num(t.get('value'))} | {num(t.get('chance'))} | "
            f"{t.get('n', '-')} |" for name, t in tasks.items()
            if isinstance(t, dict) and isinstance(t.get("value"), (int, float))]
    agg = evals.get("aggregate") or {}
    if isinstance(agg, dict) and isinstance(agg.get("value"), (int, float)):
        rows.append(f"| **{agg.get('name', 'aggregate')}** | mean centered | {num(agg['value'])} | | |")
    return ["| task | metric | value | chance | examples |", "|---|---|---:|---:|---:|", *rows] if rows else []


def model_card(model, run: RunDir, stage: str) -> str:
    meta = run.read_meta()
    stages = meta.get("stages", {})
    c = model.config
    n_params = model.num_params()
    base, this = stages.get("base", {}), stages.get(stage, {})
    chat = stage != "base"
    name = f"picochat-{this.get('preset') or base.get('preset') or 'model'}-{stage}"
    tags = ["picochat", "llama", "text-generation", "tiny"] + (["conversational"] if chat else [])

    lines = ["---", "license: mit", "library_name: transformers", "pipeline_tag: text-generation",
             "language:", "- en", "tags:"] + [f"- {t}" for t in tags] + ["---", "",
             f"# {name}", "",
             f"A {_human(n_params)}-parameter Llama-architecture "
             f"{'chat assistant' if chat else 'base (pretrained, not instruction-tuned) language model'} "
             "built end to end with picochat: web-like documents were cleaned, a byte-level BPE "
             "tokenizer was trained on them, the model was pretrained by next-token prediction"
             + (" and then fine-tuned on conversations." if chat else "."), "",
             "## Architecture", "",
             "| | |", "|---|---|",
             f"| parameters | {n_params:,} |",
             f"| layers | {c.n_layers} |", f"| model dim | {c.dim} |",
             f"| heads (key/value) | {c.n_heads} ({c.n_kv_heads}) |", f"| MLP dim (SwiGLU) | {c.ffn_dim} |",
             f"| context | {c.max_seq_len} tokens |", f"| vocabulary | {c.vocab_size} |",
             f"| rotary base | {c.rope_theta:g} |", "",
             ("RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, untied embeddings, no "
              "biases: a plain `LlamaForCausalLM`."), "", "## Training", ""]
    data = stages.get("data", {})
    if data:
        lines.append(f"- Data: source `{data.get('source', '?')}`, {data.get('documents', '?'):,} clean "
                     f"documents, {_human(data.get('bytes', 0))}B of text."
                     if isinstance(data.get("documents"), int) else f"- Data: source `{data.get('source', '?')}`.")
    tok = stages.get("tokenizer", {})
    if tok:
        lines.append(f"- Tokenizer: byte-level BPE, {tok.get('vocab_size', c.vocab_size)} tokens, GPT-4 split pattern.")
    for s in ("base", stage) if chat else ("base",):
        m = stages.get(s, {})
        if not m:
            continue
        what = "Pretraining" if s == "base" else f"{s.upper()}"
        tokens = training_tokens(m)
        metrics = m.get("metrics", {})
        bits = [f"preset `{m['preset']}`" if m.get("preset") else None,
                f"{m['steps']} steps" if m.get("steps") else None,
                f"~{_human(tokens)} tokens" if tokens else None,
                f"{m['seconds'] / 60:.1f} min" if m.get("seconds") else None,
                f"validation bits per byte {metrics['val_bpb']:.3f}" if "val_bpb" in metrics else None,
                f"validation loss {metrics['val_loss']:.3f}" if "val_loss" in metrics else None]
        lines.append(f"- {what}: " + ", ".join(b for b in bits if b) + ".")
        if s != "base" and m.get("sources"):
            lines.append("  Conversation sources: " + ", ".join(
                f"{k} ({v.get('rows', '?')} rows)" for k, v in m["sources"].items()) + ".")
    host = meta.get("host", {})
    if host:
        lines.append(f"- Hardware: {host.get('cpus', '?')} CPUs ({host.get('platform', '?')}).")
    evals_path = run.evals(stage)
    if evals_path.exists():
        try:
            table = _eval_lines(json.loads(evals_path.read_text()))
        except (OSError, json.JSONDecodeError):
            table = []
        if table:
            lines += ["", "## Evaluation", "", f"From `picochat eval` (evals/{stage}.json):", ""] + table
    lines += ["", "## Use", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
              'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")']
    if chat:
        lines += ['messages = [{"role": "user", "content": "Who are you?"}]',
                  "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,",
                  '                                       return_tensors="pt", return_dict=True)',
                  "out = model.generate(**inputs, max_new_tokens=100, do_sample=True, temperature=0.8,",
                  "                     top_p=0.95, eos_token_id=tokenizer.eos_token_id)",
                  'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))']
    else:
        # the tokenizer puts <|bos|> in front itself, as picochat's own prompts have it
        lines += ['ids = tokenizer("The meaning of life is", return_tensors="pt").input_ids',
                  "out = model.generate(ids, max_new_tokens=50, do_sample=True, temperature=0.8, top_p=0.95)",
                  "print(tokenizer.decode(out[0], skip_special_tokens=True))"]
    lines += ["```", "",
              ("The tokenizer starts plain text with `<|bos|>`, as every training document "
               "started. The chat template (in tokenizer_config.json) writes its own: it renders "
               "`<|bos|><|user|>...<|end|><|assistant|>`; a turn ends with `<|end|>`."), "",
              "## Limitations", "",
              (f"- It is tiny ({_human(n_params)} parameters, {c.max_seq_len}-token context) and "
               "trained for minutes on a small offline corpus: it writes fluent-looking but often "
               "wrong or meaningless text, and knows few facts."),
              "- English-only web-like training data; other languages and code are poor.",
              ("- No safety tuning or preference training: it may produce offensive or false "
               "text. Do not rely on it for anything."),
              "- Made for learning how an assistant is built, not for use.", ""]
    return "\n".join(lines)
