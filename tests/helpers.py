"""Helpers that only the tests use (kept out of the package): a held-out loss, the plan's
text-encoder interface with its projection, the fusion's parameter count, the model's inputs."""
import sys

import torch
import torch.nn as nn
from conftest import REPO

from signfuse import cli
from signfuse.config import ModelConfig
from signfuse.describe.describer import build_describer
from signfuse.models.text_fusion import DescriptionFusion, TextEncoder
from signfuse.training import distributed as D
from signfuse.training import inputs
from signfuse.training.engine import to_device

if str(REPO) not in sys.path:  # benchmarks/common.py: mT5 of any shape with random weights
    sys.path.insert(0, str(REPO))
from benchmarks.common import mt5_from_config_dict  # noqa: E402,F401 (re-exported for the tests)


@torch.no_grad()
def heldout_loss(model, args, split: str = "test", descriptions_off: bool = False) -> float:
    """Teacher-forced loss (the training loss, label smoothing included) of ``model`` in eval
    mode over ``split``, averaged over target tokens."""
    describer = build_describer(args)
    ds = inputs.build_dataset(args, split, train=False, describer=describer)
    loader = inputs.build_loader(ds, args, D.DistInfo(device=torch.device("cpu")), train=False)
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for batch in loader:
        if not batch["names"]:
            continue
        batch = to_device(batch, device)
        out = model(batch, descriptions_off=descriptions_off) if model.cfg.use_descriptions else model(batch)
        n = int((model.tokenize_targets(batch["targets"]) != -100).sum())
        total += float(out["loss"]) * n
        tokens += n
    return total / max(1, tokens)


def fusion_parameters(cfg: ModelConfig) -> int:
    """Parameters that ``cfg``'s description fusion adds to Uni_Sign (the frozen text encoder
    adds none)."""
    return sum(p.numel() for p in DescriptionFusion(cfg).parameters())



def embed_inputs(model, batch: dict) -> tuple:
    """-> (inputs_embeds (B, P+T, d_model), attention_mask (B, P+T)) of ``model`` (a Uni_Sign):
    prompt first, then pose."""
    inputs_embeds, attention_mask, _ = model.build_inputs(batch)
    return inputs_embeds, attention_mask


class ProjectedTextEncoder(TextEncoder):
    """The plan's text-encoder interface: ``self(texts)`` (None allowed) -> (N, hidden_dim), zero rows
    for None, other rows ``proj(encode(...))`` with ``proj`` a learned Linear(text_dim, hidden_dim)
    when the widths differ (``hidden_dim=None``: text_dim, no projection, no parameters)."""

    def __init__(self, *args, hidden_dim=768, **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_dim = self.text_dim if hidden_dim is None else hidden_dim
        self.proj = nn.Identity() if self.hidden_dim == self.text_dim else nn.Linear(self.text_dim, self.hidden_dim)
        self.proj.to(self.device)

    def forward(self, texts):
        rows = [i for i, t in enumerate(texts) if t is not None]
        out = torch.zeros(len(texts), self.hidden_dim, device=self.device)  # (N, hidden_dim)
        if not rows:
            return out
        vecs = self.proj(self.encode([texts[i] for i in rows]))  # (n, hidden_dim)
        return out.index_copy(0, torch.tensor(rows, device=out.device), vecs.to(out.dtype))


def run_cli(capsys, *argv) -> tuple:
    """(exit status, stdout, stderr) of ``signfuse ARGV`` run in this process."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err
