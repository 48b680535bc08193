"""Preferences: comparisons of two answers, where they come from, and what learns from them.

    store      runs/R/prefs/comparisons.jsonl: pairs, labels, undos (append-only, crash-safe)
    sources    comparisons no person has to make: verifier pairs, rule pairs, hhh_alignment, a judge
    page       the labeling page (`picochat label`) and the feedback the server collects

The reward model (picochat.train.reward) and DPO (picochat.train.dpo) train on the store's
"train" comparisons and measure on its "heldout" ones.
"""
