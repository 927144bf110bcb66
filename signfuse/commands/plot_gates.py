"""``signfuse plot-gates``: draw a sample's fusion gate over time, and its distribution (PNG)."""
import json
from pathlib import Path

from signfuse.describe.describer import folder_describer
from signfuse.errors import InputError
from signfuse.flags import add_flags
from signfuse.inference.plotting import (
    frame_kinds,
    load_gates,
    plot_gate,
    plot_gate_summary,
)


def _describer(args):
    """The description files of ``<desc_dir>/<dataset>`` (None without --desc_dir)."""
    if not args.desc_dir:
        return None
    return folder_describer(args.dataset, desc_dir=args.desc_dir, strategy=args.desc_alignment, max_gap=args.max_gap)


def cmd_plot_gates(args) -> None:
    gates = load_gates(args.gates)
    if not gates:
        raise InputError(f"{args.gates}: holds no samples")
    name = args.sample or sorted(gates)[0]
    if name not in gates:
        raise InputError(f"{args.gates}: no sample named {name!r} (it holds {len(gates)}, e.g. {sorted(gates)[0]})")
    describer = _describer(args)
    texts = describer.descriptions(name) if describer else None
    print(plot_gate(gates[name], name, args.out, texts, frame_kinds(gates[name], describer, name)))
    if args.summary:
        kinds = {n: frame_kinds(s, describer, n) for n, s in gates.items()}
        path, summary = plot_gate_summary(gates, kinds, args.summary,
                                          f"{Path(args.gates).name}: gate per frame over {len(gates)} samples, "
                                          "by alignment kind (diamond: mean)")
        print(path)
        print(json.dumps({k: {s: round(v, 4) for s, v in d.items()} for k, d in summary.items()}))


def register(sub) -> None:
    sp = sub.add_parser("plot-gates", help="draw a sample's fusion gate over time, and its distribution over a split (PNG)")
    sp.add_argument("--gates", required=True, help="<split>_gates.npz written by evaluation")
    sp.add_argument("--sample", default=None, help="sample name (default: the first)")
    sp.add_argument("--out", default="gates.png", help="the sample's plot")
    sp.add_argument("--summary", default=None, metavar="PNG",
                    help="also draw the gate distribution over every sample of the file, per alignment kind")
    g = sp.add_argument_group("descriptions (the texts of the described frames; the alignment kinds when "
                              "the gate file has none)")
    add_flags(g, "desc_dir", "dataset", "desc_alignment", "max_gap")
    sp.set_defaults(func=cmd_plot_gates)
