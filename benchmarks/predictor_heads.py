"""Which head and loss for the description predictor? (issue 19) A probe on frozen features.

From a trained checkpoint (``--finetune``: a pose-only or gated run of the demo's recipe on the
weak-cue benchmark), take the pose features of every sampled frame of the train and test splits
(evaluation sampling, the model in eval mode) and each frame's description vector (the model's
own text encoder, interpolated as the fusion reads it); fit each head (``--hidden``: 0 = one
Linear, else LayerNorm-Linear-GELU-Linear) with each loss (``cosine``: 1 - cos of the
layer-normalised vectors; ``mse``: raw vectors; ``contrastive``: cosine + which text) on the train
frames that have a text, full batch, AdamW; report the cosine to the true vector on the test
frames (raw and layer-normalised) and the nearest-text accuracy. Every head sees
the same inputs (the pose features and the keypoint displacements the predictor reads), so the
comparison is side by side in one run; the joint training (the head's gradient reaching the pose
encoder) is not part of it. "nearest text": the share of test frames whose prediction is nearest
(normalised cosine) to their own text among the split's distinct texts (in the synthetic
benchmark every text is a paired sign's cue: 50 % is telling only the pair).

    OMP_NUM_THREADS=1 python benchmarks/predictor_heads.py --finetune RUN/best_checkpoint.pth \
        --data_root DATA --desc_dir DATA/description
"""
import argparse
import time

import torch

from common import RESULTS, machine_info, write_result

import torch.nn.functional as F

from signfuse.describe.describer import build_describer
from signfuse.models.desc_predictor import (DescriptionPredictor, contrastive_loss, cosine_to_target, distill_loss,
                                            keypoint_motion, normalised)
from signfuse.training import distributed as D
from signfuse.training.inputs import build_dataset, build_loader
from signfuse.training.model_setup import build_run_model, read_checkpoint
from signfuse.training.settings import apply_checkpoint_settings



def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--finetune", required=True)
    p.add_argument("--data_root", required=True)
    p.add_argument("--desc_dir", required=True)
    p.add_argument("--hidden", type=int, nargs="+", default=[0, 64, 256, 1024])
    p.add_argument("--losses", nargs="+", default=["cosine", "mse", "contrastive"])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--out", default=str(RESULTS / "predictor_heads.json"))
    return p.parse_args(argv)


@torch.no_grad()
def features(model, args, split: str) -> tuple:
    """(inputs (n, C + keypoints), targets (n, D), text (n,) of the frame's first text, vectors
    (N, D) of the split's distinct texts) of the split's real frames that have a text; the inputs
    are what the predictor reads: the pose features and the keypoint displacements."""
    ds = build_dataset(args, split, train=False, describer=build_describer(args))
    loader = build_loader(ds, args, D.DistInfo(device=torch.device("cpu")), train=False)
    texts, rows = [], []
    for batch in loader:
        if not batch["names"] or not batch["desc_texts"]:
            continue
        pose = model.encode_pose(batch)  # (B, T, C)
        x = torch.cat([pose, keypoint_motion(batch)], -1)  # (B, T, C + k)
        vectors = model.text_source.encode(batch["desc_texts"])
        target, mask = model.text_targets(vectors, batch, pose)  # (B, T, D), (B, T)
        texts += [t for t in batch["desc_texts"] if t not in texts]
        first = torch.tensor([texts.index(t) for t in batch["desc_texts"]])[batch["desc_index"][..., 0].clamp_min(0)]
        rows.append((x[mask], target[mask], first[mask]))
    return (torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows]), torch.cat([r[2] for r in rows]),
            texts, model.text_source.encode(texts))


def fit(train, test, hidden: int, loss: str, steps: int, lr: float) -> dict:
    torch.manual_seed(0)
    x, y, label, names, vectors = train
    tx, ty, tlabel, tnames, _ = test
    head = DescriptionPredictor(x.shape[1], y.shape[1], hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=lr)
    everything = torch.ones(x.shape[0], dtype=torch.bool)
    index = torch.stack([label, torch.full_like(label, -1)], -1)  # the frame's first text
    weight = torch.stack([torch.ones(len(label)), torch.zeros(len(label))], -1)
    for _ in range(steps):
        opt.zero_grad()
        pred = head(x)
        value = distill_loss(pred, y, everything, "cosine" if loss == "contrastive" else loss)
        if loss == "contrastive":
            value = value + contrastive_loss(pred[None], vectors, index[None], weight[None], everything[None])
        value.backward()
        opt.step()
    with torch.no_grad():
        pred = head(tx)
    raw, centred, n = cosine_to_target(pred, ty, torch.ones(tx.shape[0], dtype=torch.bool))
    nearest = (F.normalize(normalised(pred), dim=-1) @ F.normalize(normalised(vectors), dim=-1).T).argmax(-1)
    truth = torch.tensor([names.index(tnames[i]) if tnames[i] in names else -1 for i in tlabel.tolist()])
    return {"hidden": hidden, "loss": loss, "parameters": sum(p.numel() for p in head.parameters()),
            "test_cosine": raw / n, "test_cosine_normalised": centred / n,
            "nearest_text_accuracy": float((nearest == truth).float().mean()), "test_frames": n}


def main(argv=None):
    a = parse_args(argv)
    info = machine_info()
    from signfuse.flags import run_parser
    args = run_parser().parse_args(["--finetune", a.finetune, "--data_root", a.data_root, "--desc_dir", a.desc_dir,
                                    "--mt5_model", "tiny", "--dataset", "Synthetic", "--num_workers", "0",
                                    "--device", "cpu", "--use_descriptions", "--batch-size", "16"])
    checkpoint = read_checkpoint(args)
    args = apply_checkpoint_settings(args, checkpoint, args.finetune, log=lambda *_: None)
    args.use_descriptions = True  # a pose-only checkpoint: its features, the descriptions' vectors
    model, _ = build_run_model(args, D.DistInfo(device=torch.device("cpu")), lambda *_: None, checkpoint)
    model.eval()
    t0 = time.time()
    train, test = features(model, args, "train"), features(model, args, "test")
    rows = [fit(train, test, h, loss, a.steps, a.lr) for loss in a.losses for h in a.hidden]
    for r in rows:
        print(f"hidden {r['hidden']:5d} {r['loss']:11s}: test cosine {r['test_cosine']:.3f}, normalised "
              f"{r['test_cosine_normalised']:.3f}, nearest text = true text {r['nearest_text_accuracy']:.3f} "
              f"({r['parameters']} parameters)")
    write_result(a.out, {"rows": rows, "train_frames": int(train[0].shape[0]), "test_frames": int(test[0].shape[0])},
                 {"finetune": a.finetune, "steps": a.steps, "lr": a.lr, "wall_s": round(time.time() - t0, 1)}, info, argv)


if __name__ == "__main__":
    main()
