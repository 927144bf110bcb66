"""PoseEncoder (signfuse.models.pose_encoder): Uni-Sign's keys, its numbers, and its wiring."""
import numpy as np
import pytest
import torch

from conftest import NODES, golden
from signfuse.config import TINY_POSE_CHANNELS, ModelConfig
from signfuse.models.pose_encoder import PARTS, PoseEncoder


def golden_state_dict() -> dict:
    from safetensors.torch import load_file
    return {k: v.float() for k, v in load_file(golden("pose_encoder.safetensors")).items()}


def golden_batch() -> dict:
    """The four golden samples, padded to 40 frames by repeating their last frame."""
    expected = np.load(golden("expected.npz"))
    batch = {}
    for part in PARTS:
        samples = [expected[f"sample{i}_{part}"] for i in range(4)]
        T = max(len(s) for s in samples)
        padded = [np.concatenate([s, np.repeat(s[-1:], T - len(s), axis=0)]) for s in samples]
        batch[part] = torch.from_numpy(np.stack(padded))  # (4, 40, V, 3)
    return batch


def wave_batch(B: int = 2, T: int = 12) -> dict:
    """A deterministic input (no RNG): sines of the element index, one phase per part."""
    batch = {}
    for i, part in enumerate(PARTS):
        n = torch.arange(B * T * NODES[part] * 3, dtype=torch.float32).reshape(B, T, NODES[part], 3)
        batch[part] = 0.8 * torch.sin(0.37 * n + i)
    return batch


def tiny_encoder(seed: int = 0, d_model: int = 32) -> PoseEncoder:
    torch.manual_seed(seed)
    return PoseEncoder(ModelConfig(gcn_channels=TINY_POSE_CHANNELS, d_model=d_model))


# ---- Uni-Sign compatibility ----

def test_state_dict_keys_and_shapes_equal_unisign():
    golden = golden_state_dict()
    own = PoseEncoder(ModelConfig()).state_dict()
    assert set(own) == set(golden)
    assert {k: tuple(v.shape) for k, v in own.items()} == {k: tuple(v.shape) for k, v in golden.items()}


def test_golden_pose_features():
    model = PoseEncoder(ModelConfig())
    model.load_state_dict(golden_state_dict(), strict=True)
    model.eval()
    with torch.no_grad():
        feats = model.encode_pose(golden_batch())
    expected = torch.from_numpy(np.load(golden("expected.npz"))["pose_features"])
    assert feats.shape == (4, 40, 768)
    torch.testing.assert_close(feats, expected, rtol=0, atol=1e-5)


def test_state_dict_layout_without_golden():
    sd = PoseEncoder(ModelConfig()).state_dict()
    assert len(sd) == 343
    assert {k.split(".")[0] for k in sd} == {"proj_linear", "gcn_modules", "fusion_gcn_modules", "part_para", "pose_proj"}
    for part in PARTS:
        assert sd[f"proj_linear.{part}.weight"].shape == (64, 3)
        assert sd[f"gcn_modules.{part}.layer2_0.residual.0.weight"].shape == (256, 128, 1, 1)
        assert sd[f"fusion_gcn_modules.{part}.layer0_2.tcn.0.weight"].shape == (256, 256, 5, 1)
        assert sd[f"gcn_modules.{part}.layer0_0.gcn.A"].shape == (2, NODES[part], NODES[part])
    assert sd["part_para"].shape == (1024,) and sd["pose_proj.weight"].shape == (768, 1024)


# ---- pinned numbers (default widths, seed 0) ----
# A forward pass of a seeded initialisation on a fixed input, no training: the same on every
# machine up to the rounding of float32 sums, hence rel 1e-4 (not exact equality).

def test_pinned_regression_values():
    torch.manual_seed(0)
    model = PoseEncoder(ModelConfig()).eval()
    with torch.no_grad():
        y = model.encode_pose(wave_batch())
    assert y.shape == (2, 12, 768)
    assert y.sum().item() == pytest.approx(57.984894, rel=1e-4)
    assert y.abs().sum().item() == pytest.approx(1023.2959, rel=1e-4)
    torch.testing.assert_close(y[0, 0, :4], torch.tensor([0.04076151, -0.01792061, 0.02509759, -0.12267542]),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(y[1, -1, -3:], torch.tensor([-0.05687286, -0.00055431, -0.01032444]),
                               rtol=1e-4, atol=1e-6)
    model.train()  # BatchNorm on batch statistics
    with torch.no_grad():
        y = model.encode_pose(wave_batch())
    assert y.sum().item() == pytest.approx(606.42621, rel=1e-4)
    assert y.abs().sum().item() == pytest.approx(18035.705, rel=1e-4)
    torch.testing.assert_close(y[0, 5, :3], torch.tensor([-0.94570124, -1.44520223, -0.21052648]),
                               rtol=1e-4, atol=1e-6)


# ---- structure and behaviour ----

def test_init():
    torch.manual_seed(0)
    model = PoseEncoder(ModelConfig())
    assert torch.equal(model.part_para.data, torch.zeros(1024))
    for linear in (model.proj_linear["body"], model.proj_linear["right"], model.pose_proj):
        assert torch.equal(linear.bias.data, torch.zeros_like(linear.bias))
    w = model.pose_proj.weight
    assert w.std().item() == pytest.approx(0.02, rel=0.02)
    assert w.abs().max().item() < 0.2  # a normal of std 0.02 (not e.g. PyTorch's uniform default)


def test_hands_share_modules():
    model = tiny_encoder()
    for modules in (model.proj_linear, model.gcn_modules, model.fusion_gcn_modules):
        assert list(modules.keys()) == list(PARTS)
        assert modules["left"] is modules["right"]
        assert modules["body"] is not modules["face_all"]
    sd = model.state_dict()
    left = {k: v for k, v in sd.items() if ".left." in k}
    assert left and all(torch.equal(v, sd[k.replace(".left.", ".right.")]) for k, v in left.items())
    # loading a state dict whose hands differ: both names land on one module (the later one wins)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < sum(v.numel() for k, v in sd.items() if "num_batches" not in k and "running" not in k)


def test_output_shape_and_batch_independence():
    model = tiny_encoder().eval()
    batch = wave_batch(B=3, T=7)
    with torch.no_grad():
        y = model.encode_pose(batch)
        y1 = model.encode_pose({p: batch[p][1:2] for p in PARTS})
    assert y.shape == (3, 7, 32)
    torch.testing.assert_close(y[1:2], y1, rtol=1e-5, atol=1e-6)


def test_every_part_contributes_and_hands_are_not_swapped():
    model = tiny_encoder().eval()
    batch = wave_batch()
    with torch.no_grad():
        base = model.encode_pose(batch)
        for part in PARTS:
            changed = dict(batch, **{part: batch[part] + 0.5})
            assert not torch.allclose(model.encode_pose(changed), base)
        # swapping the hands changes the output: the right hand gets the right wrist (node 8)
        swapped = dict(batch, left=batch["right"], right=batch["left"])
        assert not torch.allclose(model.encode_pose(swapped), base)


def test_body_anchor_features_are_detached():
    """Through the hands and the face no gradient reaches the body's spatial chain."""
    model = tiny_encoder()
    c = TINY_POSE_CHANNELS[-1]
    with torch.no_grad():  # keep only the left hand's slice of the concatenation
        model.pose_proj.weight[:, :c] = 0
        model.pose_proj.weight[:, 2 * c:] = 0
    model.encode_pose(wave_batch()).pow(2).sum().backward()
    body_grads = [p.grad for p in model.gcn_modules["body"].parameters()]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in body_grads)
    assert torch.count_nonzero(model.gcn_modules["left"].layer0_0.gcn.conv.weight.grad) > 0
    # without the mask, the body chain does get gradients
    model.zero_grad()
    with torch.no_grad():
        model.pose_proj.weight[:, :c] = 1.0
    model.encode_pose(wave_batch()).pow(2).sum().backward()
    assert torch.count_nonzero(model.gcn_modules["body"].layer0_0.gcn.conv.weight.grad) > 0


def test_anchor_nodes():
    """The left hand gets body node 7, the right hand node 8, the face node 0."""
    model = tiny_encoder().eval()
    batch = wave_batch()
    c = TINY_POSE_CHANNELS[-1]

    def concatenated(node=None):
        """Input of pose_proj (B, T, 4c), optionally with the body's spatial output moved at one node."""
        def bump(module, inputs, out):
            out = out.clone()
            out[..., node] += 1.0
            return out
        seen = []
        hooks = [model.pose_proj.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))]
        if node is not None:
            hooks.append(model.gcn_modules["body"].register_forward_hook(bump))
        with torch.no_grad():
            model.encode_pose(batch)
        for hook in hooks:
            hook.remove()
        return seen[0]

    base = concatenated()
    for node, anchored in ((1, ()), (7, ("left",)), (8, ("right",)), (0, ("face_all",))):
        moved = concatenated(node)
        for k, part in enumerate(PARTS[1:], start=1):
            differs = not torch.allclose(base[..., k * c:(k + 1) * c], moved[..., k * c:(k + 1) * c])
            assert differs == (part in anchored), (node, part)


def test_padded_frames_reach_the_last_real_frames():
    """The encoder ignores the mask: a padded frame changes the last real frames (kernel 5, 3 blocks)."""
    model = tiny_encoder().eval()
    batch = wave_batch(B=1, T=20)
    for part in PARTS:  # 12 real frames, then 8 copies of frame 11
        batch[part][:, 12:] = batch[part][:, 11:12]
    changed = {p: v.clone() for p, v in batch.items()}
    changed["right"][:, 14] += 1.0  # a padded frame
    with torch.no_grad():
        diff = (model.encode_pose(changed) - model.encode_pose(batch)).abs().amax(dim=(0, 2))  # (T,)
    assert diff[11] > 0 and diff[8] > 0  # real frames within 6 frames of frame 14
    assert torch.all(diff[:8] == 0)  # beyond the receptive field
