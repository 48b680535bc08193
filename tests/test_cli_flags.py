"""The commands that run a model (sample, chat, serve, eval) share one set of generation flags,
with defaults taken from the dataclasses, and --dtype / --device work for each of them."""

import argparse
import subprocess
import sys

import pytest
import torch

from picochat.cli import SAMPLING_FLAGS, build_parser, main, resolve_defaults
from picochat.engine import SamplingParams
from picochat.hardware import pick_device
from picochat.model import Llama, ModelConfig, save_pretrained
from picochat.serve.app import ServeConfig
from picochat.tokenizer import Tokenizer

COMMANDS = ("sample", "chat", "serve", "eval")


def parse(*argv: str):
    args = build_parser().parse_args(list(argv))
    resolve_defaults(args)
    return args


def flags(command: str) -> dict[str, argparse.Action]:
    """A subcommand's flags by destination (argparse keeps subparsers in the `command` action)."""
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {a.dest: a for a in sub._actions}


@pytest.fixture
def model_run(fresh_run):
    """A run with an untrained micro model as base/ and sft/ (generation needs no training)."""
    tok = Tokenizer.load(fresh_run / "tokenizer")
    model = Llama(ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              max_seq_len=64))
    model.init_weights(0)
    for stage in ("base", "sft"):
        save_pretrained(model, fresh_run / stage, tok)
    return fresh_run


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "picochat.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=180)


def test_the_four_commands_accept_the_same_generation_flags():
    for command in COMMANDS:
        args = parse(command, "--run", "r", "--dtype", "fp32", "--device", "cpu")
        assert (args.dtype, args.device) == ("fp32", "cpu"), command
        assert parse(command, "--run", "r").device == "auto", command
    dtypes = {c: tuple(flags(c)["dtype"].choices) for c in COMMANDS}
    assert set(dtypes.values()) == {("auto", "fp32", "bf16", "int8")}, dtypes
    assert {flags(c)["device"].default for c in COMMANDS} == {"auto"}


def test_sampling_flags_default_to_the_dataclasses():
    for command in ("sample", "chat"):
        args = parse(command, "--run", "r")
        assert {f: getattr(args, f) for f in SAMPLING_FLAGS} == \
            {f: getattr(SamplingParams, f) for f in SAMPLING_FLAGS}, command
        given = parse(command, "--run", "r", "--temperature", "0", "--top-k", "5", "--top-p", "0.5",
                      "--max-tokens", "7", "--seed", "3")
        assert [getattr(given, f) for f in SAMPLING_FLAGS] == [0.0, 5, 0.5, 7, 3]
    serve = parse("serve", "--run", "r")
    for name in ("api_key", "max_concurrency", "max_queue", "max_body"):
        assert getattr(serve, name) == getattr(ServeConfig, name), name


def test_help_shows_the_dataclass_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {SamplingParams.temperature})" in text and f"(default: {SamplingParams.max_tokens})" in text


def test_sample_with_dtype_and_device(model_run):
    for dtype in ("fp32", "int8"):
        result = run_cli("sample", "--run", model_run, "--prompt", "The king", "--max-tokens", "8", "--seed", "0",
                         "--dtype", dtype, "--device", "cpu")
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.startswith("The king") and len(result.stdout) > len("The king\n")


def test_unknown_or_missing_devices_are_one_line_errors(model_run, capsys):
    missing = ["mps"] + ([] if torch.cuda.is_available() else ["cuda"])
    for command in COMMANDS:
        for device in ["toaster", "cpu:3", *missing]:
            assert main([command, "--run", str(model_run), "--device", device]) == 2, (command, device)
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith("picochat: error: --device"), (command, device, err)


def test_eval_refuses_int8(model_run, capsys):
    assert main(["eval", "--run", str(model_run), "--tasks", "spelling", "--dtype", "int8", "--device", "cpu"]) == 2
    assert "use auto, fp32 or bf16" in capsys.readouterr().err


def test_serve_gets_the_resolved_device_and_dataclass_defaults(model_run, monkeypatch):
    import picochat.serve.app

    calls = []
    monkeypatch.setattr(picochat.serve.app, "serve", lambda run, stage, **kw: calls.append((stage, kw)))
    assert main(["serve", "--run", str(model_run), "--device", "auto", "--dtype", "bf16"]) == 0
    (stage, kw), = calls
    assert stage == "sft" and kw["device"] == str(pick_device("auto")) and kw["dtype"] == "bf16"
    assert (kw["max_concurrency"], kw["max_queue"], kw["max_body"], kw["api_key"]) == \
        (ServeConfig.max_concurrency, ServeConfig.max_queue, ServeConfig.max_body, ServeConfig.api_key)
