"""Which head and loss for the description predictor? (issue 19) A probe on frozen features.

From a trained checkpoint (``--finetune``: a pose-only or gated run of the demo's recipe on the
weak-cue benchmark), take the pose features of every sampled frame of the train and test splits
(evaluation sampling, the model in eval mode) and each frame's description vector (the model's
own text encoder, interpolated as the fusion reads it); fit each head (``--hidden``: 0 = one
Linear, else LayerNorm-Linear-GELU-Linear) with each loss (``cosine``: 1 - cos of the
layer-normalised vectors; ``mse``: raw vectors) on the train frames that have a text, full batch,
AdamW; report the cosine to the true vector on the test frames (raw and layer-normalised) and on
the test frames of the paired signs' cues (the texts only the descriptions give). Every head sees
the same features, so the comparison is side by side in one run; the joint training (the head's
gradient reaching the pose encoder) is not part of it.

    OMP_NUM_THREADS=1 python benchmarks/predictor_heads.py --finetune RUN/best_checkpoint.pth \
        --data_root DATA --desc_dir DATA/description
"""
import argparse
import time

import torch

from common import RESULTS, machine_info, write_result

from signfuse.models.desc_predictor import DescriptionPredictor, cosine_to_target, distill_loss
from signfuse.training import distributed as D
from signfuse.training import run
from signfuse.training.settings import apply_checkpoint_settings

CUES = ("mouth", "cheeks", "lips", "eyebrows", "head")  # the generator's facial-cue texts start so


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--finetune", required=True)
    p.add_argument("--data_root", required=True)
    p.add_argument("--desc_dir", required=True)
    p.add_argument("--hidden", type=int, nargs="+", default=[0, 64, 256, 1024])
    p.add_argument("--losses", nargs="+", default=["cosine", "mse"])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--out", default=str(RESULTS / "predictor_heads.json"))
    return p.parse_args(argv)


@torch.no_grad()
def features(model, args, split: str) -> tuple:
    """(features (n, C), targets (n, D), cue (n,) bool) of the split's real frames that have a text."""
    describer = run.build_describer(args)
    ds = run.build_dataset(args, split, train=False, describer=describer)
    loader = run.build_loader(ds, args, D.DistInfo(device=torch.device("cpu")), train=False)
    feats, targets, cues = [], [], []
    for batch in loader:
        if not batch["names"]:
            continue
        pose = model.encode_pose(batch)  # (B, T, C)
        vectors = model.text_source.encode(batch["desc_texts"]) if batch["desc_texts"] else None
        target, mask = model.text_targets(vectors, batch, pose)  # (B, T, D), (B, T)
        first = batch["desc_index"][..., 0].clamp_min(0)  # (B, T): the frame's first text
        cue = torch.tensor([t.startswith(CUES) for t in batch["desc_texts"]] or [False])[first] & mask
        feats.append(pose[mask]), targets.append(target[mask]), cues.append(cue[mask])
    return torch.cat(feats), torch.cat(targets), torch.cat(cues)


def fit(train, test, hidden: int, loss: str, steps: int, lr: float) -> dict:
    torch.manual_seed(0)
    (x, y, _), (tx, ty, tcue) = train, test
    head = DescriptionPredictor(x.shape[1], y.shape[1], hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    everything = torch.ones(x.shape[0], dtype=torch.bool)
    for _ in range(steps):
        opt.zero_grad()
        distill_loss(head(x), y, everything, loss).backward()
        opt.step()
    with torch.no_grad():
        pred = head(tx)
    raw, centred, n = cosine_to_target(pred, ty, torch.ones(tx.shape[0], dtype=torch.bool))
    craw, ccentred, cn = cosine_to_target(pred, ty, tcue)
    return {"hidden": hidden, "loss": loss, "parameters": sum(p.numel() for p in head.parameters()),
            "test_cosine": raw / n, "test_cosine_normalised": centred / n,
            "cue_frames_cosine_normalised": ccentred / max(1, cn), "test_frames": n, "cue_frames": cn}


def main(argv=None):
    a = parse_args(argv)
    info = machine_info()
    from signfuse.flags import run_parser
    args = run_parser().parse_args(["--finetune", a.finetune, "--data_root", a.data_root, "--desc_dir", a.desc_dir,
                                    "--mt5_model", "tiny", "--dataset", "Synthetic", "--num_workers", "0",
                                    "--device", "cpu", "--use_descriptions", "--batch-size", "16"])
    checkpoint = run.read_checkpoint(args)
    args = apply_checkpoint_settings(args, checkpoint, args.finetune, log=lambda *_: None)
    args.use_descriptions = True  # a pose-only checkpoint: its features, the descriptions' vectors
    model, _ = run.build_run_model(args, D.DistInfo(device=torch.device("cpu")), lambda *_: None, checkpoint)
    model.eval()
    t0 = time.time()
    train, test = features(model, args, "train"), features(model, args, "test")
    rows = [fit(train, test, h, loss, a.steps, a.lr) for loss in a.losses for h in a.hidden]
    for r in rows:
        print(f"hidden {r['hidden']:5d} {r['loss']:6s}: test cosine {r['test_cosine']:.3f}, normalised "
              f"{r['test_cosine_normalised']:.3f}, cue frames {r['cue_frames_cosine_normalised']:.3f} "
              f"({r['parameters']} parameters)")
    write_result(a.out, {"rows": rows, "train_frames": int(train[0].shape[0])},
                 {"finetune": a.finetune, "steps": a.steps, "lr": a.lr, "wall_s": round(time.time() - t0, 1)}, info, argv)


if __name__ == "__main__":
    main()
