"""``signfuse plot-gates``: what the description fusion does, frame by frame and over a split.

Reads the ``<split>_gates.npz`` that evaluation with descriptions writes (``<name>/gate``,
``<name>/has_description``, ``<name>/frame_indices`` and, when the evaluation saved it,
``<name>/alignment``: the alignment kind of each frame, a code into ``ALIGNMENT_KINDS``) and
draws with matplotlib (Agg, no display needed):

- ``plot_gate``: one sample's gate over its original frame numbers, each frame coloured by
  its alignment kind, and under it the described frames with their texts (one row per
  non-overlapping set of labels, so that no text covers another or the title);
- ``plot_gate_summary``: the distribution of the gate over a whole split, per alignment kind
  (exactly described, interpolated, nearest-neighbour, undescribed = mask embedding).

Without a saved ``alignment`` array the kinds are recomputed from the description files
(``--desc_dir DIR --dataset NAME``: DIR/NAME/<sample>.json, aligned as ``--desc_alignment`` /
``--max_gap`` say, as in training); with neither, frames are only told apart by
``has_description`` (exact or "not described").
"""
import zipfile
from pathlib import Path

import numpy as np

from signfuse.errors import InputError
from signfuse.models.text_fusion import ALIGNMENT_KINDS

FIELDS = ("gate", "has_description", "frame_indices")
OPTIONAL_FIELDS = ("alignment",)
KIND_COLORS = {"undescribed": "tab:gray", "exact": "tab:red", "interpolated": "tab:orange",
               "nearest": "tab:olive", "not described": "tab:gray"}
SUMMARY_ORDER = ("exact", "interpolated", "nearest", "undescribed")
LABEL_CHARS = 48  # longer description texts are shortened in the plot


# ----------------------------------------------------------------------------- reading

def _read_npz(path: Path) -> dict:
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # an .npy file: one array
            raise ValueError("one array (.npy), not an .npz archive")
        with z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        reason = "not an .npz archive of arrays" if "pickle" in str(e) else str(e).splitlines()[0]
        raise InputError(f"{path}: not a readable .npz gate file ({reason})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a readable .npz gate file ({first})") from None


def load_gates(path) -> dict[str, dict[str, np.ndarray]]:
    """{sample name: {'gate', 'has_description', 'frame_indices'[, 'alignment']}} from a gates
    .npz file. Every sample must have the three arrays (``alignment`` is optional), all
    one-dimensional and of the same length (its sampled frames); anything else is an
    InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: gate file not found (evaluation with --use_descriptions writes <split>_gates.npz)")
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in _read_npz(path).items():
        name, _, field = key.rpartition("/")
        if not name or field not in FIELDS + OPTIONAL_FIELDS:
            raise InputError(f"{path}: unexpected array {key!r} (expected <name>/gate, <name>/has_description, "
                             "<name>/frame_indices, optionally <name>/alignment)")
        out.setdefault(name, {})[field] = value
    for name, sample in out.items():
        missing = [f for f in FIELDS if f not in sample]
        if missing:
            raise InputError(f"{path}: sample {name!r} has no {', '.join(missing)} array")
        shapes = {f: sample[f].shape for f in sample}
        if any(len(shape) != 1 for shape in shapes.values()) or len(set(shapes.values())) != 1:
            raise InputError(f"{path}: sample {name!r}: expected arrays of one length (T,), got "
                             + ", ".join(f"{f} {shape}" for f, shape in shapes.items()))
        if "alignment" in sample and not np.isin(sample["alignment"], range(len(ALIGNMENT_KINDS))).all():
            raise InputError(f"{path}: sample {name!r}: alignment codes must be 0-{len(ALIGNMENT_KINDS) - 1} "
                             f"({', '.join(ALIGNMENT_KINDS)})")
    return out


def kinds_from_aligned(aligned: list, has_description) -> np.ndarray:
    """Alignment codes (T,) of a sample from the aligner's output (per frame a list of
    (text, weight)) and its has_description (T,): the rule of ``alignment_kinds``."""
    count = np.array([len(pairs) for pairs in aligned], dtype=np.int64)  # texts per frame
    codes = np.select([np.asarray(has_description) > 0.5, count == 2, count == 1], [1, 2, 3], 0)
    return codes.astype(np.int64)


def frame_kinds(sample: dict, describer=None, name: str = None) -> list[str]:
    """The kind name of each sampled frame: the saved ``alignment``; else recomputed from the
    descriptions (``describer.describe(name, frame_indices)``); else exact / not described."""
    if "alignment" in sample:
        codes = sample["alignment"]
    elif describer is not None:
        aligned, has = describer.describe(name, sample["frame_indices"])
        codes = kinds_from_aligned(aligned, has)
    else:
        return ["exact" if h > 0.5 else "not described" for h in sample["has_description"]]
    return [ALIGNMENT_KINDS[int(c)] for c in codes]


# ----------------------------------------------------------------------------- one sample

def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "\u2026"


def label_groups(texts: dict, lo: int, hi: int, sampled: set) -> list[tuple]:
    """The described frames of ``texts`` (frame -> text) between ``lo`` and ``hi``, runs of
    consecutive described frames with the same text merged: [(frames, text, any sampled)]."""
    groups: list[tuple] = []
    for f, t in sorted((int(f), _short(t)) for f, t in texts.items() if lo <= int(f) <= hi):
        if groups and groups[-1][1] == t:
            groups[-1][0].append(f)
        else:
            groups.append(([f], t))
    return [(frames, t, any(f in sampled for f in frames)) for frames, t in groups]


def _pack_labels(ax, groups: list) -> int:
    """Write ``groups`` (``label_groups``) on ``ax``: a tick at each described frame (red when
    sampled) and the text after the first, in the first row where it overlaps no other label
    (extents measured with the renderer); returns the number of rows (row r at y = r)."""
    renderer = ax.figure.canvas.get_renderer()
    right_end = ax.transData.transform((ax.get_xlim()[1], 0))[0]
    rows: list[list[tuple]] = []  # per row: (x0, x1) display extents of its labels
    for frames, text, sampled in groups:
        t = ax.text(frames[0], 0, "  " + text, fontsize=7.5, va="center", ha="left", clip_on=False,
                    color="black" if sampled else "dimgray", style="normal" if sampled else "italic")
        box = t.get_window_extent(renderer)
        if box.x1 > right_end:  # would leave the axes: end the label at its last frame instead
            t.set_ha("right")
            t.set_x(frames[-1])
            t.set_text(text + "  ")
            box = t.get_window_extent(renderer)
        x0 = min(box.x0, ax.transData.transform((frames[0], 0))[0]) - 4
        x1 = max(box.x1, ax.transData.transform((frames[-1], 0))[0]) + 4
        row = next((r for r, spans in enumerate(rows) if all(x1 <= a or x0 >= b for a, b in spans)), len(rows))
        if row == len(rows):
            rows.append([])
        rows[row].append((x0, x1))
        t.set_y(row - 0.2)  # the text above, the frames' ticks under it
        ax.plot(frames, [row + 0.22] * len(frames), ls="-", lw=0.6, marker="|", ms=5,
                color="tab:red" if sampled else "darkgray")
    return len(rows)


def plot_gate(sample: dict, name: str, out_png, texts: dict[int, str] | None = None, kinds: list | None = None,
              gate_off=None, others: dict | None = None, label: str = "gate") -> Path:
    """Draw a sample's gate against its original frame numbers, each frame coloured by its
    alignment kind (``kinds``, default ``frame_kinds(sample)``), and below it the described
    frames with their texts (``texts``: frame -> text; runs of one text merged; black when a
    described frame was sampled, grey italics for described frames between the sampled ones).
    ``gate_off`` (T,): the same sample's gate with its descriptions off (every frame carries
    the mask embedding), drawn dashed; ``others``: {label: (T,) gate of another model on the
    same frames}, drawn as thin lines; ``label``: the legend's name of the sample's gate."""
    plt = _pyplot()
    frames, gate = sample["frame_indices"], sample["gate"]
    kinds = kinds or frame_kinds(sample)
    described = sample["has_description"] > 0.5
    lo, hi = int(frames.min()), int(frames.max())
    groups = label_groups(texts or {}, lo, hi, set(frames.tolist()))
    fig, (ax, lab) = plt.subplots(2, 1, sharex=True, figsize=(10, 4.2), height_ratios=(3, 1.4))
    ax.plot(frames, gate, color="tab:blue", lw=1.2, zorder=2, label=label)
    for (other, values), color in zip((others or {}).items(), ("tab:green", "tab:purple", "tab:brown"), strict=False):
        ax.plot(frames, values, color=color, lw=1.0, zorder=2, label=f"{other} (mean {np.mean(values):.3f})")
    if gate_off is not None:
        ax.plot(frames, gate_off, color="tab:gray", lw=1.2, ls="--", zorder=2,
                label=("" if label == "gate" else f"{label}, ") + f"descriptions off (mean {np.mean(gate_off):.3f})")
    order = [k for k in SUMMARY_ORDER + ("not described",) if k in kinds]
    for kind in order:
        on = np.array([k == kind for k in kinds])
        ax.scatter(frames[on], gate[on], s=26, zorder=3, color=KIND_COLORS[kind], label=f"{kind} ({int(on.sum())})")
    for frames_of_text, _, _ in groups:
        for f in frames_of_text:
            ax.axvline(f, color="tab:red", alpha=0.25, lw=0.8, ls=":")
    pad = max(1.0, 0.02 * (hi - lo))
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("gate")
    ax.set_title(f"{name}: mean gate {gate.mean():.3f}, {int(described.sum())}/{len(frames)} sampled frames described",
                 fontsize=9, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7.5, frameon=False)
    lab.set_yticks([])
    for side in ("left", "right", "top"):
        lab.spines[side].set_visible(False)
    lab.set_xlabel("original frame number (below: the described frames and their texts)", fontsize=8.5)
    fig.tight_layout()
    rows = _pack_labels(lab, groups) if groups else 1
    lab.set_ylim(rows - 0.5, -0.6)
    fig.set_size_inches(10, 3.2 + 0.3 * rows)
    ax.get_gridspec().set_height_ratios((3, 0.3 + 0.3 * rows))
    if not groups:
        lab.text(0.0, 0.5, "no description texts given (--desc_dir)" if texts is None else "no described frame",
                 transform=lab.transAxes, fontsize=8, color="dimgray", va="center")
    fig.tight_layout()
    return _save(fig, out_png)


def _save(fig, out_png) -> Path:
    plt = _pyplot()
    out_png = Path(out_png)
    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_png, dpi=110)
    except (OSError, ValueError) as e:  # unwritable folder, unknown image format
        raise InputError(f"{out_png}: cannot write the plot ({str(e).splitlines()[0]})") from None
    finally:
        plt.close(fig)
    return out_png


# ----------------------------------------------------------------------------- a whole split

def gate_summary(gates: dict, kinds: dict) -> dict:
    """{kind: {"frames", "mean", "median", "std"}} of the gate over every frame of ``gates``
    ({name: sample}), grouped by ``kinds`` ({name: list of kind names}); kinds in
    ``SUMMARY_ORDER`` first, absent kinds left out."""
    pooled: dict[str, list] = {}
    for name, sample in gates.items():
        for kind, g in zip(kinds[name], sample["gate"].tolist(), strict=True):
            pooled.setdefault(kind, []).append(g)
    order = [k for k in SUMMARY_ORDER if k in pooled] + [k for k in pooled if k not in SUMMARY_ORDER]
    return {k: {"frames": len(pooled[k]), "mean": float(np.mean(pooled[k])), "median": float(np.median(pooled[k])),
                "std": float(np.std(pooled[k])), "values": np.asarray(pooled[k], dtype=np.float64)} for k in order}


def plot_gate_summary(gates: dict, kinds: dict, out_png, title: str = "") -> tuple[Path, dict]:
    """Box plots of the gate per alignment kind over a split (mean as a diamond, frame count
    and mean under each box). Returns (the PNG path, ``gate_summary`` without the values)."""
    plt = _pyplot()
    summary = gate_summary(gates, kinds)
    if not summary:
        raise InputError(f"{out_png}: no frame to summarise")
    names = list(summary)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.boxplot([summary[k]["values"] for k in names], widths=0.55, showfliers=False,
               medianprops={"color": "black"}, patch_artist=True,
               boxprops={"alpha": 0.35}, tick_labels=[f"{k}\n{summary[k]['frames']} frames\nmean {summary[k]['mean']:.3f}"
                                                       for k in names])
    for patch, k in zip(ax.patches, names, strict=True):
        patch.set_facecolor(KIND_COLORS.get(k, "tab:blue"))
    rng = np.random.default_rng(0)  # a fixed jitter: the same picture every time
    for i, k in enumerate(names, start=1):
        v = summary[k]["values"]
        shown = v if len(v) <= 2000 else rng.choice(v, 2000, replace=False)
        ax.scatter(i + rng.uniform(-0.18, 0.18, len(shown)), shown, s=3, alpha=0.25, color=KIND_COLORS.get(k, "tab:blue"))
        ax.scatter([i], [summary[k]["mean"]], marker="D", s=40, color="black", zorder=4)
    ax.set_ylabel("gate")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title or f"gate per frame over {len(gates)} samples, by alignment kind (diamond: mean)",
                 fontsize=9, loc="left")
    fig.tight_layout()
    return _save(fig, out_png), {k: {s: v for s, v in d.items() if s != "values"} for k, d in summary.items()}


# ----------------------------------------------------------------------------- command

