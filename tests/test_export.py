"""Export (GGUF, Hugging Face, model.gguf + run.py) and import, checked against the engines
that read the files: picochat itself, run.py as a subprocess, llama.cpp (llama-cpp-python) and
transformers."""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from picochat.chat import render_ids
from picochat.cli import main
from picochat.engine import SamplingParams, generate
from picochat.export import run as run_py
from picochat.export.importer import import_model
from picochat.model import Llama, ModelConfig, load_pretrained, save_pretrained
from picochat.rundir import PicochatError, RunDir
from picochat.tokenizer import CHAT_TEMPLATE, GPT4_PATTERN, SPLIT_PATTERN, Tokenizer

gguf = pytest.importorskip("gguf", reason="the gguf package is needed: pip install 'picochat[export]'")

PROMPT = "The king speaks to the queen"
TEXTS = ["Hello world", "The king's sword, 12345 and 3.14!", "café naïve Straße 日本 🙂",
         "  leading spaces\n\n\ttabs\r\nand CRLF  ", "I'M HERE, you'll see; they'd've", "",
         "<|end|> stays text", "x" * 50, "a\u00a0b\u2028c \u0301é"]


def one_line_error(capsys, argv, *fragments):
    assert main([str(a) for a in argv]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("picochat: error:"), err
    for f in fragments:
        assert f in err[0], err[0]


def picochat_greedy(model, tok, ids, n):
    """picochat's greedy tokens after `ids`, stopping after <|bos|> or <|end|> like run.py."""
    out = [t for (t,) in generate(model, [ids], SamplingParams(temperature=0, max_tokens=n),
                                  stop_ids={tok.bos_id, tok.end_id})]
    return out[:-1] if out and out[-1] in (tok.bos_id, tok.end_id) else out


# --- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(prepared_run, tmp_path_factory):
    """A run whose base and sft stages hold a random micro Llama with large weights, so its
    logits (and the greedy path) depend on every part of the model."""
    run = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(prepared_run, run)
    tok = Tokenizer.load(run / "tokenizer")
    model = Llama(ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              max_seq_len=96))
    model.init_weights(seed=5)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    for stage in ("base", "sft"):
        save_pretrained(model.eval(), run / stage, tok)
    return run


@pytest.fixture(scope="module")
def twofiles(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("twofiles")
    assert main(["export", "--run", str(tiny_run), "--stage", "sft", "--format", "twofiles", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def trained_run(prepared_run, tmp_path_factory):
    """A micro model pretrained for 30 steps (a real, if weak, language model) with its run.json."""
    run = tmp_path_factory.mktemp("export") / "trained"
    shutil.copytree(prepared_run, run)
    assert main(["pretrain", "--run", str(run), "--preset", "micro", "--max-steps", "30"]) == 0
    return run


# --- run.py ---------------------------------------------------------------------------------------
def run_script(folder, *args, stdin=None):
    """python run.py ... in a fresh process; also reports every non-stdlib module it imported."""
    code = ("import runpy, sys\n"
            "before = set(sys.modules)\n"          # what the interpreter's site set-up loaded
            f"sys.argv = ['run.py', *{list(map(str, args))!r}]\n"
            "try:\n    runpy.run_path('run.py', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "else:\n    code = 0\n"
            "mods = sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names))\n"
            "print('MODULES', ','.join(mods), file=sys.stderr)\n"
            "sys.exit(code)\n")
    return subprocess.run([sys.executable, "-c", code], cwd=folder, input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


def test_run_py_is_one_small_file_of_stdlib_and_numpy(twofiles):
    source = (twofiles / "run.py").read_text()
    assert source == Path(run_py.__file__).read_text()      # copied verbatim
    assert len(source.splitlines()) < 600
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy"}


def test_run_py_greedy_completion_equals_picochat(tiny_run, twofiles):
    result = run_script(twofiles, "model.gguf", "--prompt", PROMPT, "--temperature", "0", "--max-tokens", "25")
    assert result.returncode == 0, result.stderr
    modules = result.stderr.split("MODULES ")[-1].strip().split(",")
    # nothing beyond the standard library and NumPy (with the Cython runtime of its extensions)
    assert {m for m in modules if m and not m.startswith(("_cython", "cython_runtime"))} <= {"numpy"}, modules
    model, tok = load_pretrained(tiny_run / "sft").eval(), Tokenizer.load(tiny_run / "sft")
    expected = picochat_greedy(model, tok, tok.encode(PROMPT, bos=True), 25)
    assert len(expected) >= 5
    assert result.stdout == PROMPT + tok.decode(expected) + "\n"


def test_run_py_splits_numbers_as_each_pre_tokenizer_says():
    regex = pytest.importorskip("regex")
    rng = np.random.default_rng(1)
    alphabet = list("ab Z'sStT\n\t 0123456789.,-é日") + ["'ll", " the", "٣"]
    fuzz = ["".join(rng.choice(alphabet, size=int(rng.integers(1, 30)))) for _ in range(300)]
    for name, pattern in (("qwen2", SPLIT_PATTERN), ("llama-bpe", GPT4_PATTERN)):
        digits = run_py.SPLITS[name][0]
        for text in TEXTS + fuzz:
            assert run_py.split(text, digits) == regex.findall(pattern, text), (name, text)
    assert run_py.split("8737*733", 1) == ["8", "7", "3", "7", "*", "7", "3", "3"]
    assert run_py.split("8737*733", 3) == ["873", "7", "*", "733"]


def test_run_py_tokens_and_logits_equal_picochat(tiny_run, twofiles):
    meta, tensors = run_py.read_gguf(twofiles / "model.gguf")
    ours, rt = run_py.Llama(meta, tensors), run_py.Tokenizer(meta)
    tok = Tokenizer.load(tiny_run / "sft")
    rng = np.random.default_rng(0)
    alphabet = list("ab Z'sStT\n\r\t 0123.,!?-é日🙂ſ\u00a0\u2028\x1c") + ["'ll", "'VE", " the"]
    fuzz = ["".join(rng.choice(alphabet, size=int(rng.integers(1, 25)))) for _ in range(300)]
    for text in TEXTS + fuzz:
        assert rt.encode(text) == tok.encode(text), repr(text)
        assert rt.decode(tok.encode(text)) == text
    ids = tok.encode("The queen answers slowly because the night is dark. " * 3, bos=True)
    reference = load_pretrained(tiny_run / "sft").eval()
    with torch.no_grad():
        expected = reference(torch.tensor([ids]))[0].numpy()
    logits = ours.forward(ids, 0, all_logits=True)
    assert logits.dtype == np.float32           # no silent float64 promotion (4x slower decoding)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    # the KV cache: the same positions one token at a time
    step = [ours.forward(ids[:10], 0)] + [ours.forward([t], i) for i, t in enumerate(ids[10:], start=10)]
    np.testing.assert_allclose(np.stack(step), expected[9:], atol=1e-4, rtol=0)


def test_run_py_dequantizes_every_dtype_like_gguf(tiny_run, tmp_path):
    """run.py's own f16 / bf16 / q8_0 decoding gives exactly the gguf package's fp32 values."""
    from gguf.quants import dequantize

    for dtype in ("f16", "bf16", "q8_0"):
        assert main(["export", "--run", str(tiny_run), "--stage", "sft", "--format", "twofiles",
                     "--dtype", dtype, "--out", str(tmp_path / dtype)]) == 0
        _, ours = run_py.read_gguf(tmp_path / dtype / "model.gguf")
        reader = gguf.GGUFReader(str(tmp_path / dtype / "model.gguf"))
        assert {t.tensor_type.name for t in reader.tensors} == {"F32", dtype.upper()}
        for t in reader.tensors:
            expected = dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
            np.testing.assert_array_equal(ours[t.name], expected, err_msg=f"{dtype} {t.name}")


def test_run_py_chat_follows_the_template(tiny_run, twofiles):
    result = run_script(twofiles, "model.gguf", "--temperature", "0", "--max-tokens", "12",
                        "--system", "Be brief.", stdin="Who are you?\nAnd then?\n")
    assert result.returncode == 0, result.stderr
    # each answer streams after "assistant> " and ends with a newline before the next prompt
    replies = [part[:part.rindex("\n\nyou> ")] for part in result.stdout.split("assistant> ")[1:]]
    assert len(replies) == 2, result.stdout
    model, tok = load_pretrained(tiny_run / "sft").eval(), Tokenizer.load(tiny_run / "sft")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}]
    for i, question in enumerate(["And then?", None]):
        prompt = render_ids(tok, messages).ids + [tok.special_tokens["<|assistant|>"]]
        out = [t for (t,) in generate(model, [prompt], SamplingParams(temperature=0, max_tokens=12),
                                      stop_ids={tok.end_id})]
        expected = tok.decode([t for t in out if t != tok.end_id])
        assert replies[i] == expected
        messages += [{"role": "assistant", "content": expected}]
        if question:
            messages.append({"role": "user", "content": question})


def test_run_py_rejects_bad_files(tiny_run, twofiles, tmp_path):
    data = (twofiles / "model.gguf").read_bytes()
    cases = {"truncated.gguf": (data[: len(data) // 2], "truncated"),
             "header.gguf": (data[:200], "truncated"),
             "notes.gguf": (b"just some text\n" * 10, "not a GGUF file"),
             "gpt2.gguf": (None, "architecture 'gpt2' is not supported")}
    write_gguf_of_arch(tmp_path / "gpt2.gguf", "gpt2")
    shutil.copy(twofiles / "run.py", tmp_path / "run.py")
    for name, (content, fragment) in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        result = subprocess.run([sys.executable, "run.py", name, "--prompt", "hi"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("run.py: error:") and fragment in lines[0], lines


# --- GGUF ---------------------------------------------------------------------------------------
def write_gguf_of_arch(path, arch):
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_metadata_tensors_and_types(tiny_run, tmp_path):
    assert main(["export", "--run", str(tiny_run), "--stage", "sft", "--format", "gguf",
                 "--dtype", "q8_0", "--out", str(tmp_path)]) == 0
    reader = gguf.GGUFReader(str(tmp_path / "model.gguf"))
    value = lambda key: reader.fields[key].contents()
    assert value("general.architecture") == "llama"
    expected = {"llama.context_length": 96, "llama.embedding_length": 64, "llama.block_count": 2,
                "llama.feed_forward_length": 192, "llama.attention.head_count": 4,
                "llama.attention.head_count_kv": 2, "llama.rope.freq_base": 10000.0,
                "llama.vocab_size": 512, "llama.rope.dimension_count": 16}
    assert {k: value(k) for k in expected} == expected
    assert value("llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    tok = Tokenizer.load(tiny_run / "sft")
    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "qwen2"
    tokens, types = value("tokenizer.ggml.tokens"), value("tokenizer.ggml.token_type")
    for text, i in tok.special_tokens.items():
        assert tokens[i] == text and types[i] == gguf.TokenType.CONTROL
    assert sum(t == gguf.TokenType.NORMAL for t in types) == len(tok.ranks)
    assert value("tokenizer.ggml.bos_token_id") == tok.bos_id
    assert value("tokenizer.ggml.eos_token_id") == tok.end_id
    # plain text gets <|bos|> in front in GGUF readers as in transformers and picochat itself
    from tokenizers import Tokenizer as HFTokenizer

    hf_ids = HFTokenizer.from_file(str(tiny_run / "sft" / "tokenizer.json")).encode(PROMPT).ids
    assert value("tokenizer.ggml.add_bos_token") is True and hf_ids == tok.encode(PROMPT, bos=True)
    assert value("tokenizer.ggml.add_eos_token") is False
    assert value("tokenizer.chat_template") == CHAT_TEMPLATE
    kinds = {t.name: t.tensor_type for t in reader.tensors}
    assert len(kinds) == 3 + 9 * 2
    assert kinds["blk.1.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert kinds["output_norm.weight"] == gguf.GGMLQuantizationType.F32
    for name in ("token_embd", "output", "blk.0.attn_q", "blk.0.attn_k", "blk.0.attn_v",
                 "blk.0.attn_output", "blk.1.ffn_gate", "blk.1.ffn_up", "blk.1.ffn_down"):
        assert kinds[f"{name}.weight"] == gguf.GGMLQuantizationType.Q8_0, name


def test_q8_0_is_4x_smaller_and_keeps_perplexity(trained_run, tmp_path):
    files = {}
    for dtype in ("f32", "q8_0"):
        assert main(["export", "--run", str(trained_run), "--stage", "base", "--format", "gguf",
                     "--dtype", dtype, "--out", str(tmp_path / dtype)]) == 0
        files[dtype] = tmp_path / dtype / "model.gguf"
    assert files["f32"].stat().st_size / files["q8_0"].stat().st_size > 3.3
    val = np.fromfile(next((trained_run / "data" / "tokens").glob("val_*.bin")), dtype=np.uint16)
    windows = [val[i:i + 64].tolist() for i in range(0, min(len(val), 64 * 8) - 64, 64)]

    def perplexity(path):
        meta, tensors = run_py.read_gguf(path)
        model = run_py.Llama(meta, tensors)
        nll = []
        for w in windows:
            logits = model.forward(w[:-1], 0, all_logits=True).astype(np.float64)
            logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
            nll += list(logz - logits[np.arange(len(w) - 1), w[1:]])
        return float(np.exp(np.mean(nll)))

    f32, q8 = perplexity(files["f32"]), perplexity(files["q8_0"])
    assert f32 < 400            # it learned something (uniform would be 512)
    assert abs(q8 / f32 - 1) < 0.02, (f32, q8)


def test_gguf_round_trip_gives_identical_weights(tiny_run, tmp_path):
    assert main(["export", "--run", str(tiny_run), "--stage", "base", "--format", "gguf", "--out", str(tmp_path / "g")]) == 0
    assert main(["import", str(tmp_path / "g" / "model.gguf"), "--run", str(tmp_path / "run"), "--stage", "sft"]) == 0
    before, after = load_pretrained(tiny_run / "base").state_dict(), load_pretrained(tmp_path / "run" / "sft").state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    assert (tmp_path / "run" / "sft" / "tokenizer.json").read_text() == (tiny_run / "base" / "tokenizer.json").read_text()
    assert (tmp_path / "run" / "tokenizer" / "tokenizer.json").exists()
    meta = RunDir(tmp_path / "run").read_meta()["stages"]["sft"]
    assert meta["imported_from"].endswith("model.gguf") and meta["model"]["dim"] == 64
    # a quantized file comes back within q8_0's rounding
    assert main(["export", "--run", str(tiny_run), "--stage", "base", "--format", "gguf", "--dtype", "q8_0",
                 "--out", str(tmp_path / "q")]) == 0
    import_model(tmp_path / "q" / "model.gguf", RunDir(tmp_path / "run"), "base")
    q8 = load_pretrained(tmp_path / "run" / "base").state_dict()
    for k in before:
        scale = before[k].abs().max()
        assert (before[k] - q8[k]).abs().max() <= scale / 127 + 1e-6, k


def test_modelfile_is_well_formed_and_renders_the_chat_template(tiny_run, tmp_path):
    assert main(["export", "--run", str(tiny_run), "--stage", "sft", "--format", "gguf", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "Modelfile").read_text()
    instructions = re.findall(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER|LICENSE|ADAPTER|MESSAGE) (.*?)(?=^\w+ |\Z)',
                              text, flags=re.MULTILINE | re.DOTALL)
    assert "".join(f"{k} {v}" for k, v in instructions) == text       # every line is an instruction
    values = {}
    for k, v in instructions:
        values.setdefault(k, []).append(v.strip())
    assert values["FROM"] == ["./model.gguf"] and (tmp_path / "model.gguf").exists()
    assert 'stop "<|end|>"' in values["PARAMETER"]
    (template,) = values["TEMPLATE"]
    assert template.startswith('"""') and template.endswith('"""')
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
    rendered = render_go_template(template[3:-3], messages)
    tok = Tokenizer.load(tiny_run / "sft")
    assert "<|bos|>" + rendered == tok.render_chat(messages, add_generation_prompt=True)


def render_go_template(template, messages):
    """Go text/template, the subset this Modelfile uses: {{- trimming, range .Messages,
    if eq .Role "x" / else / end, .Role and .Content."""
    template = re.sub(r"\s*\{\{-\s*", "{{", re.sub(r"\s*-\}\}\s*", "}}", template))
    tokens = re.split(r"\{\{\s*(.*?)\s*\}\}", template)        # even: text, odd: an action

    def block(i, msg, live, out):
        """Render from tokens[i] to the else/end closing this level: (index after it, which)."""
        while i < len(tokens):
            if i % 2 == 0:
                out += [tokens[i]] if live else []
                i += 1
                continue
            action, i = tokens[i], i + 1
            if action in ("else", "end"):
                return i, action
            if action == "range .Messages":
                after, _ = block(i, None, False, [])
                for m in messages if live else []:
                    block(i, m, True, out)
                i = after
            elif action.startswith("if eq .Role "):
                cond = live and msg["role"] == json.loads(action[len("if eq .Role "):])
                i, stop = block(i, msg, cond, out)
                if stop == "else":
                    i, stop = block(i, msg, live and not cond, out)
                assert stop == "end", "if without end"
            elif action in (".Role", ".Content"):
                out += [msg[action[1:].lower()]] if live else []
            else:
                raise AssertionError(f"unexpected template action {action!r}")
        return i, None

    out = []
    assert block(0, None, True, out) == (len(tokens), None), "unbalanced template"
    return "".join(out)


# --- llama.cpp ----------------------------------------------------------------------------------
def test_llama_cpp_reads_the_gguf_with_picochat_tokens_and_greedy_text(tiny_run, twofiles):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'picochat[export]'")
    llm = llama_cpp.Llama(str(twofiles / "model.gguf"), n_ctx=96, n_threads=1, verbose=False,
                          type_k=0, type_v=0, logits_all=True)     # fp32 KV cache: exact enough to compare
    tok = Tokenizer.load(tiny_run / "sft")
    for text in TEXTS:
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok.encode(text), repr(text)
        assert llm.tokenize(text.encode(), special=False) == tok.encode(text, bos=True), repr(text)
    assert llm.tokenize(b"<|user|>hi<|end|>", add_bos=True, special=True) == \
        tok.encode_special("<|bos|><|user|>hi<|end|>")
    assert llm.metadata["tokenizer.chat_template"] == CHAT_TEMPLATE
    # llama-cpp-python's chat formatter, given the file's template, renders picochat's prompt
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, who are you?"}]
    rendered = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"], eos_token="<|end|>",
                                   bos_token="<|bos|>")(messages=messages).prompt
    assert llm.tokenize(rendered.encode(), add_bos=False, special=True) == \
        render_ids(tok, messages).ids + [tok.special_tokens["<|assistant|>"]]
    model = load_pretrained(tiny_run / "sft").eval()
    ids = tok.encode(PROMPT, bos=True)
    with torch.no_grad():
        expected_logits = model(torch.tensor([ids]))[0].numpy()
    llm.reset()
    llm.eval(ids)
    np.testing.assert_allclose(np.asarray(llm.scores[:len(ids)]), expected_logits, atol=2e-3, rtol=0)
    expected = picochat_greedy(model, tok, ids, 25)
    got = []
    for _ in range(25):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        if t in (tok.bos_id, tok.end_id):
            break
        got.append(t)
        llm.eval([t])
    assert got == expected


# --- Hugging Face -------------------------------------------------------------------------------
def test_hf_export_has_a_model_card_and_loads_in_transformers(trained_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    (trained_run / "evals").mkdir(exist_ok=True)
    (trained_run / "evals" / "base.json").write_text(json.dumps({"tasks": {"arithmetic": {
        "family": "generative", "metric": "exact_match", "value": 0.125, "chance": 0.0, "n": 40}}}))
    out = tmp_path / "hf"
    assert main(["export", "--run", str(trained_run), "--stage", "base", "--format", "hf", "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "license: mit" in front and "library_name: transformers" in front and "- picochat" in front
    meta = json.loads((trained_run / "run.json").read_text())["stages"]["base"]
    assert "30 steps" in card and f"{meta['metrics']['val_bpb']:.3f}" in card
    assert "| arithmetic | exact_match | 0.125 | 0.000 | 40 |" in card
    assert "AutoModelForCausalLM" in card and "## Limitations" in card
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, load_pretrained(trained_run / "base")(ids), atol=1e-4, rtol=0)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    assert hf_tok.chat_template == CHAT_TEMPLATE
    # the folder used as a transformers user uses it continues text as `picochat sample` does
    tok, model = Tokenizer.load(trained_run / "tokenizer"), load_pretrained(trained_run / "base").eval()
    for text in ("The", PROMPT):
        ids = hf_tok(text, return_tensors="pt").input_ids
        theirs = hf.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=None,
                             pad_token_id=hf_tok.pad_token_id)[0, ids.shape[1]:].tolist()
        ours = [t for (t,) in generate(model, [tok.encode(text, bos=True)], SamplingParams(temperature=0, max_tokens=20))]
        assert ids[0].tolist() == tok.encode(text, bos=True) and theirs == ours, text


def test_model_card_examples_run_as_written(trained_run, tiny_run, tmp_path):
    """The cards' Python examples (base: completion; sft: chat template), run in a fresh
    process on the exported folders, print text."""
    scripts = []
    for run, stage in ((trained_run, "base"), (tiny_run, "sft")):
        out = tmp_path / stage
        assert main(["export", "--run", str(run), "--stage", stage, "--format", "hf", "--out", str(out)]) == 0
        (code,) = re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(), flags=re.DOTALL)
        scripts.append(code.replace("path/to/this/folder", str(out)).replace("max_new_tokens=100", "max_new_tokens=8")
                       + "print('<<END>>')\n")
    assert "apply_chat_template" in scripts[1] and "apply_chat_template" not in scripts[0]
    # the base example's prompt reaches the model with one <|bos|>, as picochat's own prompts do
    transformers = pytest.importorskip("transformers")
    (prompt,) = re.findall(r'tokenizer\("([^"]*)"', scripts[0])
    tok = Tokenizer.load(trained_run / "tokenizer")
    assert transformers.AutoTokenizer.from_pretrained(str(tmp_path / "base"))(prompt).input_ids == \
        tok.encode(prompt, bos=True)
    # and the chat example's ids are picochat's prompt: the template's <|bos|>, not two
    messages = [{"role": "user", "content": "Who are you?"}]
    chat_ids = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "sft")).apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert chat_ids == render_ids(tok, messages).ids + [tok.special_tokens["<|assistant|>"]]
    (tmp_path / "examples.py").write_text("\n".join(scripts))
    result = subprocess.run([sys.executable, "examples.py"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("<<END>>") == 2


def test_import_transformers_llama_gives_the_same_logits(prepared_run, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=160,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=80, rms_norm_eps=1e-6, rope_theta=50000.0,
                                      tie_word_embeddings=True)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path / "hf")
    Tokenizer.load(prepared_run / "tokenizer").save(tmp_path / "hf")
    assert main(["import", str(tmp_path / "hf"), "--run", str(tmp_path / "run")]) == 0
    ours = load_pretrained(tmp_path / "run" / "base").eval()
    assert ours.config.norm_eps == 1e-6 and ours.config.rope_theta == 50000.0 and ours.config.max_seq_len == 80
    ids = torch.randint(0, 512, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-4, rtol=0)
    capsys.readouterr()
    assert main(["sample", "--run", str(tmp_path / "run"), "--prompt", "The king", "--max-tokens", "5"]) == 0
    # importing over a model already there is refused, and the model is kept
    one_line_error(capsys, ["import", tmp_path / "hf", "--run", tmp_path / "run"], "already holds a model")


def write_pre_bos_tokenizer(folder: Path) -> None:
    """Turn a model folder's tokenizer files into what picochat wrote before the tokenizer
    added <|bos|> itself: no post-processor, add_bos_token false."""
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["post_processor"] = None
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["add_bos_token"] = False
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def test_import_reads_folders_written_before_and_after_the_tokenizer_added_bos(tiny_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer.load(tiny_run / "tokenizer")
    old = tmp_path / "old"
    shutil.copytree(tiny_run / "base", old)
    write_pre_bos_tokenizer(old)
    assert transformers.AutoTokenizer.from_pretrained(str(old))("The").input_ids == tok.encode("The")
    ids = torch.randint(0, tok.vocab_size, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = load_pretrained(tiny_run / "base").eval()(ids)
    for name, source in (("old", old), ("new", tiny_run / "base")):
        dest = import_model(source, tmp_path / f"run-{name}")
        loaded = Tokenizer.load(dest)
        assert (loaded.ranks, loaded.special_tokens) == (tok.ranks, tok.special_tokens), name
        # the imported folder is written anew, so transformers users of either get picochat's ids
        hf_tok = transformers.AutoTokenizer.from_pretrained(str(dest))
        assert hf_tok("The").input_ids == tok.encode("The", bos=True), name
        with torch.no_grad():
            torch.testing.assert_close(load_pretrained(dest).eval()(ids), expected, atol=0, rtol=0)


def test_import_and_export_errors_are_one_line(tiny_run, twofiles, tmp_path, capsys):
    run = tmp_path / "run"
    data = (twofiles / "model.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 3])
    one_line_error(capsys, ["import", tmp_path / "cut.gguf", "--run", run], "not a readable GGUF", "truncated")
    write_gguf_of_arch(tmp_path / "gpt2.gguf", "gpt2")
    one_line_error(capsys, ["import", tmp_path / "gpt2.gguf", "--run", run], "'gpt2' model", "'llama'")
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, ["import", tmp_path / "empty", "--run", run], "not a model folder")
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(capsys, ["import", tmp_path / "notes.txt", "--run", run], "neither a model folder")
    one_line_error(capsys, ["import", tmp_path / "missing", "--run", run], "does not exist")
    # a Llama whose tokenizer lacks picochat's special tokens
    foreign = tmp_path / "foreign"
    save_pretrained(load_pretrained(tiny_run / "base"), foreign)
    tok = Tokenizer.load(tiny_run / "tokenizer")
    Tokenizer(tok.ranks, tok.pattern, {"<|endoftext|>": len(tok.ranks)}).save(foreign)
    one_line_error(capsys, ["import", foreign, "--run", run], "lacks picochat's special tokens", "<|bos|>")
    assert not run.exists()   # failed imports leave no run folder behind
    # export: a stage with no model, --out that is a file
    one_line_error(capsys, ["export", "--run", tiny_run, "--stage", "rl", "--format", "gguf", "--out", tmp_path / "x"],
                   "the rl model not found")
    one_line_error(capsys, ["export", "--run", tiny_run, "--format", "gguf", "--out", tmp_path / "notes.txt"],
                   "is a file")
    with pytest.raises(PicochatError, match="hf format"):
        from picochat.export import export_model
        export_model(RunDir(tiny_run), "sft", "hf", tmp_path / "h", dtype="q8_0")
