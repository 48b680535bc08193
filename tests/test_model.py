import json

import pytest
import torch

from picochat.engine import SamplingParams, generate
from picochat.model import KVCache, Llama, ModelConfig, load_pretrained, save_pretrained
from picochat.rundir import PicochatError
from picochat.tokenizer import Tokenizer

CONFIG = ModelConfig(vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=96)


@pytest.fixture(scope="module")
def model():
    m = Llama(CONFIG)
    m.init_weights(seed=3)
    # larger-than-init weights make the logits (and so the greedy path) depend on every part
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(4.0)
    return m.eval()


def greedy_recompute(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


def test_state_dict_uses_huggingface_llama_names(model):
    keys = set(model.state_dict())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" in keys
    assert "model.layers.1.self_attn.k_proj.weight" in keys
    assert "model.layers.0.mlp.gate_proj.weight" in keys and "model.norm.weight" in keys
    assert model.state_dict()["model.layers.0.self_attn.k_proj.weight"].shape == (2 * 16, 64)  # GQA


def test_transformers_loads_checkpoint_with_same_logits_and_greedy_text(model, prepared_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer.load(prepared_run / "tokenizer")
    save_pretrained(model, tmp_path / "m", tok)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "llama"
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (3, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    # the folder's tokenizer as a user calls it, against picochat's own greedy continuation
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "m"))
    for text in ("The", "The king speaks"):
        ids = hf_tok(text, return_tensors="pt").input_ids
        hf_out = hf.generate(ids, max_new_tokens=20, do_sample=False, eos_token_id=None,
                             pad_token_id=hf_tok.pad_token_id)[0, ids.shape[1]:].tolist()
        prompt = tok.encode(text, bos=True)
        ours_out = [t for (t,) in generate(model, [prompt], SamplingParams(temperature=0, max_tokens=20))]
        assert ids[0].tolist() == prompt and ours_out == hf_out, text


def test_save_load_round_trip_and_corrupt_weights(model, tmp_path):
    save_pretrained(model, tmp_path / "m")
    loaded = load_pretrained(tmp_path / "m")
    x = torch.randint(0, 512, (1, 10))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(PicochatError, match="truncated"):
        load_pretrained(tmp_path / "m")


def test_kv_cache_greedy_equals_recompute_single_prompt(model):
    prompt = [5, 17, 300, 42, 7]
    cached = [t for (t,) in generate(model, [prompt], SamplingParams(temperature=0, max_tokens=30))]
    assert cached == greedy_recompute(model, prompt, 30)


def test_kv_cache_greedy_equals_recompute_ragged_batch(model):
    prompts = [[1, 2, 3], [400, 401, 402, 403, 404, 405, 406, 407], [9], [33, 44, 55, 66]]
    rows = [[] for _ in prompts]
    for step in generate(model, prompts, SamplingParams(temperature=0, max_tokens=25)):
        for row, token in zip(rows, step):
            row.append(token)
    for prompt, row in zip(prompts, rows):
        assert row == greedy_recompute(model, prompt, 25)


def test_cache_prefill_logits_match_full_forward(model):
    ids = torch.randint(0, 512, (2, 30))
    cache = KVCache(CONFIG, 2, 64)
    with torch.no_grad():
        full = model(ids)
        part = torch.cat([model(ids[:, :12], cache), model(ids[:, 12:13], cache), model(ids[:, 13:], cache)], 1)
    torch.testing.assert_close(part, full, atol=1e-5, rtol=1e-5)


def test_seeded_sampling_is_reproducible_and_respects_top_k(model):
    params = SamplingParams(temperature=1.0, top_k=1, max_tokens=10, seed=0)
    top1 = [t for (t,) in generate(model, [[1, 2]], params)]
    assert top1 == [t for (t,) in generate(model, [[1, 2]], SamplingParams(temperature=0, max_tokens=10))]
    sampled = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=10, seed=123)
    assert [t for (t,) in generate(model, [[1, 2]], sampled)] == [t for (t,) in generate(model, [[1, 2]], sampled)]


def test_flops_per_token_counts_matrix_weights(model):
    c = CONFIG
    per_layer = c.dim * c.dim * 2 + c.dim * (c.n_kv_heads * c.head_dim) * 2 + 3 * c.dim * c.ffn_dim
    matrices = c.n_layers * per_layer + c.dim * c.vocab_size
    norms = (2 * c.n_layers + 1) * c.dim
    assert model.flops_per_token(64) == 6 * (matrices + norms) + 12 * c.n_layers * c.dim * 64
