"""--desc_predicted_indicator: the gated fusion's gate also reads whether a frame's text vector is
the predictor's (1) or given (0). Off (default): the gate's inputs and weights are as before."""
import pytest
import torch

from signfuse.cli import run_parser
from signfuse.config import ModelConfig
from signfuse.errors import InputError
from signfuse.models.text_fusion import DescriptionFusion

B, T, C, D = 2, 6, 16, 12


def fusion(indicator: bool) -> DescriptionFusion:
    cfg = ModelConfig(use_descriptions=True, text_fusion_type="gating", d_model=C, text_dim=D, fusion_hidden=8,
                      text_dropout_p=0.0, text_dropout_sample_p=0.0, desc_distill_weight=1.0,
                      desc_predicted_indicator=indicator)
    torch.manual_seed(0)
    f = DescriptionFusion(cfg).eval()
    with torch.no_grad():  # a projection that is not zero, so that the gate shows in the output
        f.fusion.proj.weight.normal_()
    return f


def batch() -> dict:
    index = torch.full((B, T, 2), -1)
    weight = torch.zeros(B, T, 2)
    index[:, :3, 0], weight[:, :3, 0] = 0, 1.0  # frames 0-2 described by text 0
    mask = torch.ones(B, T)
    mask[1, 4:] = 0  # sample 1: two padding frames
    return {"desc_index": index, "desc_weight": weight, "has_description": (weight[..., :1] > 0).float(),
            "attention_mask": mask}


def test_without_the_flag_the_gate_reads_what_it_read_before():
    f = fusion(False)
    assert f.fusion.gate_mlp[0].weight.shape == (8, C + D + 1)
    assert not ModelConfig().desc_predicted_indicator


def test_the_indicator_column_reads_1_exactly_on_the_predicted_frames_with_a_text():
    plain, marked = fusion(False), fusion(True)
    assert marked.fusion.gate_mlp[0].weight.shape == (8, C + D + 2)
    with torch.no_grad():  # the same weights, and the indicator's column worth +5 before the GELU
        state = plain.state_dict()
        w = state["fusion.gate_mlp.0.weight"]
        marked.load_state_dict({**state, "fusion.gate_mlp.0.weight": torch.cat([w, torch.full((8, 1), 5.0)], 1)})
    pose, vectors = torch.randn(B, T, C), torch.randn(1, D)
    pred = (torch.randn(B, T, D), torch.tensor([False, True]))  # sample 1 reads the predictor's vectors
    _, gate_given = marked(pose, batch(), vectors)
    torch.testing.assert_close(gate_given, plain(pose, batch(), vectors)[1], rtol=0, atol=0)  # no frame predicted
    _, gate_plain = plain(pose, batch(), vectors, predicted=pred)
    _, gate_marked = marked(pose, batch(), vectors, predicted=pred)
    changed = (gate_marked != gate_plain).squeeze(-1)  # (B, T)
    expected = torch.tensor([[False] * T, [True] * 4 + [False] * 2])  # sample 1's real frames; not its padding
    assert torch.equal(changed, expected)


def test_the_indicator_is_refused_with_cross_attention():
    cfg = ModelConfig(use_descriptions=True, text_fusion_type="cross_attn", desc_predicted_indicator=True)
    with pytest.raises(InputError, match="--desc_predicted_indicator"):
        DescriptionFusion(cfg)


def test_the_flag_reaches_the_model_configuration():
    args = run_parser().parse_args(["--desc_predicted_indicator"])
    assert ModelConfig.from_args(args).desc_predicted_indicator is True
    assert ModelConfig.from_args(run_parser().parse_args([])).desc_predicted_indicator is False
