"""``signfuse plot-gates``: a sample's fusion gate over time, described frames marked.

Reads the ``<split>_gates.npz`` that evaluation with descriptions writes
(``<name>/gate``, ``<name>/has_description``, ``<name>/frame_indices``) and draws one
sample with matplotlib (Agg, no display needed).
"""
import zipfile
from pathlib import Path

import numpy as np

from signfuse.errors import InputError

FIELDS = ("gate", "has_description", "frame_indices")


def load_gates(path) -> dict[str, dict[str, np.ndarray]]:
    """{sample name: {'gate', 'has_description', 'frame_indices'}} from a gates .npz file.

    Every sample must have the three arrays, one-dimensional and of the same length
    (its sampled frames); anything else is an InputError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: gate file not found (evaluation with --use_descriptions writes <split>_gates.npz)")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # an .npy file: one array
            raise ValueError("one array (.npy), not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        reason = "not an .npz archive of arrays" if "pickle" in str(e) else str(e).splitlines()[0]
        raise InputError(f"{path}: not a readable .npz gate file ({reason})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{path}: not a readable .npz gate file ({first})") from None
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        name, _, field = key.rpartition("/")
        if not name or field not in FIELDS:
            raise InputError(f"{path}: unexpected array {key!r} (expected <name>/gate, <name>/has_description, <name>/frame_indices)")
        out.setdefault(name, {})[field] = value
    for name, sample in out.items():
        missing = [f for f in FIELDS if f not in sample]
        if missing:
            raise InputError(f"{path}: sample {name!r} has no {', '.join(missing)} array")
        shapes = {f: sample[f].shape for f in FIELDS}
        if any(len(shape) != 1 for shape in shapes.values()) or len(set(shapes.values())) != 1:
            raise InputError(f"{path}: sample {name!r}: expected three arrays of one length (T,), got "
                             + ", ".join(f"{f} {shape}" for f, shape in shapes.items()))
    return out


def plot_gate(sample: dict, name: str, out_png, texts: dict[int, str] | None = None) -> Path:
    """Draw gate value against original frame number; frames with their own description
    are marked (and labelled with the text when ``texts`` maps frame -> text)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, gate = sample["frame_indices"], sample["gate"]
    described = sample["has_description"] > 0.5
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(frames, gate, color="tab:blue", lw=1.5, label="gate")
    ax.scatter(frames[described], gate[described], color="tab:red", zorder=3, s=22, label="frame with description")
    for f in frames[described]:
        ax.axvline(f, color="tab:red", alpha=0.15, lw=1)
        if texts and int(f) in texts:
            ax.annotate(texts[int(f)], (f, 1.0), rotation=60, fontsize=7, ha="left", va="bottom",
                        xycoords=("data", "axes fraction"))
    ax.set_xlabel("original frame number")
    ax.set_ylabel("gate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{name}: mean gate {gate.mean():.3f}, {int(described.sum())}/{len(frames)} frames described",
                 fontsize=9, loc="left")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_png, dpi=110)
    except (OSError, ValueError) as e:  # unwritable folder, unknown image format
        raise InputError(f"{out_png}: cannot write the plot ({str(e).splitlines()[0]})") from None
    finally:
        plt.close(fig)
    return out_png


def cmd_plot_gates(args) -> None:
    gates = load_gates(args.gates)
    if not gates:
        raise InputError(f"{args.gates}: holds no samples")
    name = args.sample or sorted(gates)[0]
    if name not in gates:
        raise InputError(f"{args.gates}: no sample named {name!r} (it holds {len(gates)}, e.g. {sorted(gates)[0]})")
    texts = None
    if args.desc_dir:
        from signfuse.data.descriptions import DescriptionLoader
        if not Path(args.desc_dir).is_dir():
            raise InputError(f"{args.desc_dir}: description folder not found (--desc_dir: the "
                             f"<desc_dir>/<dataset> folder that holds {name}.json)")
        texts, _ = DescriptionLoader(args.desc_dir).load(name)
    print(plot_gate(gates[name], name, args.out, texts))


def register(sub) -> None:
    sp = sub.add_parser("plot-gates", help="draw a sample's fusion gate over time (PNG)")
    sp.add_argument("--gates", required=True, help="<split>_gates.npz written by evaluation")
    sp.add_argument("--sample", default=None, help="sample name (default: the first)")
    sp.add_argument("--desc_dir", default=None, help="<desc_dir>/<dataset> folder, to label the described frames")
    sp.add_argument("--out", default="gates.png")
    sp.set_defaults(func=cmd_plot_gates)
