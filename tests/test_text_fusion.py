"""Text encoder, mask embedding, frame text features, gating and cross-attention fusion."""
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st
from helpers import ProjectedTextEncoder, fusion_parameters
from transformers import AutoTokenizer, MT5Config, MT5ForConditionalGeneration

from signfuse.config import TINY_MT5_DIR, ModelConfig
from signfuse.errors import InputError
from signfuse.models.text_fusion import (
    ALIGNMENT_KINDS, DIRECTION_EPS, GATE_INIT, TEXT_SCALE, CrossAttentionFusion, DescriptionFusion,
    GatingFusion, LearnableMaskEmbedding, TextEncoder, alignment_kinds, frame_text_features,
    relative_position_bucket,
)

D, TEXT_DIM = 32, 64  # pose width of the small fusion tests; the tiny mT5's width

TEXTS = ["right hand moves up to the chin", "both hands move down", "hand touches chin"]


def small_cfg(kind, **kw):
    base = dict(d_model=D, text_dim=TEXT_DIM, fusion_hidden=16, cross_attn_heads=4,
                text_fusion_type=kind, text_dropout_p=0.0)
    base.update(kw)
    return ModelConfig(**base)


def make_batch():
    """B=2, T=6. Sample 0: texts 0 and 1 (described at frames 10 and 14, frames between
    interpolated), then nothing. Sample 1: text 2 at frame 3, nearest afterwards, then nothing."""
    idx = torch.full((2, 6, 2), -1)
    w = torch.zeros(2, 6, 2)
    has = torch.zeros(2, 6, 1)
    idx[0, 0] = torch.tensor([0, -1]); w[0, 0] = torch.tensor([1.0, 0.0]); has[0, 0] = 1
    idx[0, 1] = torch.tensor([0, 1]); w[0, 1] = torch.tensor([0.5, 0.5])
    idx[0, 2] = torch.tensor([1, -1]); w[0, 2] = torch.tensor([1.0, 0.0]); has[0, 2] = 1
    idx[1, 0] = torch.tensor([2, -1]); w[1, 0] = torch.tensor([1.0, 0.0]); has[1, 0] = 1
    idx[1, 1] = torch.tensor([2, -1]); w[1, 1] = torch.tensor([1.0, 0.0])
    frames = torch.tensor([[10, 12, 14, 16, 18, 20], [3, 6, 9, 12, 15, -1]])
    return {"desc_texts": list(TEXTS), "desc_index": idx, "desc_weight": w,
            "has_description": has, "frame_indices": frames}


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return AutoTokenizer.from_pretrained(TINY_MT5_DIR)


@pytest.fixture(scope="module")
def tiny_encoder():
    torch.manual_seed(0)
    from transformers import MT5EncoderModel
    return MT5EncoderModel(MT5Config.from_pretrained(TINY_MT5_DIR))


class CountingEncoder(nn.Module):
    """Wraps an mT5 encoder and records the batch size of every call."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.batches = []

    def forward(self, input_ids, attention_mask):
        self.batches.append(list(input_ids.shape))
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


class Owner(nn.Module):
    """Stands in for Uni_Sign: a pose layer, a text encoder attribute, the fusion."""

    def __init__(self, cfg, text_encoder):
        super().__init__()
        self.pose_proj = nn.Linear(8, cfg.d_model)
        self.text_encoder = text_encoder
        self.text_fusion = DescriptionFusion(cfg)

    def forward(self, x, batch):
        vectors = self.text_encoder.encode(batch["desc_texts"])
        return self.text_fusion(self.pose_proj(x), batch, vectors)


# ----------------------------------------------------------------------------- mask, features

def test_mask_embedding_is_a_1xD_parameter_with_std_001():
    torch.manual_seed(0)
    m = LearnableMaskEmbedding(20000)
    out = m()
    assert out.shape == (1, 20000) and out is m.weight and isinstance(out, nn.Parameter)
    assert 0.0095 < out.std().item() < 0.0105 and abs(out.mean().item()) < 1e-3
    assert list(dict(m.named_parameters())) == ["weight"]


def test_frame_text_features_by_hand():
    vectors = torch.tensor([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]])
    mask = torch.tensor([[-3.0, -4.0]])
    idx = torch.tensor([[[0, -1], [0, 1], [2, -1]],
                        [[-1, -1], [1, 2], [1, -1]]])
    w = torch.tensor([[[1.0, 0.0], [0.25, 0.75], [1.0, 0.0]],
                      [[0.0, 0.0], [0.5, 0.5], [0.0, 0.0]]])  # (1, 2): index but weight 0 (dropped)
    out = frame_text_features(vectors, idx, w, mask_embedding=mask)
    expected = torch.tensor([[[1.0, 2.0], [7.75, 15.5], [100.0, 200.0]],
                             [[-3.0, -4.0], [55.0, 110.0], [-3.0, -4.0]]])
    assert out.shape == (2, 3, 2)
    assert torch.equal(out, expected)
    # an explicit has_text overrides the weights' verdict
    has_text = torch.tensor([[True, False, True], [True, True, True]])
    out2 = frame_text_features(vectors, idx, w, has_text, mask)
    assert torch.equal(out2[0, 1], mask[0]) and torch.equal(out2[1, 0], torch.zeros(2))
    # no texts at all in the batch (N = 0): every frame gets the mask embedding
    empty = frame_text_features(torch.zeros(0, 2), torch.full((1, 2, 2), -1), torch.zeros(1, 2, 2),
                                mask_embedding=mask)
    assert torch.equal(empty, mask.expand(1, 2, 2))


# ----------------------------------------------------------------------------- identity at init

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["gating", "cross_attn"]),
       train=st.booleans())
def test_fusion_is_identity_at_init(seed, kind, train):
    g = torch.Generator().manual_seed(seed)
    B = int(torch.randint(1, 4, (1,), generator=g))
    T = int(torch.randint(1, 8, (1,), generator=g))
    N = int(torch.randint(0, 5, (1,), generator=g))
    torch.manual_seed(seed)
    fusion = DescriptionFusion(small_cfg(kind, text_dropout_p=0.3)).train(train)
    batch = {
        "desc_index": torch.randint(-1, N, (B, T, 2), generator=g) if N else torch.full((B, T, 2), -1),
        "desc_weight": torch.rand(B, T, 2, generator=g),
        "has_description": (torch.rand(B, T, 1, generator=g) < 0.5).float(),
        "frame_indices": torch.randint(-1, 500, (B, T), generator=g),
    }
    pose = torch.randn(B, T, D, generator=g) * 10
    fused, gate = fusion(pose, batch, torch.randn(N, TEXT_DIM, generator=g))
    assert torch.equal(fused, pose)
    assert gate.shape == (B, T, 1) and torch.isfinite(gate).all()


def test_gating_fusion_plan_interface():
    torch.manual_seed(0)
    fusion = GatingFusion(feature_dim=768)
    pose, text = torch.randn(2, 5, 768), torch.randn(2, 5, 768)
    has = torch.tensor([[1.0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]).unsqueeze(-1)
    fused, gate = fusion(pose, text, has)
    assert fused.shape == (2, 5, 768) and gate.shape == (2, 5, 1)
    assert torch.equal(fused, pose)
    assert ((gate > 0) & (gate < 1)).all()
    # the gate starts low (GATE_INIT, up to what the first layer adds) and reads has_description
    assert abs(gate.mean().item() - GATE_INIT) < 0.05
    assert not torch.equal(gate, fusion(pose, text, 1 - has)[1])
    # once the projection is nonzero, by hand: fused = pose + gate * text', text' the direction
    # of proj(layer-normalised text) at the size (RMS) of the frame's pose features
    with torch.no_grad():
        fusion.proj.weight.normal_()
        fusion.proj.bias.normal_()
    fused, gate = fusion(pose, text, has)
    normed = (text - text.mean(-1, keepdim=True)) / (text.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    direction = normed @ fusion.proj.weight.T + fusion.proj.bias
    direction = direction / (direction.pow(2).mean(-1, keepdim=True) + DIRECTION_EPS ** 2).sqrt()
    pose_rms = pose.pow(2).mean(-1, keepdim=True).sqrt()
    torch.testing.assert_close(fused, pose + gate * TEXT_SCALE * pose_rms * direction)


def test_the_gate_not_the_projection_sets_the_amount():
    """The update's size is gate * TEXT_SCALE * the pose's size, whatever the projection's scale."""
    torch.manual_seed(1)
    fusion = GatingFusion(feature_dim=32, text_dim=64, hidden=16)
    pose, text, has = torch.randn(3, 7, 32) * 5, torch.randn(3, 7, 64), torch.ones(3, 7, 1)
    with torch.no_grad():
        fusion.proj.weight.normal_(0, 0.1)
    fused, gate = fusion(pose, text, has)
    size = (fused - pose).pow(2).mean(-1, keepdim=True).sqrt()  # (B, T, 1)
    torch.testing.assert_close(size, gate * TEXT_SCALE * pose.pow(2).mean(-1, keepdim=True).sqrt(),
                               rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        fusion.proj.weight.mul_(100.0)  # a 100x larger projection: the same update
    torch.testing.assert_close(fusion(pose, text, has)[0], fused, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        fusion.gate_mlp[2].bias.fill_(-30.0)  # a closed gate: nothing enters
    assert torch.allclose(fusion(pose, text, has)[0], pose, atol=1e-6)


def test_alignment_kinds_by_hand():
    batch = make_batch()
    kinds = alignment_kinds(batch["desc_index"], batch["desc_weight"], batch["has_description"])
    # sample 0: exact, interpolated, exact, none...; sample 1: exact, nearest, none...
    assert kinds.tolist() == [[1, 2, 1, 0, 0, 0], [1, 3, 0, 0, 0, 0]]
    assert [ALIGNMENT_KINDS[k] for k in kinds[1, :3].tolist()] == ["exact", "nearest", "undescribed"]
    # a dropped frame (weights 0, has_description 0) is undescribed
    w = batch["desc_weight"].clone()
    w[0, 1] = 0
    assert alignment_kinds(batch["desc_index"], w, batch["has_description"])[0, 1] == 0


def test_fusion_keeps_the_alignment_kinds_after_dropout():
    B, T, N = 4, 30, 3
    fusion = DescriptionFusion(small_cfg("gating", text_dropout_p=0.5))
    batch, vectors = _all_described_batch(B, T, N), torch.randn(N, TEXT_DIM)
    seen = _capture_fusion_inputs(fusion)
    torch.manual_seed(0)
    fusion.train()(torch.randn(B, T, D), batch, vectors)
    dropped = seen["args"][2][..., 0] == 0  # (B, T)
    assert dropped.any() and not dropped.all()
    assert torch.equal(fusion.last_alignment, torch.where(dropped, 0, 1))
    fusion.eval()(torch.randn(B, T, D), batch, vectors, descriptions_off=True)
    assert (fusion.last_alignment == 0).all()


# ----------------------------------------------------------------------------- gradients

def _grads(module):
    return {n: (p.grad.abs().sum().item() if p.grad is not None else None)
            for n, p in module.named_parameters()}


@pytest.mark.parametrize("kind", ["gating", "cross_attn"])
def test_gradients_reach_fusion_not_frozen_encoder(kind, tiny_encoder, tiny_tokenizer):
    torch.manual_seed(0)
    encoder = TextEncoder(encoder=tiny_encoder, tokenizer=tiny_tokenizer)
    owner = Owner(small_cfg(kind), encoder)
    batch = make_batch()
    x, target = torch.randn(2, 6, 8), torch.randn(2, 6, D)
    opt = torch.optim.AdamW(owner.parameters(), lr=1e-2)
    history = []
    for _ in range(3):
        opt.zero_grad()
        fused, gate = owner(x, batch)
        ((fused - target) ** 2).mean().backward()
        history.append(_grads(owner.text_fusion))
        opt.step()

    first, last = history[0], history[-1]
    if kind == "gating":
        # step 1: proj is zero, so only proj learns (documented); then everything does
        assert first["fusion.proj.weight"] > 0 and first["fusion.proj.bias"] > 0
        assert first["fusion.gate_mlp.0.weight"] == 0 and first["mask_embedding.weight"] == 0
        layers = ["fusion.gate_mlp.0.weight", "fusion.gate_mlp.0.bias", "fusion.gate_mlp.2.weight",
                  "fusion.gate_mlp.2.bias", "fusion.proj.weight", "fusion.proj.bias"]
    else:
        # step 1: out_proj is zero, so only out_proj learns (documented); then everything does
        assert first["fusion.out_proj.weight"] > 0 and first["fusion.q_proj.weight"] == 0
        assert first["fusion.null_logit"] == 0 and first["mask_embedding.weight"] == 0
        layers = ["fusion.null_logit", "fusion.q_proj.weight", "fusion.k_proj.weight",
                  "fusion.v_proj.weight", "fusion.out_proj.weight", "fusion.rel_bias.weight",
                  "fusion.ln_q.weight", "fusion.ln_kv.weight"]
    for name in layers + ["mask_embedding.weight"]:
        assert last[name] is not None and last[name] > 0, name
    assert owner.pose_proj.weight.grad.abs().sum() > 0
    # the frozen encoder: not trainable, never touched by backward, not in the owner's tree
    assert all(not p.requires_grad and p.grad is None for p in encoder.encoder.parameters())
    assert not any(k.startswith("text_encoder") for k in owner.state_dict())
    enc_ids = {id(p) for p in encoder.encoder.parameters()}
    assert not enc_ids & {id(p) for p in owner.parameters()}


# ----------------------------------------------------------------------------- text dropout

def _capture_fusion_inputs(fusion):
    seen = {}
    fusion.fusion.register_forward_pre_hook(lambda mod, args: seen.update(args=args))
    return seen


def _all_described_batch(B, T, N):
    idx = torch.stack([torch.arange(T) % N, torch.full((T,), -1)], -1).expand(B, T, 2).clone()
    w = torch.tensor([1.0, 0.0]).expand(B, T, 2).clone()
    return {"desc_index": idx, "desc_weight": w, "has_description": torch.ones(B, T, 1),
            "frame_indices": torch.arange(T).expand(B, T)}


def test_text_dropout_only_in_training_gating():
    B, T, N = 4, 50, 3
    fusion = DescriptionFusion(small_cfg("gating", text_dropout_p=0.3))
    seen = _capture_fusion_inputs(fusion)
    batch, vectors, pose = _all_described_batch(B, T, N), torch.randn(N, TEXT_DIM), torch.randn(B, T, D)
    mask = fusion.mask_embedding.weight.detach()
    clean = vectors[batch["desc_index"][..., 0]]  # (B, T, TEXT_DIM)

    fusion.train()
    torch.manual_seed(1)
    fusion(pose, batch, vectors)
    _, text, has, _ = seen["args"]
    dropped = has[..., 0] == 0
    assert 0.15 < dropped.float().mean().item() < 0.45
    assert torch.equal(text[dropped], mask.expand(int(dropped.sum()), TEXT_DIM))
    assert torch.equal(text[~dropped], clean[~dropped])
    torch.manual_seed(1)  # seeded: the same frames again
    fusion(pose, batch, vectors)
    assert torch.equal(seen["args"][2][..., 0] == 0, dropped)

    fusion.eval()
    fusion(pose, batch, vectors)
    _, text, has, _ = seen["args"]
    assert torch.equal(has, batch["has_description"]) and torch.equal(text, clean)

    # descriptions off (eval_descriptions off): every frame masked, in eval mode
    for kwargs, b in (({"descriptions_off": True}, batch), ({}, {**batch, "descriptions_off": True})):
        fusion(pose, b, vectors, **kwargs)
        _, text, has, _ = seen["args"]
        assert (has == 0).all() and torch.equal(text, mask.expand(B, T, TEXT_DIM))


def test_sample_dropout_drops_every_frame_of_a_sample():
    B, T, N = 64, 5, 2
    fusion = DescriptionFusion(small_cfg("gating", text_dropout_p=0.0, text_dropout_sample_p=0.5))
    seen = _capture_fusion_inputs(fusion)
    batch, vectors = _all_described_batch(B, T, N), torch.randn(N, TEXT_DIM)
    torch.manual_seed(3)
    fusion.train()(torch.randn(B, T, D), batch, vectors)
    kept = seen["args"][2][..., 0]  # (B, T)
    per_sample = kept.sum(1)
    assert ((per_sample == 0) | (per_sample == T)).all()  # whole samples only
    assert 10 < int((per_sample == 0).sum()) < 54
    fusion.eval()(torch.randn(B, T, D), batch, vectors)
    assert (seen["args"][2] == 1).all()


def test_cross_attention_dropout_and_descriptions_off():
    B, T, N = 3, 40, 4
    torch.manual_seed(0)
    fusion = DescriptionFusion(small_cfg("cross_attn", text_dropout_p=0.5))
    with torch.no_grad():
        fusion.fusion.out_proj.weight.normal_()  # "trained": the attended texts move the features
    seen = _capture_fusion_inputs(fusion)
    batch, vectors, pose = _all_described_batch(B, T, N), torch.randn(N, TEXT_DIM), torch.randn(B, T, D)
    fusion.train()
    fused, gate = fusion(pose, batch, vectors)
    drop = seen["args"][-1]
    assert 0.3 < drop.float().mean().item() < 0.7
    assert (gate[drop] == 0).all() and torch.equal(fused[drop], pose[drop])
    assert (gate[~drop] > 0).all() and not torch.equal(fused[~drop], pose[~drop])
    fusion.eval()
    fused, gate = fusion(pose, batch, vectors)
    assert (gate > 0).all()
    fused, gate = fusion(pose, batch, vectors, descriptions_off=True)
    assert torch.equal(fused, pose) and (gate == 0).all()


# ----------------------------------------------------------------------------- cross-attention

@pytest.fixture()
def trained_like_cross():
    torch.manual_seed(0)
    fusion = DescriptionFusion(small_cfg("cross_attn")).eval()
    with torch.no_grad():
        fusion.fusion.out_proj.weight.normal_()
        fusion.fusion.null_logit.fill_(0.0)
        fusion.fusion.rel_bias.weight.normal_(0, 2.0)
    return fusion


def test_cross_attention_keys_are_per_sample(trained_like_cross):
    fusion, batch = trained_like_cross, make_batch()
    vectors, pose = torch.randn(3, TEXT_DIM), torch.randn(2, 6, D)
    fused, gate = fusion(pose, batch, vectors)
    changed = vectors.clone()
    changed[2] = torch.randn(TEXT_DIM)  # text 2 belongs to sample 1 only
    fused2, _ = fusion(pose, batch, changed)
    assert torch.equal(fused2[0], fused[0]) and not torch.allclose(fused2[1], fused[1])
    changed = vectors.clone()
    changed[0] = torch.randn(TEXT_DIM)  # text 0 belongs to sample 0 only
    fused3, _ = fusion(pose, batch, changed)
    assert torch.equal(fused3[1], fused[1]) and not torch.allclose(fused3[0], fused[0])
    # a sample without any text: zero update, zero gate
    empty = {**batch, "desc_index": batch["desc_index"].clone(), "desc_weight": batch["desc_weight"].clone()}
    empty["desc_index"][1] = -1
    empty["desc_weight"][1] = 0
    fused4, gate4 = fusion(pose, empty, vectors)
    assert torch.equal(fused4[1], pose[1]) and (gate4[1] == 0).all()
    assert torch.equal(fused4[0], fused[0]) and (gate[1] > 0).all()


def test_cross_attention_uses_relative_frame_positions(trained_like_cross):
    fusion, batch = trained_like_cross, make_batch()
    vectors, pose = torch.randn(3, TEXT_DIM), torch.randn(2, 6, D)
    fused, _ = fusion(pose, batch, vectors)
    shifted = {**batch, "frame_indices": batch["frame_indices"] + 1000}
    assert torch.equal(fusion(pose, shifted, vectors)[0], fused)  # only offsets matter
    stretched = {**batch, "frame_indices": batch["frame_indices"] * 10}
    assert not torch.allclose(fusion(pose, stretched, vectors)[0], fused)
    # positions stay float32 in a bf16 model (bf16 integers are exact only up to 256)
    fusion.to(torch.bfloat16)
    far = {**batch, "frame_indices": batch["frame_indices"] + 5000}
    fused16 = fusion(pose.bfloat16(), batch, vectors)[0]
    assert fused16.dtype == torch.bfloat16
    assert torch.equal(fusion(pose.bfloat16(), far, vectors)[0], fused16)


def test_cross_attention_gate_is_the_share_of_attention_on_texts():
    """gate = 1 - head-mean attention on the null key; the update has the pose's size times it."""
    torch.manual_seed(0)
    fusion = DescriptionFusion(small_cfg("cross_attn")).eval()
    batch, vectors, pose = make_batch(), torch.randn(3, TEXT_DIM), torch.randn(2, 6, D) * 4
    fused, gate = fusion(pose, batch, vectors)
    assert torch.equal(fused, pose)  # out_proj starts at zero
    has_text = (batch["desc_weight"] > 0).any(-1)  # (B, T): the samples' frames with a text
    # at the start ~90 % of the attention goes to the null key with 5 texts: N / (45 + N) goes to texts
    assert (gate[~has_text.any(1)] == 0).all() and ((gate[0] > 0.01) & (gate[0] < 0.2)).all()
    with torch.no_grad():
        fusion.fusion.out_proj.weight.normal_()
    fused, gate = fusion(pose, batch, vectors)
    size = (fused - pose).pow(2).mean(-1, keepdim=True).sqrt()
    torch.testing.assert_close(size, gate * TEXT_SCALE * pose.pow(2).mean(-1, keepdim=True).sqrt(),
                               rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        fusion.fusion.null_logit.fill_(-30.0)  # no attention on "nothing": every text frame's gate is 1
    assert torch.allclose(fusion(pose, batch, vectors)[1][0], torch.ones(6, 1))


def test_relative_position_bucket():
    offs = torch.tensor([0.0, 1.0, -1.0, 7.0, -7.0, 8.0, 100.0, 255.0, 10_000.0, -10_000.0])
    b = relative_position_bucket(offs, num_buckets=32, max_distance=256)
    assert b.tolist()[:5] == [0, 17, 1, 23, 7]
    assert b[5] == 24 and 24 < b[6] < 31 and b[8] == 31 and b[9] == 15
    assert ((b >= 0) & (b < 32)).all()


# ----------------------------------------------------------------------------- text encoder

def test_encoder_called_once_per_distinct_text_and_cached(tiny_encoder, tiny_tokenizer):
    counting = CountingEncoder(tiny_encoder)
    enc = ProjectedTextEncoder(encoder=counting, tokenizer=tiny_tokenizer, hidden_dim=None)
    out = enc.encode(["a", "b", "a", "b", "a"])
    assert [b[0] for b in counting.batches] == [2]  # one call, two distinct texts
    assert out.shape == (5, TEXT_DIM)
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[3]) and not torch.equal(out[0], out[1])
    out2 = enc.encode(["b", "c", "c"])
    assert [b[0] for b in counting.batches] == [2, 1]  # only "c" is new
    assert torch.equal(out2[0], out[1])
    enc.encode(["c", "a"])
    enc(["a", None, "b"])
    assert len(counting.batches) == 2  # all cached
    assert enc.encode([]).shape == (0, TEXT_DIM)


def test_new_texts_are_encoded_in_chunks_of_similar_length(tiny_encoder, tiny_tokenizer):
    texts = ["both hands move down to the chest slowly", "fist", "hand up", "open palm",
             "right hand moves up to the chin", "fist", "flat hand"]
    lengths = {t: len(ids) for t, ids in zip(texts, tiny_tokenizer(texts)["input_ids"], strict=True)}
    counting = CountingEncoder(tiny_encoder)
    enc = TextEncoder(encoder=counting, tokenizer=tiny_tokenizer, chunk_size=2)
    got = enc.encode(texts)
    # 6 distinct texts, 2 per call, the shortest first: each call is padded to its own longest
    ranked = sorted(lengths.values())
    assert counting.batches == [[2, ranked[1]], [2, ranked[3]], [2, ranked[5]]]
    one_call = TextEncoder(encoder=tiny_encoder, tokenizer=tiny_tokenizer)
    torch.testing.assert_close(got, one_call.encode(texts), atol=1e-5, rtol=1e-5)  # the caller's order
    assert torch.equal(got[1], got[5])


def test_masked_mean_pooling_matches_hand_computation(tiny_encoder, tiny_tokenizer):
    texts = ["hand up", "both hands move down to the chest slowly"]
    enc = TextEncoder(encoder=tiny_encoder, tokenizer=tiny_tokenizer)
    got = enc.encode(texts)
    tokens = tiny_tokenizer(texts, padding=True, return_tensors="pt")
    mask = tokens["attention_mask"]
    assert mask[0].sum() < mask.shape[1]  # the short text really is padded
    with torch.no_grad():
        states = tiny_encoder.eval()(**tokens).last_hidden_state
    for i in range(len(texts)):
        real = [states[i, j] for j in range(mask.shape[1]) if mask[i, j] == 1]
        torch.testing.assert_close(got[i], sum(real) / len(real))
    assert not torch.allclose(got[0], states[0].mean(0))  # pads are left out
    # and it equals encoding the short text alone (no padding at all)
    with torch.no_grad():
        alone = tiny_encoder(**tiny_tokenizer(texts[:1], return_tensors="pt")).last_hidden_state
    torch.testing.assert_close(got[0], alone[0].mean(0), atol=1e-5, rtol=1e-5)


def test_truncation_at_max_tokens(tiny_encoder, tiny_tokenizer):
    a, b = "hand moves up and down and up", "hand moves up then the chin"
    ids_a, ids_b = tiny_tokenizer([a, b])["input_ids"]
    assert ids_a[:3] == ids_b[:3] and ids_a != ids_b
    short = TextEncoder(encoder=tiny_encoder, tokenizer=tiny_tokenizer, max_tokens=4)
    va, vb = short.encode([a, b])
    torch.testing.assert_close(va, vb)  # same first 3 tokens + </s>
    full = TextEncoder(encoder=tiny_encoder, tokenizer=tiny_tokenizer)
    va, vb = full.encode([a, b])
    assert not torch.allclose(va, vb)


def test_text_encoder_plan_interface_none_rows_are_zero():
    enc = ProjectedTextEncoder("tiny", hidden_dim=768)
    out = enc(["hand up", None, "hand down"])
    assert out.shape == (3, 768)
    assert torch.equal(out[1], torch.zeros(768))
    assert (out[0] != 0).any() and not torch.equal(out[0], out[2])
    # the projection is the only (learned) parameter; the encoder is frozen and hidden
    assert sorted(enc.state_dict()) == ["proj.bias", "proj.weight"]
    assert [p.requires_grad for p in enc.parameters()] == [True, True]
    assert enc([None, None]).abs().sum() == 0
    same = ProjectedTextEncoder("tiny", hidden_dim=None)
    assert len(list(same.parameters())) == 0 and same(["hand up"]).shape == (1, TEXT_DIM)
    assert len(list(TextEncoder("tiny").parameters())) == 0 and not TextEncoder("tiny").state_dict()


def test_tiny_text_encoder_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    v0 = TextEncoder("tiny", seed=0).encode(["hand up"])
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(v0, TextEncoder("tiny", seed=0).encode(["hand up"]))
    assert not torch.equal(v0, TextEncoder("tiny", seed=1).encode(["hand up"]))


def test_to_and_train_reach_the_hidden_encoder(tiny_encoder, tiny_tokenizer):
    enc = TextEncoder(encoder=tiny_encoder, tokenizer=tiny_tokenizer)
    owner = Owner(small_cfg("gating"), enc)
    enc.encode(["hand up"])
    owner.train()
    assert owner.training and not enc.encoder.training  # dropout off inside the frozen encoder
    a = enc.encode(["hand down"])
    enc.clear_cache()
    assert torch.equal(enc.encode(["hand down"]), a)  # deterministic in train mode
    owner.to(torch.float64)  # moves/casts the encoder like a device move would
    assert all(p.dtype == torch.float64 for p in enc.encoder.parameters())
    assert enc.encode(["hand up", "new text"]).shape == (2, TEXT_DIM)
    owner.to(torch.float32)


def test_text_encoder_loads_a_local_mt5_directory(tmp_path, tiny_tokenizer):
    torch.manual_seed(0)
    model = MT5ForConditionalGeneration(MT5Config.from_pretrained(TINY_MT5_DIR)).eval()
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    enc = TextEncoder(str(tmp_path), max_tokens=64)
    tokens = tiny_tokenizer(["hand touches chin"], return_tensors="pt")
    with torch.no_grad():
        expected = model.get_encoder()(**tokens).last_hidden_state[0].mean(0)
    torch.testing.assert_close(enc.encode(["hand touches chin"])[0], expected)
    with pytest.raises(InputError, match=str(tmp_path / "missing")):
        TextEncoder(str(tmp_path / "missing"))


# ----------------------------------------------------------------------------- parameter counts

def test_added_parameters_at_mt5_base_width():
    base = dict(d_model=768, text_dim=768, fusion_hidden=512, cross_attn_heads=8)
    gating = fusion_parameters(ModelConfig(text_fusion_type="gating", **base))
    cross = fusion_parameters(ModelConfig(text_fusion_type="cross_attn", **base))
    print(f"added parameters at width 768: gating {gating:,}, cross_attn {cross:,}")
    # gating: MLP (768+768+1)->512->1, projection 768->768, mask embedding 768
    assert gating == (1537 * 512 + 512) + (512 + 1) + (768 * 768 + 768) + 768 == 1_379_329
    # cross-attention: q,k,v (+bias), out (no bias), 2 LayerNorms, 32x8 position bias, null logit, mask
    assert cross == 3 * (768 * 768 + 768) + 768 * 768 + 2 * 2 * 768 + 32 * 8 + 1 + 768 == 2_365_697
    assert isinstance(DescriptionFusion(ModelConfig(text_fusion_type="cross_attn", **base)).fusion,
                      CrossAttentionFusion)
