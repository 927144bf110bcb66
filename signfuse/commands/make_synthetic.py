"""``signfuse make-synthetic``: write the synthetic sign benchmark in Uni-Sign's layout."""
import argparse
import json

from signfuse.demo.synthetic import make_synthetic
from signfuse.demo.synthetic_video import write_videos
from signfuse.flags import add_flags


def _fractions(text: str) -> tuple:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1) (argparse type of make-synthetic --split_fractions)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three comma-separated fractions, e.g. 0.8,0.1,0.1")
    return values


def cmd_make_synthetic(args):
    summary = make_synthetic(args.out, samples=args.samples, seed=args.seed, n_signs=args.n_signs,
                             n_pairs=args.n_pairs, desc_fraction=args.desc_fraction, split=args.split_fractions,
                             mouthing=args.mouthing, cue_amplitude=args.cue_amplitude)
    if args.videos:
        summary["videos"] = write_videos(args.out)
    print(json.dumps(summary, default=str))



def register(sub) -> None:
    sp = sub.add_parser("make-synthetic", help="write the synthetic sign benchmark in Uni-Sign's layout")
    sp.add_argument("--out", required=True)
    sp.add_argument("--samples", type=int, default=600)
    sp.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    sp.add_argument("--n_signs", type=int, default=16, help="words of the lexicon")
    sp.add_argument("--n_pairs", type=int, default=4,
                    help="pairs of words that share their keypoints (told apart only by descriptions)")
    sp.add_argument("--desc_fraction", type=float, default=0.8, help="share of the samples with a description file")
    sp.add_argument("--split_fractions", type=_fractions, default=(0.8, 0.1, 0.1),
                    help="train,dev,test fractions of the samples (default 0.8,0.1,0.1)")
    sp.add_argument("--mouthing", type=float, default=0.0,
                    help="share of the signs during which the mouth opens (0 to 1; ground truth in truth/)")
    sp.add_argument("--cue_amplitude", type=float, default=0.0,
                    help="how far the paired signs' facial cue moves the face points, in body units (half a "
                         "shoulder width): a weak cue in the keypoints themselves (0: none)")
    add_flags(sp, "videos")
    sp.set_defaults(func=cmd_make_synthetic)
