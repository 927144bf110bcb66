"""``signfuse precompute-text``: encode every distinct description text of a dataset once."""
import json

from signfuse.data.paths import description_root
from signfuse.flags import (
    add_data_args,
    add_description_args,
    add_distributed_args,
    add_flags,
)
from signfuse.models.text_store import precompute


def cmd_precompute_text(args) -> None:
    desc_root = description_root(args.data_root, args.desc_dir)
    summary = precompute(desc_root, args.dataset, args.desc_encoder or args.mt5_model, out=args.out,
                         batch_size=args.batch_size, device=args.device,
                         max_tokens=args.desc_max_tokens, seed=args.seed,
                         progress=not args.no_progress)
    print(json.dumps(summary, ensure_ascii=False))


def register(sub) -> None:
    """Add ``precompute-text`` to the ``signfuse`` sub-command parsers."""
    text = "encode every distinct description text of a dataset once, into an embedding store"
    sp = sub.add_parser("precompute-text", help=text, description=text + ". Re-running adds only "
                        "the texts not yet in the store. Prints one JSON line (store path, "
                        "texts total, newly encoded).")
    add_data_args(sp, "dataset", "data_root", required=("dataset",))
    add_description_args(sp, "desc_dir", "desc_encoder", "desc_max_tokens")  # as the run that uses the store
    add_flags(sp, "mt5_model")
    add_distributed_args(sp, "device")
    sp.add_argument("--out", default=None, help="store file (default: <desc_dir>/<dataset>/"
                    "text_store.<encoder identity hash>.safetensors)")
    sp.add_argument("--batch_size", type=int, default=64, help="texts per encoder call")
    sp.add_argument("--seed", type=int, default=0, help="with --desc_encoder tiny: the seed of "
                    "its random weights")
    sp.add_argument("--no_progress", action="store_true", help="no progress bar on stderr")
    sp.set_defaults(func=cmd_precompute_text)
