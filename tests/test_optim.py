"""Optimizers: Muon takes the hidden matrices and AdamW the rest, their joint state survives a
checkpoint, and a Muon pretraining run resumes bit for bit."""

import copy
import json
import shutil

import pytest
import torch

from picochat.cli import main
from picochat.config import TrainConfig
from picochat.model import Llama, ModelConfig
from picochat.rundir import PicochatError
from picochat.train import pretrain as pretrain_module
from picochat.hardware import pick_dtype
from picochat.train.optim import Muon, Optimizers, make_optimizer


def micro_model() -> Llama:
    model = Llama(ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32, vocab_size=256))
    model.init_weights(0)
    return model


def train_steps(model, optimizer, steps: int, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        ids = torch.randint(0, 256, (2, 17), generator=g)
        loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out.append(loss.item())
    return out


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    model = micro_model()
    optimizer = make_optimizer(model, TrainConfig(optimizer="muon"), torch.device("cpu"))
    adamw, muon = optimizer.optimizers
    names = {id(p): n for n, p in model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert in_muon == {n for n, p in model.named_parameters() if p.dim() == 2} - {"model.embed_tokens.weight",
                                                                                  "lm_head.weight"}
    assert in_adamw | in_muon == set(names.values()) and not in_adamw & in_muon
    with pytest.raises(PicochatError, match="adamw or muon"):
        TrainConfig(optimizer="sgd")


def test_muon_is_torchs_update_with_its_iterations_in_the_hardwares_dtype():
    torch.manual_seed(0)
    start = torch.randn(48, 24)
    params = {name: torch.nn.Parameter(start.clone()) for name in ("torch", "bf16", "fp32")}
    settings = {"lr": 0.02, "weight_decay": 0.1, "adjust_lr_fn": "match_rms_adamw"}
    optimizers = {"torch": torch.optim.Muon([params["torch"]], **settings),
                  "bf16": Muon([params["bf16"]], ns_dtype=torch.bfloat16, **settings),
                  "fp32": Muon([params["fp32"]], ns_dtype=torch.float32, **settings)}
    for _ in range(3):
        grad = torch.randn(48, 24)
        for name, opt in optimizers.items():
            params[name].grad = grad.clone()
            opt.step()
    assert torch.equal(params["bf16"], params["torch"])
    moved = (params["torch"] - start).norm()
    assert (params["fp32"] - params["torch"]).norm() < 0.05 * moved      # the same step, more precisely
    assert not torch.equal(params["fp32"], params["torch"])
    muon = make_optimizer(micro_model(), TrainConfig(optimizer="muon"), torch.device("cpu")).optimizers[1]
    assert muon.ns_dtype == pick_dtype("auto", torch.device("cpu"))


def test_joint_state_dict_round_trips_and_training_continues_identically():
    torch.manual_seed(0)
    model, twin = micro_model(), micro_model()
    cfg = TrainConfig(optimizer="muon", lr=1e-2)
    first, second = make_optimizer(model, cfg, torch.device("cpu")), make_optimizer(twin, cfg, torch.device("cpu"))
    train_steps(model, first, 3)
    twin.load_state_dict(model.state_dict())
    state = first.state_dict()
    assert sorted(state["state"]) == list(range(sum(1 for _ in model.parameters())))  # one numbering
    second.load_state_dict(copy.deepcopy(state))     # as from a file: no tensors shared with `first`
    assert train_steps(model, first, 3, seed=1) == train_steps(twin, second, 3, seed=1)
    with pytest.raises(PicochatError, match="other parameter groups"):
        Optimizers(torch.optim.SGD(twin.parameters(), lr=0.1)).load_state_dict(state)


def test_muon_pretraining_learns_and_resumes_exactly(prepared_run, tmp_path, monkeypatch):
    steady, crashed = tmp_path / "steady", tmp_path / "crashed"
    shutil.copytree(prepared_run, steady)
    shutil.copytree(prepared_run, crashed)
    args = ["--preset", "micro", "--dtype", "fp32", "--max-steps", "10", "--set", "optimizer=muon",
            "--set", "ckpt_every=4", "--set", "log_every=1"]
    assert main(["pretrain", "--run", str(steady), *args]) == 0

    def losses(run):
        rows = [json.loads(line) for line in (run / "metrics" / "pretrain.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r]

    assert losses(steady)[-1] < losses(steady)[0] - 0.3
    original = pretrain_module.NextTokenObjective.batch

    def crash(self, step, micro, rank, world, model=None):
        if step == 6:
            raise RuntimeError("simulated crash")
        return original(self, step, micro, rank, world, model)

    monkeypatch.setattr(pretrain_module.NextTokenObjective, "batch", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["pretrain", "--run", str(crashed), *args])
    monkeypatch.setattr(pretrain_module.NextTokenObjective, "batch", original)
    other = [a.replace("optimizer=muon", "optimizer=adamw") for a in args]
    assert main(["pretrain", "--run", str(crashed), *other, "--resume"]) == 2      # a clear error, not a traceback
    assert main(["pretrain", "--run", str(crashed), *args, "--resume"]) == 0
    assert losses(crashed) == losses(steady)
