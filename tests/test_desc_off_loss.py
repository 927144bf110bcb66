"""--desc_off_loss: in training, the loss gains the weighted loss of the same batch with every
description masked (the missing-description path trained explicitly); not in evaluation."""
from types import SimpleNamespace

import pytest
import torch

from conftest import pinned_batch, without_dropout
from signfuse.cli import run_parser
from signfuse.config import ModelConfig
from signfuse.models.uni_sign import attach_text_source, build_model


def described_batch() -> dict:
    """The pinned batch (B=3, T=7) with two texts: frames 0-3 of each sample described."""
    batch = pinned_batch()
    B, T = batch["attention_mask"].shape
    index = torch.full((B, T, 2), -1, dtype=torch.int64)
    weight = torch.zeros(B, T, 2)
    index[:, :4, 0] = torch.tensor([0, 1, 0])[:, None]
    weight[:, :4, 0] = 1.0
    batch.update(desc_texts=["mouth smiles", "mouth frowns"], desc_index=index, desc_weight=weight,
                 has_description=(weight[..., :1] > 0).float())  # (B, T, 1)
    return batch


def model(kind: str, desc_off_loss: float):
    cfg = ModelConfig(dataset="Synthetic", use_descriptions=True, text_fusion_type=kind, text_dropout_p=0.0,
                      text_dropout_sample_p=0.0, desc_off_loss=desc_off_loss)
    m = without_dropout(build_model(cfg, "tiny", seed=0))
    attach_text_source(m, SimpleNamespace(mt5_model="tiny"))
    return not_the_identity(m)


def not_the_identity(m):
    with torch.no_grad():  # a fusion that is not the identity, so that the two losses differ
        for name, p in m.text_fusion.named_parameters():
            if p.abs().sum() == 0:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    return m


@pytest.mark.parametrize("kind", ["gating", "cross_attn"])
def test_training_loss_adds_the_weighted_loss_without_descriptions(kind):
    batch = described_batch()
    plain, with_off = model(kind, 0.0), model(kind, 0.5)
    with_off.load_state_dict(plain.state_dict())
    with torch.no_grad():  # evaluation: the loss alone (before training moves BatchNorm's statistics)
        torch.testing.assert_close(with_off.eval()(batch)["loss"], plain.eval()(batch)["loss"], rtol=0, atol=0)
    plain.train(), with_off.train()
    on = plain(batch)["loss"].detach()
    off = plain(batch, descriptions_off=True)["loss"].detach()
    assert abs(float(on) - float(off)) > 1e-4  # the descriptions matter to this model
    torch.testing.assert_close(with_off(batch)["loss"].detach(), on + 0.5 * off, rtol=1e-6, atol=1e-6)


def test_negative_weight_is_refused():
    from signfuse.cli import check_run_args
    from signfuse.errors import InputError
    args = run_parser().parse_args(["--desc_off_loss", "-1"])
    with pytest.raises(InputError, match="--desc_off_loss -1.0: must be >= 0"):
        check_run_args(args)


def predictor_model(desc_off_loss: float, desc_predicted_loss: float):
    cfg = ModelConfig(dataset="Synthetic", use_descriptions=True, text_dropout_p=0.0, text_dropout_sample_p=0.0,
                      desc_off_loss=desc_off_loss, desc_distill_weight=1.0, desc_predicted_loss=desc_predicted_loss)
    m = without_dropout(build_model(cfg, "tiny", seed=0))
    attach_text_source(m, SimpleNamespace(mt5_model="tiny"))
    return not_the_identity(m)


def test_predicted_loss_adds_the_weighted_loss_of_the_predicted_path():
    """--desc_predicted_loss W: + W x the loss with every frame reading the predictions, besides the
    off path's and the predictor's own loss; evaluation's loss is unchanged."""
    batch = described_batch()
    plain, both = predictor_model(0.5, 0.0), predictor_model(0.5, 0.25)
    both.load_state_dict(plain.state_dict())
    plain.train(), both.train()
    on = plain(batch)  # on + 0.5 off + distill
    pred = plain.translation_loss(batch, predicted=True)["loss"].detach()
    assert abs(float(pred) - float(plain.translation_loss(batch)["loss"].detach())) > 1e-4  # the predictions matter
    torch.testing.assert_close(both(batch)["loss"].detach(), on["loss"].detach() + 0.25 * pred, rtol=1e-6, atol=1e-6)
    assert [w for w, _ in both.training_paths(False)] == [0.5, 0.25] and both.training_paths(True) == []
    both.eval()
    assert both.training_paths(False) == []


def test_predicted_loss_without_a_predictor_adds_nothing():
    m = model("gating", 0.0)
    m.cfg = ModelConfig(**{**vars(m.cfg), "desc_predicted_loss": 1.0})
    assert m.train().training_paths(False) == []
