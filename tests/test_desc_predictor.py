"""The description predictor (issue 19): its loss against hand-computed values; without
--desc_distill_weight no predictor and the same weights and outputs; a checkpoint with a
predictor evaluates ``--eval_descriptions predicted`` without any description file, and
``signfuse predict`` of a pose file without a description file gives evaluation's text for that
sample; a checkpoint from before the predictor still loads and evaluates.
"""
import math
from types import SimpleNamespace

import pytest
import torch

from conftest import pinned_batch, train_on
from signfuse.cli import main
from signfuse.config import ModelConfig
from signfuse.demo.synthetic import make_synthetic
from signfuse.flags import run_parser
from signfuse.metrics import postprocess_prediction, read_results
from signfuse.models.desc_predictor import contrastive_loss, distill_loss
from signfuse.models.uni_sign import attach_text_source, build_model
from signfuse.training import model_setup
from signfuse.training.settings import resolve_model_config

SAMPLE = "synth_00006"  # test split


# ----------------------------------------------------------------------------- the loss

def test_distill_loss_against_hand_computed_values():
    # frame 1: zero-mean vectors of variance 1 (layer norm leaves them), orthogonal: cos 0
    # frame 2: pred (2, 0, -2, 0) -> (sqrt2, 0, -sqrt2, 0) after layer norm; cos with
    #          (1, 1, -1, -1) = 2 sqrt2 / (2 * 2) = 1 / sqrt2
    # frame 3: masked out (any values)
    pred = torch.tensor([[[1., -1., 1., -1.], [2., 0., -2., 0.], [9., 3., 5., 7.]]])  # (1, 3, 4)
    target = torch.tensor([[[1., 1., -1., -1.], [1., 1., -1., -1.], [0., 0., 0., 1.]]])
    mask = torch.tensor([[True, True, False]])
    expected = ((1 - 0.0) + (1 - 1 / math.sqrt(2))) / 2  # 0.6464...
    assert distill_loss(pred, target, mask, "cosine").item() == pytest.approx(expected, abs=1e-5)
    # mse of the raw vectors: squared differences 0+4+4+0 and 1+1+1+1 over 8 values
    assert distill_loss(pred, target, mask, "mse").item() == pytest.approx(12 / 8, abs=1e-6)
    # no frame with a text: 0, and still a graph to backpropagate through
    none = distill_loss(pred.requires_grad_(), target, torch.zeros(1, 3, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_contrastive_loss_against_hand_computed_values():
    # texts: v0 = (1, -1, 1, -1), v1 = (1, 1, -1, -1) (unchanged by layer norm, orthogonal);
    # pred (2, 0, -2, 0): cos 0 with v0, 1/sqrt2 with v1 -> logits (0, 10/sqrt2) at temperature 0.1
    vectors = torch.tensor([[1., -1., 1., -1.], [1., 1., -1., -1.]])
    pred = torch.tensor([[[2., 0., -2., 0.], [2., 0., -2., 0.]]])  # (1, 2, 4)
    index = torch.tensor([[[0, -1], [0, 1]]])  # frame 1: text 0; frame 2: texts 0 and 1 interpolated
    weight = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    mask = torch.tensor([[True, True]])
    b = 10 / math.sqrt(2)
    log_z = math.log(1 + math.exp(b))
    expected = (log_z + (0.5 * log_z + 0.5 * (log_z - b))) / 2
    assert contrastive_loss(pred, vectors, index, weight, mask).item() == pytest.approx(expected, abs=1e-4)


# ----------------------------------------------------------------------------- weight 0: as before

def _model(weight=0.0, **extra):
    cfg = ModelConfig(dataset="Synthetic", use_descriptions=True, desc_distill_weight=weight, **extra)
    model = build_model(cfg, "tiny", seed=0)
    attach_text_source(model, SimpleNamespace(mt5_model="tiny"))
    return model


def _described_batch():
    batch = pinned_batch()
    B, T = batch["attention_mask"].shape
    index = torch.full((B, T, 2), -1, dtype=torch.long)
    weight = torch.zeros(B, T, 2)
    index[:, ::2, 0], weight[:, ::2, 0] = 0, 1.0  # every other frame: text 0
    index[:, 1::3, 0], weight[:, 1::3, 0] = 1, 1.0  # some: text 1
    has = (weight[..., :1] > 0).float()
    return {**batch, "desc_texts": ["mouth smiles", "eyebrows raised"], "desc_index": index,
            "desc_weight": weight, "has_description": has, "frame_indices": torch.arange(T).expand(B, T)}


def test_weight_zero_means_no_predictor_and_the_same_model():
    # the flags' defaults: no predictor
    args = run_parser().parse_args(["--mt5_model", "tiny", "--dataset", "Synthetic", "--use_descriptions"])
    assert resolve_model_config(args).desc_distill_weight == 0.0
    plain, with_head = _model(0.0), _model(1.0)
    keys = set(plain.state_dict())
    assert not any("predictor" in k for k in keys)
    extra = set(with_head.state_dict()) - keys
    assert extra and all(k.startswith("text_fusion.predictor.") for k in extra)
    # the predictor is made last: every other weight starts the same
    assert all(torch.equal(v, with_head.state_dict()[k]) for k, v in plain.state_dict().items())
    batch = _described_batch()
    plain.eval(), with_head.eval()
    with torch.no_grad():  # evaluation with descriptions never reads the predictor
        assert torch.equal(plain(batch)["logits"], with_head(batch)["logits"])
    # training: the loss is the translation loss plus the weight times the predictor's loss
    plain.train(), with_head.train()
    torch.manual_seed(5)
    base = plain(batch)
    torch.manual_seed(5)
    out = with_head(batch)
    assert "distill" not in base and out["distill"].item() > 0
    assert torch.allclose(out["loss"], base["loss"] + out["distill"], rtol=0, atol=1e-6)


def test_predicted_frames_read_the_predictions():
    model = _model(1.0).eval()
    seen = {}
    fusion = model.text_fusion.fusion
    original = fusion.forward
    fusion.forward = lambda pose, text, has, marked: seen.update(text=text, has=has, marked=marked) or original(
        pose, text, has, marked)
    batch = pinned_batch()  # no description keys at all
    with torch.no_grad():
        pose = model.encode_pose(batch)
        model.fuse(pose, batch, predicted=True)
        pred = model.text_fusion.predictor(pose, batch)
    real = batch["attention_mask"].bool()
    assert torch.equal(seen["text"][real], pred[real])  # each real frame reads its own prediction
    assert seen["has"].sum() == 0  # as a frame with an interpolated text, not a described one
    assert torch.equal(seen["marked"][..., 0], real)  # the "predicted" indicator: every real frame (read if on)


# ----------------------------------------------------------------------------- checkpoints, eval, predict

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic data; a gated checkpoint with a predictor (trained pose weights, fusion and
    predictor weights that change the features) and the same model saved as before issue 19
    (no predictor, no predictor fields in its configuration)."""
    root = tmp_path_factory.mktemp("syn")
    make_synthetic(root, samples=8, seed=0, invalid_files=0, split=(0.5, 0.25, 0.25), max_frames=76, desc_fraction=0.6)
    state = train_on(build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0), pinned_batch()).state_dict()
    model = _model(1.0)
    model.load_state_dict(state, strict=False)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in model.text_fusion.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (3.0 if name.startswith(("fusion.proj", "predictor")) else 0.02))
    args = SimpleNamespace(mt5_model="tiny", dataset="Synthetic", task="SLT", use_descriptions=True, desc_encoder=None,
                           num_beams=1, max_new_tokens=20)
    ckpt = root / "predictor.pth"
    torch.save(model_setup.checkpoint_dict(model.eval(), model.cfg, args, epoch=1), ckpt)
    old = root / "before.pth"
    saved = model_setup.checkpoint_dict(model, model.cfg, args, epoch=1)
    saved["model"] = {k: v for k, v in saved["model"].items() if ".predictor." not in k}
    saved["config"] = {k: v for k, v in saved["config"].items() if not k.startswith(("desc_distill", "desc_predict"))}
    torch.save(saved, old)
    return SimpleNamespace(root=root, ckpt=ckpt, old=old, pose=root / "dataset" / "Synthetic" / "pose_format" / f"{SAMPLE}.pkl")


def _eval(setup, out, ckpt, *extra):
    return main(["eval", "--finetune", str(ckpt), "--data_root", str(setup.root), "--output_dir", str(out),
                 "--device", "cpu", "--num_workers", "0", "--batch-size", "1", *map(str, extra)])


def test_predicted_evaluation_reads_no_description_and_predict_gives_its_text(setup, tmp_path, capsys, monkeypatch):
    import signfuse.data.description_files as files
    import signfuse.describe.describer as describer
    import signfuse.models.text_store as store

    def no_reading(*_a, **_k):
        raise AssertionError("a description file was read")
    for module in (files, describer, store):  # every module that reads description files
        monkeypatch.setattr(module, "read_description_file", no_reading)
    assert _eval(setup, tmp_path / "eval", setup.ckpt, "--eval_descriptions", "predicted",
                 "--desc_dir", tmp_path / "no_such_folder") == 0
    monkeypatch.undo()
    preds = read_results(tmp_path / "eval" / "test_predicted_tmp_pres.txt", "prediction")
    capsys.readouterr()
    assert main(["predict", "--finetune", str(setup.ckpt), "--pose", str(setup.pose), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "description predictor" in err  # said in one line
    text = out[:-1]
    assert text and postprocess_prediction(text, "Synthetic") == preds[SAMPLE]
    # the descriptions-off text differs: the predictions change this sample's translation
    assert _eval(setup, tmp_path / "off", setup.ckpt, "--eval_descriptions", "off",
                 "--desc_dir", setup.root / "description") == 0
    assert read_results(tmp_path / "off" / "test_nodesc_tmp_pres.txt", "prediction")[SAMPLE] != preds[SAMPLE]


def test_missing_descriptions_fall_back_to_the_predictor_in_one_line(setup, tmp_path, capsys):
    assert _eval(setup, tmp_path / "eval", setup.ckpt, "--desc_dir", tmp_path / "no_such_folder") == 0
    out = capsys.readouterr().out
    assert sum("the description predictor's embeddings are used instead" in line for line in out.splitlines()) == 1
    assert (tmp_path / "eval" / "test_predicted_tmp_pres.txt").is_file()


def test_a_checkpoint_from_before_the_predictor_still_loads(setup, tmp_path, capsys):
    assert _eval(setup, tmp_path / "eval", setup.old, "--eval_descriptions", "both",
                 "--desc_dir", setup.root / "description") == 0
    assert (tmp_path / "eval" / "test_nodesc_tmp_pres.txt").is_file()
    capsys.readouterr()
    assert main(["predict", "--finetune", str(setup.old), "--pose", str(setup.pose), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() and err == ""  # no predictor: every frame masked, as before
    # predicted evaluation of a model without a predictor: one line that says so
    assert _eval(setup, tmp_path / "p", setup.old, "--eval_descriptions", "predicted") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--desc_distill_weight" in err


def test_a_predictor_recorded_before_its_keypoint_input_reads_none():
    args = run_parser().parse_args(["--mt5_model", "tiny", "--dataset", "Synthetic", "--use_descriptions"])
    assert ModelConfig.from_args(args, saved={"desc_distill_weight": 1.0}).desc_predictor_keypoints is False
    assert ModelConfig.from_args(args, saved={}).desc_predictor_keypoints is True  # a new run's default
