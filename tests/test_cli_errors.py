"""Bad input gets one clear line on stderr, exit code 2, and overwrites nothing."""

import subprocess
import sys

import pytest

from picochat.cli import main
from picochat.rundir import PicochatError, RunDir


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "picochat.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("picochat: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-2000:]  # progress may precede it
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_missing_run_directory(tmp_path):
    result = run_cli("pretrain", "--run", tmp_path / "nope", "--preset", "micro")
    assert_one_line_error(result, "no run at", "picochat data build")
    assert not (tmp_path / "nope").exists()


def test_foreign_directory_is_refused_and_untouched(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    result = run_cli("data", "build", "--run", tmp_path, "--source", f"local:{tmp_path}")
    assert_one_line_error(result, "not a picochat run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_corpus_with_no_text(tmp_path):
    corpus = tmp_path / "empty"
    corpus.mkdir()
    (corpus / "a.txt").write_text("   \n\n")
    (corpus / "b.md").write_text("")
    assert_one_line_error(run_cli("data", "build", "--run", tmp_path / "r", "--source", f"local:{corpus}"),
                          "no documents")


def test_unknown_preset(fresh_run):
    assert_one_line_error(run_cli("pretrain", "--run", fresh_run, "--preset", "huge"),
                          "unknown preset 'huge'", "cpu-tiny")


def test_bad_setting(fresh_run):
    assert_one_line_error(run_cli("pretrain", "--run", fresh_run, "--preset", "micro", "--set", "lr=fast"),
                          "bad value for lr")


def test_truncated_checkpoint_is_detected_and_kept(fresh_run):
    args = ["pretrain", "--run", str(fresh_run), "--preset", "micro", "--max-steps", "4",
            "--set", "ckpt_every=2", "--set", "eval_every=0"]
    assert main(args) == 0
    latest = fresh_run / "base" / "checkpoints" / "step_000004" / "model.safetensors"
    latest.write_bytes(latest.read_bytes()[:200])
    damaged = latest.read_bytes()
    result = run_cli(*args, "--resume")
    assert_one_line_error(result, "corrupt or truncated", "delete that folder")
    assert latest.read_bytes() == damaged


def test_retraining_without_resume_refuses_to_overwrite(fresh_run):
    args = ["pretrain", "--run", str(fresh_run), "--preset", "micro", "--max-steps", "2", "--set", "eval_every=0"]
    assert main(args) == 0
    weights = (fresh_run / "base" / "model.safetensors").read_bytes()
    assert_one_line_error(run_cli(*args), "already has checkpoints", "--resume")
    assert (fresh_run / "base" / "model.safetensors").read_bytes() == weights


def test_sample_before_training(fresh_run):
    assert_one_line_error(run_cli("sample", "--run", fresh_run, "--prompt", "hi"), "picochat pretrain")


def test_a_model_folder_needs_its_config(fresh_run, capsys):
    """A stage folder holding only checkpoints/ (a training killed before it saved) is no model,
    for every command that loads one, and the hint names the command that makes the stage."""
    run = RunDir(fresh_run)
    (run.checkpoints("sft") / "step_000002").mkdir(parents=True)
    with pytest.raises(PicochatError, match=r"the sft model not found .*no config.json.*`picochat sft --run"):
        run.require_model("sft")
    with pytest.raises(PicochatError, match="`picochat reward --run"):
        run.require_model("reward")
    for command in (["sample", "--stage", "sft"], ["chat"], ["eval", "--stage", "sft"],
                    ["export", "--format", "hf", "--out", fresh_run.parent / "out"]):
        assert main([*map(str, command), "--run", str(fresh_run)]) == 2
        assert "no config.json" in capsys.readouterr().err, command


def test_sample_streams_and_is_reproducible(fresh_run):
    assert main(["pretrain", "--run", str(fresh_run), "--preset", "micro", "--max-steps", "20"]) == 0
    args = ("sample", "--run", fresh_run, "--prompt", "The king", "--max-tokens", "20", "--seed", "7")
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0 and first.stdout.startswith("The king")
    assert first.stdout == second.stdout and len(first.stdout) > len("The king") + 5
    greedy = run_cli("sample", "--run", fresh_run, "--prompt", "The king", "--temperature", "0", "--max-tokens", "20")
    assert greedy.stdout == run_cli("sample", "--run", fresh_run, "--prompt", "The king",
                                    "--temperature", "0", "--max-tokens", "20", "--seed", "99").stdout


@pytest.mark.parametrize("args", [["presets"], ["data", "sources"]])
def test_listing_commands(args, capsys):
    assert main(args) == 0
    assert capsys.readouterr().out.strip()
