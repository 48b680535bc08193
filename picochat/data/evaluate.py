"""Measurements of the cleaning steps on labelled data that installs offline.

    spam_eval()    the quality filters on the SpamAssassin e-mails: precision and recall at
                   removing spam (label from the folder: spam-* vs easy-ham-* / hard-ham-*)
    langid_eval()  language ID on the Debian Handbook: accuracy per locale folder

Both run the pipeline's own functions (extraction, language ID, quality) on the documents, in
one process; bench/data_quality.py prints them, tests/test_data_quality.py checks floors on samples.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

# Debian Handbook locale folder -> lid.176 label
LOCALE_LANG = {"nb-NO": "no", "zh-CN": "zh", "zh-TW": "zh"}


def _doc(text: str, meta: dict):
    from datatrove.data import Document

    return Document(text=text, id=meta.get("id", "x"), metadata=dict(meta))


def spam_eval(limit_per_class: int | None = None, seed: int = 0, folders: tuple[str, ...] | None = None) -> dict:
    """Quality filters at removing spam. `limit_per_class` samples that many spam and ham e-mails;
    `folders` keeps only those (e.g. the held-out spam-2, easy-ham-2, hard-ham-1)."""
    from picochat.data.sources import SpamAssassinSource
    from picochat.data.steps import LanguageIdentifier, Quality, email_to_text, normalize_text

    src = SpamAssassinSource()
    if not src.available():
        raise FileNotFoundError(f"SpamAssassin corpus not installed: {src.install_hint}")
    docs = {"spam": [], "ham": []}
    for d in src.documents():
        folder = d.url.split("/")[-2]
        if folders and folder not in folders:
            continue
        docs["spam" if folder.startswith("spam") else "ham"].append(d)
    if limit_per_class:
        rng = random.Random(seed)
        docs = {k: rng.sample(v, min(limit_per_class, len(v))) for k, v in docs.items()}
    lid, quality = LanguageIdentifier(), Quality()
    counts = Counter()
    reasons = defaultdict(Counter)
    started = time.time()
    for label, items in docs.items():
        for d in items:
            raw = d.content.decode("utf-8", "replace") if isinstance(d.content, bytes) else d.content
            text = normalize_text(email_to_text(raw))
            if not text:
                counts[(label, "removed_quality")] += 1
                reasons[label]["no text"] += 1
                continue
            lang, _ = lid(text)
            doc = _doc(text, {"language": lang, "url": d.url, "content_type": d.content_type})
            ok = quality.filter(doc)
            ok, reason = ok if isinstance(ok, tuple) else (ok, None)
            counts[(label, "kept" if ok else "removed_quality")] += 1
            if not ok:
                reasons[label][reason or "?"] += 1
            if ok and lang != "en":
                counts[(label, "non_english_kept_by_quality")] += 1
    spam_removed = counts[("spam", "removed_quality")]
    ham_removed = counts[("ham", "removed_quality")]
    n_spam, n_ham = len(docs["spam"]), len(docs["ham"])
    return {
        "spam": n_spam, "ham": n_ham,
        "spam_removed": spam_removed, "ham_removed": ham_removed,
        "recall": spam_removed / max(n_spam, 1),  # share of spam removed
        "precision": spam_removed / max(spam_removed + ham_removed, 1),  # share of removed that is spam
        "ham_kept": 1 - ham_removed / max(n_ham, 1),
        "reasons": {k: dict(v.most_common(8)) for k, v in reasons.items()},
        "seconds": round(time.time() - started, 1),
    }


def _shingles(text: str, n: int = 6) -> set:
    import re

    w = re.findall(r"\w+", text.lower())
    return {" ".join(w[i:i + n]) for i in range(max(len(w) - n + 1, 0))}


def langid_eval(per_locale: int | None = None, seed: int = 0) -> dict:
    """Language ID accuracy per Debian Handbook locale, against the locale folder.

    Many pages in the folders are untranslated English. `accuracy` takes the folder as the
    truth; `accuracy_translated` counts a page as English when at least 80% of its 6-word
    shingles are also on the en-US page of the same name (it was not translated), which is the
    identifier's own error rate."""
    from picochat.data.sources import DebianHandbookSource
    from picochat.data.steps import LanguageIdentifier, html_to_text, normalize_text

    src = DebianHandbookSource()
    if not src.available():
        raise FileNotFoundError(f"Debian Handbook not installed: {src.install_hint}")
    pages = defaultdict(list)
    for d in src.documents():
        locale, _, name = d.url.split("/browse/")[1].partition("/stable/")
        pages[locale].append((name, d))
    english = {name: _shingles(normalize_text(html_to_text(d.content.decode("utf-8", "replace"))))
               for name, d in pages.get("en-US", [])}
    rng = random.Random(seed)
    lid = LanguageIdentifier()
    out = {}
    for locale, docs in sorted(pages.items()):
        if per_locale:
            docs = rng.sample(docs, min(per_locale, len(docs)))
        want = LOCALE_LANG.get(locale, locale.split("-")[0])
        right = right_refined = untranslated = n = 0
        confusions = Counter()
        for name, d in docs:
            text = normalize_text(html_to_text(d.content.decode("utf-8", "replace")))
            if not text:
                continue
            n += 1
            got, _ = lid(text)
            sh = _shingles(text)
            same_as_english = locale != "en-US" and name in english and sh and \
                len(sh & english[name]) >= 0.8 * len(sh)
            untranslated += bool(same_as_english)
            truth = "en" if same_as_english else want
            right += got == want
            right_refined += got == truth
            if got != truth:
                confusions[got] += 1
        out[locale] = {"expected": want, "pages": n, "correct": right, "accuracy": right / max(n, 1),
                       "untranslated_pages": untranslated, "correct_translated": right_refined,
                       "accuracy_translated": right_refined / max(n, 1),
                       "errors": dict(confusions.most_common(3))}
    return out
