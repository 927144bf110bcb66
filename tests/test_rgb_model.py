"""The RGB-pose branch (signfuse.models.rgb_branch): Uni-Sign's keys, its numbers on the golden-rgb
fixture, the zero / small gate, dummy crops, float32 PGF, checkpoints and backbone weights."""
import copy
import json

import numpy as np
import pytest
import torch

from conftest import PINNED_TARGETS as TARGETS, data_file, golden, padded_parts
from signfuse.config import TINY_POSE_CHANNELS, ModelConfig
from signfuse.errors import InputError
from signfuse.models import pose_encoder as pose_encoder_module
from signfuse.models.mt5 import load_mt5
from signfuse.models.pose_encoder import PoseEncoder
from signfuse.models.rgb_branch import (RGB_PREFIXES, efficientnet_b0_features, imagenet_weights_path,
                                        load_backbone_weights, rgb_training_warning, run_float32,
                                        sinusoid_table)
from signfuse.models.uni_sign import Uni_Sign, build_model
from signfuse.training.checkpoint import load_weights

HANDS = ("left", "right")
RGB_MODULES = ("rgb_support_backbone", "rgb_proj", "fusion_pose_rgb_DA", "fusion_gate")  # those that compute


def load_float32(path) -> dict:
    from safetensors.torch import load_file
    return {k: v.float() if v.is_floating_point() else v for k, v in load_file(path).items()}


def golden_rgb_batch() -> dict:
    """The collated batch of the fixture (data_expected.npz's batch_*), floats as float32."""
    data = np.load(data_file("golden-rgb/data_expected.npz"))
    batch = {}
    for key in data.files:
        if key.startswith("batch_"):
            name, a = key[len("batch_"):], data[key]
            batch[name] = a.tolist() if name.endswith("_rgb_len") else torch.from_numpy(
                a.astype(np.float32) if a.dtype.kind == "f" else a)
    return batch


def golden_rgb_model() -> PoseEncoder:
    """Uni-Sign's widths, the pose fixture's weights and the RGB fixture's weights (float16 -> float32)."""
    model = PoseEncoder(ModelConfig(rgb_support=True))
    sd = load_float32(golden("pose_encoder.safetensors")) | load_float32(data_file("golden-rgb/rgb_branch.safetensors"))
    model.load_state_dict(sd, strict=True)
    return model.eval()


def record_fusion(model, monkeypatch) -> dict:
    """Record what the RGB branch computes: backbone inputs/outputs, PGF and gate outputs, and the
    fusion's input and output features (fuse_hand_rgb), one entry per hand call."""
    rec = {name: [] for name in ("backbone_in", "backbone_out", "da_in", "da_out", "gate", "feats_in", "feats_out")}

    def hook(inputs_key, output_key):
        def record(module, inputs, output):  # returns None: the output is left as it is
            if inputs_key:
                rec[inputs_key].append([x.detach() for x in inputs] if inputs_key == "da_in" else inputs[0].detach())
            rec[output_key].append(output.detach())
        return record
    model.rgb_support_backbone.register_forward_hook(hook("backbone_in", "backbone_out"))
    model.fusion_pose_rgb_DA.register_forward_hook(hook("da_in", "da_out"))
    model.fusion_gate.register_forward_hook(hook(None, "gate"))
    fuse = pose_encoder_module.fuse_hand_rgb

    def recording(model_, feats, batch, part):
        out = fuse(model_, feats, batch, part)
        rec["feats_in"].append(feats.detach())
        rec["feats_out"].append(out.detach())
        return out
    monkeypatch.setattr(pose_encoder_module, "fuse_hand_rgb", recording)
    return rec


@pytest.fixture(scope="module")
def golden_run():
    """One eval-mode forward of the golden model on the golden batch, every intermediate recorded."""
    mp = pytest.MonkeyPatch()
    try:
        model = golden_rgb_model()
        rec = record_fusion(model, mp)
        with torch.no_grad():
            rec["pose_features"] = model.encode_pose(golden_rgb_batch())
    finally:
        mp.undo()
    rec["expected"] = np.load(data_file("golden-rgb/model_expected.npz"))
    return rec


def make_rgb_batch(lengths=(6, 4), crops=((0, 3), (2,)), seed: int = 0, targets=TARGETS) -> dict:
    """Random parts (padded like collate_fn) and hand crops: ``crops[b]`` the positions of sample b
    (both hands; an empty tuple is a dummy row)."""
    g = torch.Generator().manual_seed(seed)
    batch = padded_parts(lengths, g, targets)  # the crops below continue the same draws
    for part in HANDS:
        idx = [list(c) if c else [-1] for c in crops]
        N = sum(len(i) for i in idx)
        batch[f"{part}_sampled_indices"] = torch.tensor([p for i in idx for p in i], dtype=torch.long)  # (N,)
        batch[f"{part}_hands"] = torch.randn(N, 3, 112, 112, generator=g)  # (N, 3, 112, 112)
        batch[f"{part}_skeletons_norm"] = torch.rand(N, 21, 2, generator=g)  # (N, 21, 2)
        batch[f"{part}_rgb_len"] = [len(i) for i in idx]
        dummies = torch.tensor([i == [-1] for i in idx for _ in i])
        batch[f"{part}_hands"][dummies] = 0
        batch[f"{part}_skeletons_norm"][dummies] = 0
    return batch


def tiny_rgb_encoder(gate_init: str = "zero", seed: int = 0) -> PoseEncoder:
    torch.manual_seed(seed)
    return PoseEncoder(ModelConfig(gcn_channels=TINY_POSE_CHANNELS, d_model=32, rgb_support=True,
                                   rgb_gate_init=gate_init))


def rgb_grads(model) -> dict:
    """Largest |gradient| per parameter of the computing RGB modules (None: no gradient)."""
    return {name: (None if p.grad is None else p.grad.abs().max().item())
            for name, p in model.named_parameters() if name.startswith(RGB_MODULES)}


# ---- Uni-Sign's state-dict keys ----

def test_rgb_keys_shapes_and_dtypes_equal_unisign():
    expected = json.loads(data_file("golden-rgb/rgb_state_dict_keys.json").read_text())
    with_rgb = PoseEncoder(ModelConfig(rgb_support=True)).state_dict()
    without = PoseEncoder(ModelConfig()).state_dict()
    added = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in with_rgb.items() if k not in without]
    assert len(added) == expected["n_added"] == 385
    assert sorted(added) == sorted(expected["added"])
    assert set(without) <= set(with_rgb)
    assert "fusion_pose_rgb_DA.pos_embed" not in with_rgb  # Uni-Sign's crop-token table is not a buffer
    values = {k: v for k, v in with_rgb.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    counts = {p: sum(v.numel() for k, v in values.items() if k.startswith(p + ".")) for p in
              expected["n_params_added_by_prefix"]}  # parameters, and PGF's Gaussian matrix
    assert counts == expected["n_params_added_by_prefix"]


def test_rgb_modules_keep_default_init_and_leave_the_pose_encoder_alone():
    torch.manual_seed(3)
    plain = PoseEncoder(ModelConfig())
    torch.manual_seed(3)
    rgb = PoseEncoder(ModelConfig(rgb_support=True))
    sd = rgb.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in plain.state_dict().items())  # same draws for the pose encoder
    after_rgb = torch.randn(4)
    torch.manual_seed(3)
    PoseEncoder(ModelConfig())
    assert torch.equal(after_rgb, torch.randn(4))  # the RGB modules draw from a fork: later modules unchanged
    # PyTorch's Linear default (uniform, bound 1/sqrt(fan_in), non-zero bias), not the trunc-normal 0.02 / zero bias
    lin = rgb.fusion_pose_rgb_linear
    bound = 1 / 256 ** 0.5
    assert lin.bias.abs().max() > 0.02 and lin.bias.abs().max() <= bound
    assert lin.weight.abs().max() > 0.04 and lin.weight.abs().max() <= bound  # trunc-normal stays within 0.04
    mlp0 = rgb.fusion_pose_rgb_DA.rel_pos_bias.mlp[0][0]
    assert mlp0.bias.abs().max() > 0.1  # default bound 1/sqrt(2)
    assert all((p == 0).all() for p in rgb.fusion_gate.parameters())  # Uni-Sign's zero gate


def test_sinusoid_table_values():
    table = sinusoid_table(16, 256)
    assert table.shape == (16, 256) and table.dtype == torch.float32
    assert table[0, 0] == 0 and table[0, 1] == 1
    assert torch.isclose(table[5, 2], torch.tensor(np.sin(5 / 10000 ** (2 / 256)), dtype=torch.float32))
    assert torch.isclose(table[7, 3], torch.tensor(np.cos(7 / 10000 ** (2 / 256)), dtype=torch.float32))


# ---- Uni-Sign's numbers (golden-rgb) ----

def test_golden_fused_hand_features_pgf_and_gate(golden_run):
    exp = golden_run["expected"]
    for i, part in enumerate(HANDS):
        b, t = (torch.from_numpy(exp[f"{part}_{n}"]) for n in ("batch_index", "time_index"))
        torch.testing.assert_close(golden_run["feats_in"][i][b, :, t], torch.from_numpy(exp[f"{part}_gcn_selected_in"]),
                                   rtol=0, atol=1e-4)
        torch.testing.assert_close(golden_run["feats_out"][i][b, :, t], torch.from_numpy(exp[f"{part}_gcn_selected_out"]),
                                   rtol=0, atol=1e-4)
        torch.testing.assert_close(golden_run["da_out"][i], torch.from_numpy(exp[f"{part}_da_out"]), rtol=0, atol=1e-4)
        torch.testing.assert_close(golden_run["gate"][i], torch.from_numpy(exp[f"{part}_gate"]), rtol=0, atol=1e-4)
        # every other (sample, position) is unchanged
        keep = torch.ones(golden_run["feats_in"][i].shape[0], golden_run["feats_in"][i].shape[2], dtype=torch.bool)
        keep[b, t] = False
        assert torch.equal(golden_run["feats_out"][i].permute(0, 2, 1, 3)[keep],
                           golden_run["feats_in"][i].permute(0, 2, 1, 3)[keep])


def test_golden_backbone_output(golden_run):
    exp = golden_run["expected"]
    for i, part in enumerate(HANDS):
        expected = torch.from_numpy(exp[f"{part}_backbone_out_f16"]).float()
        assert golden_run["backbone_out"][i].shape == expected.shape
        torch.testing.assert_close(golden_run["backbone_out"][i], expected, rtol=0, atol=2e-2)


def test_golden_pose_features(golden_run):
    expected = torch.from_numpy(golden_run["expected"]["pose_features"])
    assert golden_run["pose_features"].shape == (5, 48, 768)
    torch.testing.assert_close(golden_run["pose_features"], expected, rtol=0, atol=1e-4)


def test_backbone_skips_dummy_crops(golden_run):
    exp = golden_run["expected"]
    batch = golden_rgb_batch()
    for i, part in enumerate(HANDS):
        rows = torch.from_numpy(exp[f"{part}_valid_rows"])
        assert golden_run["backbone_in"][i].shape[0] == len(rows) < batch[f"{part}_hands"].shape[0]  # 9 of 12, 14 of 16
        assert torch.equal(golden_run["backbone_in"][i], batch[f"{part}_hands"][rows])
    assert len(golden_run["backbone_in"]) == 2


def test_all_dummy_batch_never_runs_the_backbone_and_equals_pose_only():
    model = tiny_rgb_encoder("small").eval()
    calls = []
    model.rgb_support_backbone.register_forward_hook(lambda *a: calls.append(1))
    batch = make_rgb_batch(crops=((), ()))
    plain = PoseEncoder(ModelConfig(gcn_channels=TINY_POSE_CHANNELS, d_model=32))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(RGB_PREFIXES)})
    with torch.no_grad():
        assert torch.equal(model.encode_pose(batch), plain.eval().encode_pose(batch))
    assert calls == []


def test_dummies_do_not_enter_batchnorm_statistics_in_train_mode():
    """Uni-Sign runs the backbone on the dummy zero crops too, so in train mode its BatchNorm
    statistics count them; ours skip them (exactly equal in eval mode, different in train mode)."""
    model = tiny_rgb_encoder("small")
    batch = make_rgb_batch(crops=((1, 4), ()))
    alone = copy.deepcopy(model.rgb_support_backbone).train()
    model.train()
    model.encode_pose(batch)
    with torch.no_grad():
        alone(batch["left_hands"][:2])
        alone(batch["right_hands"][:2])
    bn, bn_alone = model.rgb_support_backbone[0][0][1], alone[0][0][1]
    assert torch.equal(bn.running_mean, bn_alone.running_mean) and torch.equal(bn.running_var, bn_alone.running_var)
    assert int(bn.num_batches_tracked) == 2  # one call per hand


def test_batch_rows_must_match_rgb_len():
    model = tiny_rgb_encoder().eval()
    batch = make_rgb_batch()
    batch["left_rgb_len"] = [2, 2]
    with pytest.raises(ValueError, match="rgb_len"):
        model.encode_pose(batch)
    batch = make_rgb_batch(lengths=(6, 4), crops=((0, 6), (2,)))  # position 6 of 6 frames
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        model.encode_pose(batch)
    batch = make_rgb_batch()
    del batch["right_hands"]
    with pytest.raises(ValueError, match="right_hands"):
        model.encode_pose(batch)


# ---- the gate ----

def test_zero_gate_is_identity_and_passes_no_gradient(monkeypatch):
    """Uni-Sign's init: gate exactly 0, fused features equal the input, every RGB gradient exactly 0
    (docs/rgb-pose.md 8.4), while the pose encoder learns."""
    model = tiny_rgb_encoder("zero").train()
    rec = record_fusion(model, monkeypatch)
    feats = model.encode_pose(make_rgb_batch())  # (2, 6, 32)
    feats.square().mean().backward()
    assert all((g == 0).all() for g in rec["gate"])
    assert len(rec["feats_out"]) == 2
    assert all(torch.equal(a, b) for a, b in zip(rec["feats_in"], rec["feats_out"], strict=True))
    grads = rgb_grads(model)
    assert grads and all(g == 0.0 for g in grads.values()), {k: g for k, g in grads.items() if g != 0.0}
    assert {k.split(".")[0] for k in grads} == set(RGB_MODULES)
    assert model.pose_proj.weight.grad.abs().max() > 0
    assert model.fusion_pose_rgb_linear.weight.grad is None  # never used (Uni-Sign's)


def test_small_gate_lets_gradients_reach_every_rgb_module():
    model = tiny_rgb_encoder("small").train()
    gate = model.fusion_gate
    assert (gate[0].weight != 0).any() and torch.all(gate[2].bias == 0.01) and gate[2].weight.std() < 2e-3
    feats = model.encode_pose(make_rgb_batch())
    feats.square().mean().backward()
    grads = rgb_grads(model)
    assert {k.split(".")[0] for k in grads} == set(RGB_MODULES)
    zero = sorted(k for k, g in grads.items() if not g)
    assert zero == [], zero  # every parameter of backbone, rgb_proj, PGF and gate gets a gradient


def test_rgb_training_warning():
    assert rgb_training_warning(ModelConfig(), loaded_rgb_weights=False) is None
    cfg = ModelConfig(rgb_support=True)
    line = rgb_training_warning(cfg, loaded_rgb_weights=False)
    assert "--rgb_gate_init small" in line and "\n" not in line
    assert rgb_training_warning(cfg, loaded_rgb_weights=True) is None
    assert rgb_training_warning(ModelConfig(rgb_support=True, rgb_gate_init="small"), loaded_rgb_weights=False) is None
    # weights loaded, but the checkpoint's gate is all zeros (Uni-Sign's init never trained)
    zero_gate = tiny_rgb_encoder("zero")
    assert "--rgb_gate_init small" in rgb_training_warning(cfg, loaded_rgb_weights=True, model=zero_gate)
    assert rgb_training_warning(cfg, loaded_rgb_weights=True, model=tiny_rgb_encoder("small")) is None


# ---- precision ----

def test_pgf_runs_in_float32_under_autocast(monkeypatch):
    model = tiny_rgb_encoder("small").eval()
    rec = record_fusion(model, monkeypatch)
    batch = make_rgb_batch()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.encode_pose(batch)
    assert rec["feats_in"][0].dtype == torch.bfloat16  # the GCN ran in bf16 under autocast
    assert all(x.dtype == torch.float32 for inputs in rec["da_in"] for x in inputs)
    assert all(o.dtype == torch.float32 for o in rec["da_out"])
    assert all(o.dtype == torch.bfloat16 for o in rec["feats_out"])


def test_run_float32_with_bf16_weights_equals_float32_weights():
    """A bf16 model (DeepSpeed bf16) computes PGF with float32 copies of its weights."""
    torch.manual_seed(0)
    pgf = tiny_rgb_encoder("small").fusion_pose_rgb_DA
    P, R, X = torch.randn(3, 32, 21), torch.randn(3, 32, 4, 4), torch.rand(3, 2, 21)
    bf16 = copy.deepcopy(pgf).to(torch.bfloat16)
    rounded = copy.deepcopy(bf16).float()
    out = run_float32(bf16, P.bfloat16(), R.bfloat16(), X.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, rounded(P.bfloat16().float(), R.bfloat16().float(), X.bfloat16().float()),
                               rtol=0, atol=0)
    out.sum().backward()
    assert bf16.to_out.weight.grad is not None and bf16.to_out.weight.grad.dtype == torch.bfloat16


# ---- Uni_Sign: checkpoints and predictions ----

def unisign_width_model(rgb: bool, seed: int = 0) -> Uni_Sign:
    """Uni-Sign's pose widths (so the fixture's RGB weights fit) around the tiny mT5."""
    mt5, tok = load_mt5("tiny", seed=seed)
    torch.manual_seed(seed)
    return Uni_Sign(ModelConfig(dataset="Synthetic", rgb_support=rgb), mt5, tok)


def test_unisign_rgb_pose_checkpoint_loads_strictly_and_refuses_without_rgb_support(tmp_path):
    pose_only = unisign_width_model(rgb=False, seed=1)
    rgb_fixture = load_float32(data_file("golden-rgb/rgb_branch.safetensors"))
    sd = pose_only.state_dict() | {k: v for k, v in rgb_fixture.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "rgb_pose.pth"
    torch.save({"model": sd}, path)  # Uni-Sign's format, without num_batches_tracked for the RGB branch
    model = unisign_width_model(rgb=True, seed=0)
    logs = []
    assert load_weights(model, path, log=logs.append) == {"missing": [], "unexpected": [], "new_fusion": []}
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in rgb_fixture.items() if not k.endswith("num_batches_tracked"))
    assert all(torch.equal(own[k], v) for k, v in pose_only.state_dict().items())
    with pytest.raises(InputError) as e:
        load_weights(unisign_width_model(rgb=False), path, log=lambda *_: None)
    assert "--rgb_support" in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    # ours load back strictly, and a pose-only checkpoint does not silently fill the RGB branch
    torch.save({"model": model.state_dict()}, tmp_path / "ours.pth")
    assert load_weights(unisign_width_model(rgb=True, seed=2), tmp_path / "ours.pth", log=lambda *_: None)["missing"] == []
    torch.save({"model": pose_only.state_dict()}, tmp_path / "pose.pth")
    with pytest.raises(InputError, match="pose-only checkpoint"):
        load_weights(unisign_width_model(rgb=True), tmp_path / "pose.pth", log=lambda *_: None)
    report = load_weights(model, tmp_path / "pose.pth", log=logs.append, allow_new_rgb=True)
    fresh = [k for k in model.state_dict() if k.startswith(RGB_PREFIXES) and not k.endswith("num_batches_tracked")]
    assert report["missing"] == fresh and len(fresh) == 336
    assert "newly initialised RGB-branch weights (pose-only checkpoint): 336 tensors: rgb_support_backbone.* (" in logs[-1]


def test_rgb_support_leaves_the_other_initial_weights_unchanged():
    rgb = build_model(ModelConfig(dataset="Synthetic", rgb_support=True, use_descriptions=True), "tiny", seed=0)
    plain = build_model(ModelConfig(dataset="Synthetic", use_descriptions=True), "tiny", seed=0)
    own = rgb.state_dict()
    assert any(k.startswith("text_fusion.") for k in own)
    assert all(torch.equal(v, own[k]) for k, v in plain.state_dict().items())  # pose, mT5 and fusion


def test_zero_gate_without_rgb_weights_predicts_like_pose_only():
    rgb = build_model(ModelConfig(dataset="Synthetic", rgb_support=True), "tiny", seed=0).eval()
    plain = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0).eval()
    batch = make_rgb_batch()
    ids = rgb.generate_ids(batch, max_new_tokens=6, num_beams=2)
    assert torch.equal(ids, plain.generate_ids(batch, max_new_tokens=6, num_beams=2))
    with torch.no_grad():
        assert torch.equal(rgb(batch)["loss"], plain(batch)["loss"])
    small = build_model(ModelConfig(dataset="Synthetic", rgb_support=True, rgb_gate_init="small"), "tiny", seed=0)
    with torch.no_grad():
        assert not torch.equal(small.eval()(batch)["loss"], plain(batch)["loss"])  # the batch's crops do count


# ---- backbone weights ----

def test_backbone_weights_from_a_file(tmp_path):
    torch.manual_seed(5)
    full = __import__("torchvision").models.efficientnet_b0(weights=None)
    torch.save(full.state_dict(), tmp_path / "full.pth")  # features.* and classifier.*
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in full.features.state_dict().items()}, tmp_path / "features.safetensors")
    expected = full.features.state_dict()
    for name in ("full.pth", "features.safetensors"):
        sd = load_backbone_weights(str(tmp_path / name))
        assert sd.keys() == expected.keys() and all(torch.equal(sd[k], expected[k]) for k in sd)
    model = build_model(ModelConfig(dataset="Synthetic", rgb_support=True), "tiny",
                        backbone=load_backbone_weights(str(tmp_path / "full.pth")))
    own = model.rgb_support_backbone[0].state_dict()
    assert all(torch.equal(own[k], v) for k, v in expected.items())
    assert load_backbone_weights("none") is None


def test_backbone_weights_bad_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_backbone_weights(str(tmp_path / "absent.pth"))
    torch.save({"model": {"conv.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    with pytest.raises(InputError, match="not an EfficientNet-B0 state dict") as e:
        load_backbone_weights(str(tmp_path / "other.pth"))
    assert str(tmp_path / "other.pth") in str(e.value) and "\n" not in str(e.value)


def test_imagenet_weights_from_the_cache_and_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        from urllib.error import URLError
        raise URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    loaded_mt5 = []
    monkeypatch.setattr("signfuse.models.uni_sign.load_mt5", lambda *a, **k: loaded_mt5.append(1))
    with pytest.raises(InputError) as e:
        build_model(ModelConfig(dataset="Synthetic", rgb_support=True), "tiny",
                    backbone=load_backbone_weights("imagenet"))
    assert "--rgb_backbone_weights imagenet" in str(e.value) and "\n" not in str(e.value)
    assert str(imagenet_weights_path()) in str(e.value)
    assert loaded_mt5 == []  # refused before any work
    # in the cache: read from there (weights_only), nothing downloaded
    features = efficientnet_b0_features()
    cached = imagenet_weights_path()
    assert not cached.exists()  # the failed download left nothing behind
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"features." + k: v for k, v in features[0].state_dict().items()}, cached)
    sd = load_backbone_weights("imagenet")
    assert all(torch.equal(sd[k], v) for k, v in features[0].state_dict().items())
