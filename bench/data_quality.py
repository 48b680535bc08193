"""Spam removal on the whole SpamAssassin corpus and language ID on the whole Debian Handbook.

    python bench/data_quality.py [--spam] [--langid]

Prints the quality filters' precision and recall at removing spam (all folders, and the held-out
folders the spam rules were not chosen on: spam-2, easy-ham-2, hard-ham-1), and language-ID
accuracy per handbook locale. Baseline for the spam figures: the issue's floor (50% of spam
removed, 90% of ham kept)."""

from __future__ import annotations

import argparse
import json
import time


def spam() -> None:
    from picochat.data.evaluate import spam_eval

    t = time.time()
    r = spam_eval()
    print(f"SpamAssassin, all folders: {r['spam']} spam / {r['ham']} ham")
    print(f"  recall (spam removed)      {r['recall']:.3f}   (floor 0.50: x{r['recall'] / 0.5:.2f})")
    print(f"  precision (removed = spam) {r['precision']:.3f}")
    print(f"  ham kept                   {r['ham_kept']:.3f}   (floor 0.90: x{r['ham_kept'] / 0.9:.2f})")
    print("  removal reasons:", json.dumps(r["reasons"]))
    h = spam_eval(folders=("spam-2", "easy-ham-2", "hard-ham-1"))
    print(f"Held out (spam-2, easy-ham-2, hard-ham-1): {h['spam']} spam / {h['ham']} ham: recall "
          f"{h['recall']:.3f}, precision {h['precision']:.3f}, ham kept {h['ham_kept']:.3f}")
    print(f"  ({time.time() - t:.0f} s)")


def langid() -> None:
    from picochat.data.evaluate import langid_eval

    t = time.time()
    r = langid_eval()
    print(f"{'locale':8s} {'lang':4s} {'pages':>5s} {'acc(folder)':>11s} {'untransl.':>9s} {'acc(actual)':>11s}  errors")
    for loc, v in r.items():
        print(f"{loc:8s} {v['expected']:4s} {v['pages']:5d} {v['accuracy']:11.3f} {v['untranslated_pages']:9d} "
              f"{v['accuracy_translated']:11.3f}  {v['errors']}")
    n = sum(v["pages"] for v in r.values())
    print(f"all      {n} pages: accuracy vs folder {sum(v['correct'] for v in r.values()) / n:.3f}, vs actual "
          f"language {sum(v['correct_translated'] for v in r.values()) / n:.3f} ({time.time() - t:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spam", action="store_true")
    ap.add_argument("--langid", action="store_true")
    a = ap.parse_args()
    if a.spam or not a.langid:
        spam()
    if a.langid or not a.spam:
        langid()


if __name__ == "__main__":
    main()
