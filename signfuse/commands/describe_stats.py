"""``signfuse describe-stats``: coverage of a dataset's description files."""
from pathlib import Path

from transformers import AutoTokenizer

from signfuse.config import TINY_MT5, TINY_MT5_DIR
from signfuse.data.description_stats import describe_stats, format_describe_stats
from signfuse.data.labels import load_labels
from signfuse.data.paths import description_root, label_path
from signfuse.errors import InputError
from signfuse.flags import add_data_args, add_description_args, add_flags


def load_tokenizer(path: str):
    """The tokenizer of a local Hugging Face directory, or of the tiny assets for "tiny"."""
    directory = TINY_MT5_DIR if path == TINY_MT5 else Path(path)
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot load a tokenizer from this directory ({err})") from None


def describe_stats_command(args) -> str:
    """``signfuse describe-stats``: the report for ``args`` (desc_dir, dataset, split, ...).

    With ``--split`` the samples are those of the split's label file (their video_path
    stems; files missing for them are counted); without, every ``*.json`` of
    ``<desc_dir>/<dataset>/``. With ``--mt5_model`` text lengths are counted in its tokens.
    """
    sample_ids = None
    if args.split is not None:
        labels = load_labels(label_path(args.dataset, args.split,
                                        data_root=getattr(args, "data_root", "."),
                                        label_dir=getattr(args, "label_dir", None)),
                             trust_pickles=getattr(args, "trust_pickles", False))
        sample_ids = [Path(sample["video_path"]).stem for sample in labels.values()]
    mt5_model = getattr(args, "mt5_model", None)
    tokenizer = load_tokenizer(mt5_model) if mt5_model else None
    desc_root = description_root(getattr(args, "data_root", "."), args.desc_dir)
    stats = describe_stats(desc_root, args.dataset, sample_ids, tokenizer)
    scope = f"split {args.split}" if args.split is not None else "every file"
    return f"dataset: {args.dataset} ({scope})\n" + format_describe_stats(stats)


def cmd_describe_stats(args):
    print(describe_stats_command(args))



def register(sub) -> None:
    sp = sub.add_parser("describe-stats", help="coverage of a dataset's description files")
    add_data_args(sp, "dataset", "split", "data_root", "label_dir", "trust_pickles", required=("dataset",))
    add_description_args(sp, "desc_dir")
    add_flags(sp, "mt5_model", default={"mt5_model": None})  # None: text length in words
    sp.set_defaults(func=cmd_describe_stats)
