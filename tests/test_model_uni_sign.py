"""Uni_Sign on the tiny mT5 (signfuse.models.uni_sign): inputs, loss, generation, keys."""
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import PINNED_TARGETS as TARGETS, golden, padded_parts
from helpers import embed_inputs, mt5_from_config_dict
from signfuse.config import TINY_POSE_CHANNELS, ModelConfig
from signfuse.models.mt5 import load_mt5
from signfuse.models.pose_encoder import PARTS, PoseEncoder
from signfuse.models.uni_sign import Uni_Sign, build_model



def make_batch(lengths=(6, 4, 2), seed: int = 0, targets=TARGETS) -> dict:
    """Random parts, shorter samples padded by repeating their last frame, as collate_fn does."""
    return padded_parts(lengths, torch.Generator().manual_seed(seed), targets)



@pytest.fixture(scope="module")
def model():
    return build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0).eval()


def smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Label-smoothed cross entropy written out: (1 - eps) * NLL + eps * mean over the vocabulary."""
    logp = torch.log_softmax(logits.double(), dim=-1)  # (B, L, vocab)
    keep = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]  # (B, L)
    uniform = -logp.mean(dim=-1)  # (B, L)
    return ((1 - eps) * nll + eps * uniform)[keep].mean()


# ---- building ----

def test_build_model_tiny(model):
    assert model.cfg.gcn_channels == TINY_POSE_CHANNELS
    assert model.cfg.d_model == model.mt5_model.config.d_model == model.pose_proj.out_features
    assert model.pose_proj.in_features == 4 * TINY_POSE_CHANNELS[-1]
    assert model.cfg.prompt.endswith("English: ")


def test_build_model_is_seeded_and_reloads_strictly():
    a = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0).eval()
    b = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0)
    c = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=1).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["pose_proj.weight"], c.state_dict()["pose_proj.weight"])
    assert not torch.equal(sa["mt5_model.lm_head.weight"], c.state_dict()["mt5_model.lm_head.weight"])
    c.load_state_dict(sa, strict=True)
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(c(batch)["logits"], a(batch)["logits"])


def test_state_dict_keys_are_pose_encoder_then_mt5(model):
    keys = list(model.state_dict())
    pose_keys = list(PoseEncoder(model.cfg).state_dict())
    mt5_keys = ["mt5_model." + k for k in model.mt5_model.state_dict()]
    assert keys == pose_keys + mt5_keys
    assert not any(k.startswith("tokenizer") for k in keys)


def test_unisign_checkpoint_loads_strictly_and_reproduces_golden_features():
    """Default widths and a 768-wide mT5: keys and shapes are the golden ones plus mt5_model.*."""
    from safetensors.torch import load_file
    golden_sd = {k: v.float() for k, v in load_file(golden("pose_encoder.safetensors")).items()}
    mt5 = mt5_from_config_dict({"d_model": 768, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 1,
                                "num_decoder_layers": 1, "vocab_size": 256, "tie_word_embeddings": False})
    _, tokenizer = load_mt5("tiny")
    model = Uni_Sign(ModelConfig(), mt5, tokenizer)
    own = model.state_dict()
    mt5_state = {"mt5_model." + k: v.clone() for k, v in mt5.state_dict().items()}
    assert set(own) == set(golden_sd) | set(mt5_state)
    assert all(own[k].shape == golden_sd[k].shape for k in golden_sd)
    model.load_state_dict({**golden_sd, **mt5_state}, strict=True)
    model.eval()
    expected = np.load(golden("expected.npz"))
    batch = {}
    for part in PARTS:
        parts = [expected[f"sample{i}_{part}"] for i in range(4)]
        batch[part] = torch.from_numpy(np.stack([np.concatenate([p, np.repeat(p[-1:], 40 - len(p), 0)]) for p in parts]))
    with torch.no_grad():
        feats = model.encode_pose(batch)
    torch.testing.assert_close(feats, torch.from_numpy(expected["pose_features"]), rtol=0, atol=1e-5)


# ---- inputs of mT5 ----

def test_prompt_comes_first_and_ends_with_eos(model):
    batch = make_batch()
    prompt_ids = model.tokenizer(model.cfg.prompt, return_tensors="pt")["input_ids"][0]  # (P,)
    P, (B, T) = len(prompt_ids), batch["attention_mask"].shape
    assert prompt_ids[-1] == model.tokenizer.eos_token_id
    with torch.no_grad():
        embeds, mask = embed_inputs(model, batch)
        pose = model.encode_pose(batch)
        prompt_embeds = model.mt5_model.get_input_embeddings()(prompt_ids)  # (P, d_model)
    assert embeds.shape == (B, P + T, model.cfg.d_model) and mask.shape == (B, P + T)
    assert mask.dtype == torch.int64
    assert torch.equal(mask[:, :P], torch.ones(B, P, dtype=torch.int64))
    assert torch.equal(mask[:, P:], batch["attention_mask"])
    torch.testing.assert_close(embeds[:, :P], prompt_embeds.expand(B, P, -1))
    torch.testing.assert_close(embeds[:, P:], pose)


def test_chinese_prompt_for_csl_datasets():
    _, tokenizer = load_mt5("tiny")
    mt5, _ = load_mt5("tiny")
    model = Uni_Sign(ModelConfig(dataset="CSL_Daily", gcn_channels=TINY_POSE_CHANNELS), mt5, tokenizer)
    with torch.no_grad():
        embeds, mask = embed_inputs(model, make_batch())
    P = mask.shape[1] - 6
    assert P == len(tokenizer("Translate sign language video to Chinese: ")["input_ids"])


def test_the_frame_mask_reaches_mt5(model):
    """mT5's encoder gets [prompt mask, frame mask], in forward and in generate."""
    batch = make_batch()
    seen = []

    def spy(module, args, kwargs):
        seen.append((kwargs["attention_mask"].clone(), kwargs["inputs_embeds"].shape))

    handle = model.mt5_model.encoder.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        with torch.no_grad():
            model(batch)
        model.generate(batch, max_new_tokens=2, num_beams=1)
    finally:
        handle.remove()
    assert len(seen) == 2
    P = seen[0][1][1] - batch["attention_mask"].shape[1]
    for mask, shape in seen:
        assert shape[:2] == mask.shape
        assert torch.equal(mask[:, P:].cpu(), batch["attention_mask"])
        assert bool(mask[:, :P].all())
    assert seen[0][0][2].tolist()[P:] == [1, 1, 0, 0, 0, 0]  # sample 2: two real frames


# ---- loss ----

def test_forward_shapes_and_label_smoothed_loss(model, monkeypatch):
    batch = make_batch()
    labels = model.tokenize_targets(batch["targets"])  # (B, L)
    longest = max(len(model.tokenizer(t)["input_ids"]) for t in batch["targets"])
    assert labels.shape == (3, longest)  # padded to the longest target, not to 50
    assert (labels == -100).sum() > 0 and (labels[:, 0] != -100).all()
    with torch.no_grad():
        out = model(batch)
    assert out["gate"] is None
    assert out["logits"].shape == (3, longest, model.mt5_model.config.vocab_size)
    assert torch.isfinite(out["loss"])
    expected = smoothed_ce(out["logits"], labels, eps=0.2)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)

    monkeypatch.setattr(model, "cfg", replace(model.cfg, label_smoothing=0.0))  # cfg is frozen
    with torch.no_grad():
        out0 = model(batch)
    nll = F.cross_entropy(out0["logits"].reshape(-1, out0["logits"].shape[-1]), labels.reshape(-1), ignore_index=-100)
    assert out0["loss"].item() == pytest.approx(nll.item(), rel=1e-5)
    assert out0["loss"].item() != pytest.approx(out["loss"].item(), rel=1e-3)


def test_padding_of_targets_is_ignored(model):
    """A sample's loss terms do not depend on how long the other targets in the batch are."""
    short = make_batch(lengths=(6, 4), targets=["no", "i want water"])
    longer = make_batch(lengths=(6, 4), targets=["no", "i want water today very good"])
    with torch.no_grad():
        logits_a = model(short)["logits"]
        logits_b = model(longer)["logits"]
    # the first sample's labels are the same: its logits over its own tokens match
    n = len(model.tokenizer("no")["input_ids"])
    torch.testing.assert_close(logits_a[0, :n], logits_b[0, :n], rtol=1e-5, atol=1e-5)


def test_targets_are_truncated(model, monkeypatch):
    monkeypatch.setattr(model, "cfg", replace(model.cfg, max_target_tokens=5))  # cfg is frozen
    labels = model.tokenize_targets(["i want water today very good yes no", "no"])
    assert labels.shape == (2, 5)
    assert labels[0, -1] == model.tokenizer.eos_token_id  # truncation keeps the closing </s>


def test_fuse_without_descriptions_is_identity(model):
    x = torch.randn(2, 3, model.cfg.d_model)
    fused, gate = model.fuse(x, {})
    assert fused is x and gate is None


# ---- generation ----

def test_generate_one_string_per_sample_and_deterministic(model):
    batch = make_batch()
    first = model.generate(batch, max_new_tokens=4, num_beams=2)
    second = model.generate(batch, max_new_tokens=4, num_beams=2)
    assert isinstance(first, list) and len(first) == 3 and all(isinstance(s, str) for s in first)
    assert first == second
    ids = model.generate_ids(batch, max_new_tokens=4, num_beams=2)
    assert ids.shape[0] == 3 and ids.shape[1] <= 1 + 4  # decoder start token + new tokens
    assert model.tokenizer.batch_decode(ids, skip_special_tokens=True) == first
    assert torch.is_grad_enabled()


def test_a_few_adamw_steps_lower_the_loss():
    model = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0)
    for module in model.mt5_model.modules():  # a fixed function of the weights: no dropout noise
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    batch = make_batch(lengths=(5, 3), targets=["you go home", "no"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0] and min(losses[-2:]) < min(losses[:-2]), losses
    # the loss reaches both parts: the pose encoder and mT5 get gradients
    assert model.proj_linear["right"].weight.grad.abs().sum() > 0
    assert model.gcn_modules["body"].layer0_0.gcn.A.grad.abs().sum() > 0
    assert model.mt5_model.encoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0
