"""Issue 14 (docs/gate.md): the gate variants measured side by side. One run: make the demo's
synthetic data (cached), train one variant through the real pipeline (signfuse.training.run)
with the demo's budget, evaluate on the test split with and without descriptions, and print
one JSON line (BLEU-4 with/without descriptions, mean gate per alignment kind), also appended
to <out>/results.jsonl. The variants are patched into signfuse at import (the classes below);
`--variant real` / `--xvariant base` use signfuse's own GatingFusion / CrossAttentionFusion.

    python benchmarks/gate_variants.py --name base --variant base --epochs 20
    python benchmarks/gate_variants.py --name final --variant real --frame_p 0.1 --dual 1.0 --epochs 20

Variants (gating): base (the first version), norm (layer-normalised text), rel (update
relative to the mask embedding), adir / adir_rel (normalised update times tanh(alpha)),
snorm_lnp (the update at the pose's size, the gate sets the amount: the final design), real.
--gate_init, --gate_cost (an L1 cost on the gate, through its gradient), --c (TEXT_SCALE),
--dual (weight of the descriptions-off loss), --frame_p / --sample_p (text dropout);
--fusion cross_attn with --xvariant xnorm: the cross-attention counterpart of snorm."""
import argparse, json, math, sys, time
from pathlib import Path
import torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from signfuse.demo import run as demo
from signfuse.models import text_fusion as TF
from signfuse.models import uni_sign as US

p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--samples", type=int, default=800)
p.add_argument("--epochs", type=int, default=20)
p.add_argument("--fusion", default="gating")  # gating | cross_attn | none
p.add_argument("--frame_p", type=float, default=0.0)
p.add_argument("--sample_p", type=float, default=0.1)
p.add_argument("--dual", type=float, default=0.0)   # weight of the descriptions-off loss
p.add_argument("--kl", type=float, default=0.0)     # consistency KL(off || on.detach())
p.add_argument("--variant", default="base")         # gating variant, see below
p.add_argument("--gate_init", type=float, default=None)
p.add_argument("--gate_cost", type=float, default=0.0)
p.add_argument("--c", type=float, default=1.0)
p.add_argument("--kappa", type=float, default=1e-3)
p.add_argument("--out", default="gate_variants_out")
p.add_argument("--xvariant", default="base")  # cross-attention: base (signfuse's) | xnorm | tanh (the first version)
a = p.parse_args()
torch.set_num_threads(1)

# ---------------------------------------------------------------- gating variants
class GatingX(nn.Module):
    """base: original. norm: LN(text) before proj and gate. rel: update = g*W(t^-m^) (masked: 0)."""
    def __init__(self, feature_dim=768, text_dim=None, hidden=512):
        super().__init__()
        v = a.variant
        self.norm = "norm" in v or "rel" in v
        self.rel = "rel" in v
        text_dim = feature_dim if text_dim is None else text_dim
        self.ln = nn.LayerNorm(text_dim, elementwise_affine=False)
        self.gate_mlp = nn.Sequential(nn.Linear(feature_dim + text_dim + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))
        if a.gate_init is not None:
            nn.init.constant_(self.gate_mlp[2].bias, math.log(a.gate_init / (1 - a.gate_init)))
        self.proj = nn.Linear(text_dim, feature_dim)
        nn.init.zeros_(self.proj.weight); nn.init.zeros_(self.proj.bias)
        self.mask_ref = None
        self.adir = "adir" in v
        if self.adir:
            self.alpha = nn.Parameter(torch.zeros(1))
            self.proj = nn.Linear(text_dim, feature_dim, bias=not self.rel)
    def forward(self, pose, text, has):
        if self.adir:
            return self.forward_adir(pose, text, has)
        if "snorm" in a.variant:
            return self.forward_snorm(pose, text, has)
        if has.dim() == pose.dim() - 1: has = has.unsqueeze(-1)
        t = self.ln(text) if self.norm else text
        g = torch.sigmoid(self.gate_mlp(torch.cat([pose, t, has.to(pose.dtype)], -1)))
        if self.rel:
            m = self.ln(self.mask_ref)
            u = F.linear(t - m, self.proj.weight)
        else:
            u = self.proj(t)
        if self.training and a.gate_cost > 0:
            g = GateCost.apply(g, a.gate_cost / max(1.0, float(self.real.sum())), self.real)
        DIAG.append((g.detach(), u.detach().norm(dim=-1), pose.detach().norm(dim=-1)))
        return pose + g * u, g
def forward_adir(self, pose, text, has):
    if has.dim() == pose.dim() - 1: has = has.unsqueeze(-1)
    t = self.ln(text)
    g = torch.sigmoid(self.gate_mlp(torch.cat([pose, t, has.to(pose.dtype)], -1)))
    v = self.proj(t - self.ln(self.mask_ref)) if self.rel else self.proj(t)
    rms = lambda x: (x.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
    u = torch.tanh(self.alpha) * a.c * rms(pose).detach() * v / rms(v)
    DIAG.append((g.detach(), u.detach().norm(dim=-1), pose.detach().norm(dim=-1)))
    return pose + g * u, g
GatingX.forward_adir = forward_adir
def forward_snorm(self, pose, text, has):
    if has.dim() == pose.dim() - 1: has = has.unsqueeze(-1)
    t = self.ln(text)
    gp = F.layer_norm(pose, pose.shape[-1:]) if "lnp" in a.variant else pose
    g = torch.sigmoid(self.gate_mlp(torch.cat([gp, t, has.to(pose.dtype)], -1)))
    v = self.proj(t)
    rms = lambda x, e: (x.pow(2).mean(-1, keepdim=True) + e).sqrt()
    u = a.c * rms(pose, 0).detach() * v / rms(v, a.kappa ** 2)
    DIAG.append((g.detach(), u.detach().norm(dim=-1), pose.detach().norm(dim=-1)))
    return pose + g * u, g
GatingX.forward_snorm = forward_snorm
class CrossX(TF.CrossAttentionFusion):
    """xnorm: fused = pose + (1 - a_null) * rms(pose) * dir(out_proj(y)); out_proj zero-init;
    a learned null-key logit bias (init log(45): ~90 % on the null key with 5 texts) (signfuse's
    CrossAttentionFusion since issue 14). tanh: the first version, fused = pose +
    tanh(alpha) * out_proj(y), alpha from 0, gate = tanh(alpha) * (1 - a_null)."""
    def __init__(self, feature_dim=768, text_dim=None, heads=8, num_buckets=32, max_distance=256):
        super().__init__(feature_dim, text_dim, heads, num_buckets, max_distance)
        if hasattr(self, "alpha"):
            del self.alpha
        if hasattr(self, "null_logit"):
            del self.null_logit
        if a.xvariant == "tanh":
            self.alpha = nn.Parameter(torch.zeros(1))
            self.out_proj.reset_parameters()
            self.register_buffer("null_logit", torch.zeros(1), persistent=False)
        else:
            self.null_logit = nn.Parameter(torch.full((1,), math.log(45.0)))
            nn.init.zeros_(self.out_proj.weight)
    def forward(self, pose_feat, text_vectors, desc_index, desc_weight, frame_indices, mask_embedding, drop=None):
        B, T, C = pose_feat.shape
        N, H = text_vectors.shape[0], self.heads
        hd = C // H
        dtype = pose_feat.dtype
        weight = desc_weight.float() * (desc_index >= 0)
        if drop is not None:
            weight = weight.masked_fill(drop.unsqueeze(-1), 0)
        slot = (desc_index.clamp_min(-1) + 1).flatten(1)
        frame_pos = frame_indices.float()
        pos = frame_pos.unsqueeze(-1).expand_as(weight)
        mass = weight.new_zeros(B, N + 1).scatter_add_(1, slot, weight.flatten(1))[:, 1:]
        pos_sum = weight.new_zeros(B, N + 1).scatter_add_(1, slot, (weight * pos).flatten(1))[:, 1:]
        key_pos = pos_sum / mass.clamp_min(1e-6)
        valid = mass > 0
        q = self.q_proj(self.ln_q(pose_feat)).view(B, T, H, hd).transpose(1, 2)
        kv_in = self.ln_kv(torch.cat([mask_embedding, text_vectors]).to(dtype))
        k = self.k_proj(kv_in).view(N + 1, H, hd).transpose(0, 1)
        v = self.v_proj(kv_in[1:]).view(N, H, hd).transpose(0, 1)
        att = torch.einsum("bhtd,hnd->bhtn", q, k) / math.sqrt(hd)
        offset = frame_pos.unsqueeze(-1) - key_pos.unsqueeze(1)
        bucket = TF.relative_position_bucket(offset, self.num_buckets, self.max_distance)
        bias = self.rel_bias(bucket).permute(0, 3, 1, 2).to(dtype)
        allowed = valid.unsqueeze(1).expand(B, T, N)
        if drop is not None:
            allowed = allowed & ~drop.unsqueeze(-1)
        text_att = (att[..., 1:] + bias).masked_fill(~allowed.unsqueeze(1), float("-inf"))
        att = torch.cat([att[..., :1] + self.null_logit, text_att], -1).softmax(-1)
        y = torch.einsum("bhtn,hnd->bhtd", att[..., 1:], v).transpose(1, 2).reshape(B, T, C)
        gate = (1 - att[..., 0].mean(1)).unsqueeze(-1)
        if a.xvariant == "tanh":
            scale = torch.tanh(self.alpha)
            return pose_feat + scale * self.out_proj(y), scale * gate
        d = self.out_proj(y)
        rms = lambda x, e: (x.pow(2).mean(-1, keepdim=True) + e).sqrt()
        upd = rms(pose_feat, 0).detach() * d / rms(d, 1e-6)
        return pose_feat + gate * upd, gate
if a.xvariant in ("xnorm", "tanh"):
    TF.CrossAttentionFusion = CrossX
DIAG = []
class GateCost(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, w, real):
        ctx.w = w; ctx.save_for_backward(real)
        return g.view_as(g)
    @staticmethod
    def backward(ctx, grad):
        (real,) = ctx.saved_tensors
        return grad + ctx.w * real.unsqueeze(-1).to(grad.dtype), None, None
if a.variant != 'real':
    TF.GatingFusion = GatingX
orig_fusion_forward = TF.DescriptionFusion.forward
def fusion_forward(self, pose_feats, batch, text_vectors=None, descriptions_off=False):
    if isinstance(self.fusion, GatingX):
        self.fusion.__dict__['mask_ref'] = self.mask_embedding.weight
        self.fusion.__dict__['real'] = batch["attention_mask"].to(pose_feats.device) if "attention_mask" in batch else torch.ones(pose_feats.shape[:2])
    return orig_fusion_forward(self, pose_feats, batch, text_vectors, descriptions_off)
TF.DescriptionFusion.forward = fusion_forward

orig_forward = US.Uni_Sign.forward
def forward(self, batch, descriptions_off=False):
    out = orig_forward(self, batch, descriptions_off)
    if self.training and self.cfg.use_descriptions and (a.dual > 0 or a.kl > 0) and not descriptions_off:
        off = orig_forward(self, batch, True)
        loss = out["loss"] + a.dual * off["loss"]
        if a.kl > 0:
            labels = self.tokenize_targets(batch["targets"]).to(off["logits"].device)
            keep = labels != -100
            lp_off = off["logits"].log_softmax(-1)[keep]
            lp_on = out["logits"].detach().log_softmax(-1)[keep]
            loss = loss + a.kl * F.kl_div(lp_off, lp_on, log_target=True, reduction="batchmean")
        out = {**out, "loss": loss}
    return out
US.Uni_Sign.forward = forward

# ---------------------------------------------------------------- data, flags
data = Path(a.out) / "data" / f"s{a.seed}_n{a.samples}"
if not (data / "data").exists():
    from signfuse.demo.synthetic import make_synthetic
    s0 = demo.settings()
    make_synthetic(data, samples=a.samples, seed=a.seed, n_signs=s0["n_signs"], n_pairs=s0["n_pairs"],
                   split=demo.SPLIT_800, overwrite=True)
s = demo.settings(samples=a.samples, split=demo.SPLIT_800, epochs=a.epochs, text_dropout_sample_p=a.sample_p,
                  desc_off_loss=0.0)
out = Path(a.out) / f"{a.name}_s{a.seed}"
flags = demo.run_flags(data, out, s, a.seed, a.fusion != "none")
if a.fusion != "none":
    flags = [f if f != "gating" else a.fusion for f in flags] + ["--text_dropout_p", str(a.frame_p)]
from signfuse.describe.describer import build_describer
from signfuse.training import inputs, run
t0 = time.time()
with demo._quiet(True):
    run.train(demo.parse_run_args(flags))
train_s = time.time() - t0
eflags = demo.run_flags(data, out / "eval", s, a.seed, a.fusion != "none")
if a.fusion != "none":
    eflags = [f if f != "gating" else a.fusion for f in eflags] + ["--eval_descriptions", "both"]
eflags += ["--finetune", str(out / "best_checkpoint.pth")]
t0 = time.time()
with demo._quiet(True):
    res = run.evaluate(demo.parse_run_args(eflags))
eval_s = time.time() - t0
row = {"name": a.name, "seed": a.seed, "samples": a.samples, "epochs": a.epochs, "argv": sys.argv[1:],
       "bleu": res["test"]["bleu4"], "train_s": round(train_s), "eval_s": round(eval_s)}
if "test_nodesc" in res:
    row["bleu_off"] = res["test_nodesc"]["bleu4"]

# ---------------------------------------------------------------- gate statistics per kind
if a.fusion != "none":
    from signfuse.training import distributed as D
    args = demo.parse_run_args(eflags)
    model = demo.run_model(args).eval()
    describer = build_describer(args)
    ds = inputs.build_dataset(args, "test", train=False, describer=describer)
    loader = inputs.build_loader(ds, args, D.DistInfo(device=torch.device("cpu")), train=False)
    stats = {k: [0.0, 0.0, 0.0, 0.0] for k in ("exact", "interp", "nearest", "none")}
    gates_all = []
    for off in (False, True):
        for batch in loader:
            DIAG.clear()
            with torch.no_grad():
                o = model(batch, descriptions_off=off)
            w = batch["desc_weight"] * (batch["desc_index"] >= 0)
            ntext = (w > 0).sum(-1)
            has = batch["has_description"][..., 0] > 0
            real = batch["attention_mask"].bool()
            kind = {"exact": has, "interp": (ntext == 2) & ~has, "nearest": (ntext == 1) & ~has, "none": ntext == 0}
            g = o["gate"][..., 0]
            if off:
                kind = {"off": torch.ones_like(has)}
            for k, m in kind.items():
                m = m & real
                st = stats.setdefault(k, [0.0, 0.0, 0.0, 0.0])
                st[0] += float(g[m].sum()); st[1] += float(m.sum())
                if DIAG:
                    gg, un, pn = DIAG[-1]
                    st[2] += float(un[m].sum()); st[3] += float(pn[m].sum())
            if not off:
                gates_all.append(g[real])
    row["gate"] = {k: round(v[0] / max(1, v[1]), 4) for k, v in stats.items()}
    row["frames"] = {k: int(v[1]) for k, v in stats.items()}
    if DIAG:
        row["upd_norm"] = {k: round(v[2] / max(1, v[1]), 3) for k, v in stats.items()}
        row["pose_norm"] = round(sum(v[3] for k, v in stats.items() if k != "off") / max(1, sum(v[1] for k, v in stats.items() if k != "off")), 3)
    ga = torch.cat(gates_all)
    row["gate_std"] = round(float(ga.std()), 4)
print(json.dumps(row))
with open(Path(a.out) / "results.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
