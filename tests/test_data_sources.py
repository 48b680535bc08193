"""Sources: local folders in every supported format, WARC/WET files, Hugging Face datasets
(FineWeb schema, read from a local Parquet file), the offline-web parts, and bad inputs that
become counted problems instead of crashes."""

from __future__ import annotations

import gzip
import io
import json

import pytest

from picochat.data.sources import (HuggingFaceSource, LocalSource, OfflineWebSource, WarcSource, all_sources,
                                   brown_to_text, in_shard, open_source)
from picochat.rundir import PicochatError


def test_local_folder_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.html").write_text("<html><body><p>Hello</p></body></html>")
    (tmp_path / "b.htm").write_text("<p>Hi</p>")
    (tmp_path / "c.txt").write_text("plain text")
    (tmp_path / "d.md").write_text("# Title\n\nmarkdown")
    (tmp_path / "e.eml").write_text("Subject: hi\n\nbody")
    (tmp_path / "f.jsonl").write_text(json.dumps({"text": "one", "url": "https://x.org/1"}) + "\n" +
                                      json.dumps({"text": "two", "id": "my-id"}) + "\nnot json\n")
    pq.write_table(pa.table({"text": ["p1", "p2"], "url": ["https://y.org/a", "https://y.org/b"]}),
                   tmp_path / "g.parquet")
    (tmp_path / "h.txt.gz").write_bytes(gzip.compress(b"compressed text"))
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    docs = list(open_source(f"local:{tmp_path}").documents())
    by_type = {}
    for d in docs:
        by_type.setdefault(d.content_type, []).append(d)
    assert len(by_type["text/html"]) == 2
    assert len(by_type["message/rfc822"]) == 1
    texts = {d.content if isinstance(d.content, str) else d.content.decode() for d in docs if not d.problem}
    assert {"one", "two", "p1", "p2", "plain text", "compressed text"} <= texts
    urls = {d.url for d in docs}
    assert {"https://x.org/1", "https://y.org/a"} <= urls
    assert any(d.id == "my-id" for d in docs)
    assert [d.problem for d in docs if d.problem] == ["bad JSON line"]


def test_sharding_splits_documents_exactly(tmp_path):
    for i in range(40):
        (tmp_path / f"{i}.txt").write_text(f"doc {i}")
    src = LocalSource(str(tmp_path))
    everything = sorted(d.id for d in src.documents())
    shards = [sorted(d.id for d in src.documents(r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == everything
    assert all(shards)
    assert in_shard("abc", 0, 1)


def test_truncated_gzip_and_unreadable_are_problems(tmp_path):
    data = gzip.compress(b"x" * 100_000)
    (tmp_path / "bad.txt.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "bad.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n' * 1000)[:50])
    problems = sorted(d.problem for d in open_source(f"local:{tmp_path}").documents() if d.problem)
    assert problems == ["truncated gz file", "truncated gz file"]


def _warc(tmp_path, wet: bool = False):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path = tmp_path / ("crawl.warc.wet.gz" if wet else "crawl.warc.gz")
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for i in range(3):
            url = f"https://site{i}.example.com/page"
            if wet:
                rec = w.create_warc_record(url, "conversion", payload=io.BytesIO(f"text {i}".encode()),
                                           warc_content_type="text/plain")
            else:
                http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
                rec = w.create_warc_record(url, "response", payload=io.BytesIO(f"<p>page {i}</p>".encode()),
                                           http_headers=http)
            w.write_record(rec)
        img = StatusAndHeaders("200 OK", [("Content-Type", "image/png")], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record("https://x.org/a.png", "response", payload=io.BytesIO(b"\x89PNG"),
                                            http_headers=img))
    return path


def test_warc_and_wet(tmp_path):
    pytest.importorskip("warcio", reason="warc: sources need warcio (scripts/install_data.sh)")
    path = _warc(tmp_path)
    docs = list(WarcSource(str(path)).documents())
    assert [d.url for d in docs] == [f"https://site{i}.example.com/page" for i in range(3)]
    assert all(d.content_type == "text/html" and b"page" in d.content for d in docs)
    wet = _warc(tmp_path, wet=True)
    docs = list(open_source(f"warc:{wet}").documents())
    assert [d.content for d in docs] == [b"text 0", b"text 1", b"text 2"]
    assert all(d.content_type == "text/plain" for d in docs)
    # a truncated WARC is a counted problem after the records that could be read
    data = path.read_bytes()
    cut = tmp_path / "cut" / "crawl.warc.gz"
    cut.parent.mkdir()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    docs = list(WarcSource(str(cut)).documents())
    assert docs and docs[-1].problem


def test_hf_fineweb_schema_from_local_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # the columns of HuggingFaceFW/fineweb
    table = pa.table({"text": ["first page", "second page"], "id": ["<urn:uuid:1>", "<urn:uuid:2>"],
                      "dump": ["CC-MAIN-2024-10"] * 2, "url": ["https://a.com/", "https://b.com/"],
                      "date": ["2024-02-20T00:00:00Z"] * 2, "file_path": ["s3://x"] * 2,
                      "language": ["en"] * 2, "language_score": [0.9, 0.95], "token_count": [2, 2]})
    pq.write_table(table, tmp_path / "000_00000.parquet")
    src = open_source(f"hf:{tmp_path}")
    assert isinstance(src, HuggingFaceSource) and src.available()
    docs = list(src.documents())
    assert [(d.id, d.url, d.content) for d in docs] == [("<urn:uuid:1>", "https://a.com/", "first page"),
                                                         ("<urn:uuid:2>", "https://b.com/", "second page")]


def test_offline_web_lists_parts_and_skips_missing(capsys):
    names = [s.name for s in all_sources()]
    assert names[0] == "offline-web"
    for part in ("python-docs", "debian-handbook", "gcide", "wordnet", "kjv", "fortunes", "spamassassin",
                 "nlp-corpus", "brown", "shakespeare"):
        assert part in names
    for s in all_sources():
        assert s.install_hint

    class Missing:
        name, install_hint = "nothing", "apt-get install nothing"

        def available(self):
            return False

        def documents(self, rank=0, world_size=1):
            raise AssertionError("not installed")

    src = OfflineWebSource(parts=[Missing(), LocalSource(__file__)])
    docs = list(src.documents())
    assert len(docs) == 0  # a .py file is not a document type
    assert "apt-get install nothing" in capsys.readouterr().err


def test_unknown_source():
    with pytest.raises(PicochatError, match="picochat data sources"):
        open_source("ftp://nowhere")


def test_brown_tags_stripped():
    assert brown_to_text("\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ./.\n") == 'The jury said " no ".'


@pytest.mark.parametrize("name", ["python-docs", "debian-handbook", "gcide", "kjv", "spamassassin", "brown"])
def test_installed_parts_yield_documents(name):
    src = open_source(name)
    if not src.available():
        pytest.skip(f"{name} is not installed ({src.install_hint})")
    docs = []
    for d in src.documents(0, 50):  # a 1/50 share keeps this quick
        docs.append(d)
        if len(docs) == 3:
            break
    assert docs and all(d.url.startswith("https://") and d.content and not d.problem for d in docs)
    if name == "python-docs":
        assert docs[0].url.startswith("https://docs.python.org/3.11/")
