"""Pre-training (Uni-Sign's stages 1 and 2) on a JSON corpus in CSL-News's format.

The run is fine-tuning's (``run.train`` / ``run.evaluate``: the same model, prompt, loss,
optimizer, schedule, engines, checkpoints, resuming); only the data differ:

    pretrain(args)
      read_corpus              the JSON label list, checked and packed once (data/news.py)
      pretraining_data         train = entries [0, int(0.99 N)), dev = [int(0.99 N), N)
      run.train                + --quick_break's checkpoint.pth (loop.quick_break_saver)
    --eval: heldout_datasets   test = the same held-out entries as dev (Uni-Sign evaluates them once)

Stage 2 is stage 1's command with ``--finetune <stage 1>/best_checkpoint.pth --rgb_support``:
the pose-only checkpoint loads strictly, the RGB branch's keys are named as new
(``checkpoint.load_weights``), and ``--rgb_gate_init small`` lets that branch learn.
"""
import time

from signfuse.data import paths
from signfuse.data.news import NewsDataset, NewsLabels, split_range
from signfuse.describe.describer import build_describer
from signfuse.errors import InputError
from signfuse.training import run
from signfuse.training.inputs import TrainData, announce_descriptions, rgb_settings

#: the corpora whose label file is a JSON list in CSL-News's format (Uni-Sign's default paths)
JSON_CORPORA = ("CSL_News", "YouTube_ASL")


def check_pretrain_args(args) -> None:
    if args.task != "SLT":
        raise InputError(f"--task {args.task}: pre-training is translation (--task SLT)")
    if args.dataset not in JSON_CORPORA and not args.label_file:
        raise InputError(f"--dataset {args.dataset}: pre-training reads a JSON label list: use "
                         f"{' or '.join(JSON_CORPORA)}, or give the list with --label_file")


def label_file(args):
    """--label_file, else Uni-Sign's ``<data_root>/data/<dataset>/<dataset>_Labels.json``
    (``--label_dir`` moves its folder)."""
    if args.label_file:
        return args.label_file
    return paths.label_path(args.dataset, "train", data_root=args.data_root, label_dir=args.label_dir)


def read_corpus(args, log=print) -> NewsLabels:
    """The corpus's label list, read once for every split."""
    t0 = time.time()
    labels = NewsLabels(label_file(args))
    cut, n = split_range(len(labels), "dev")
    log(f"{labels.path}: {n} entries in {time.time() - t0:.1f}s ({labels.nbytes / 2**20:.1f} MiB packed); "
        f"train: entries [0, {cut}), dev = test: [{cut}, {n})")
    return labels


def news_dataset(args, labels: NewsLabels, split: str, train: bool, describer=None) -> NewsDataset:
    return NewsDataset(labels, paths.pose_dir(args.dataset, split, args.data_root, args.pose_dir), args.dataset,
                       split, max_length=args.max_length, train=train, seed=args.seed,
                       trust_pickles=args.trust_pickles, describer=describer, rgb=rgb_settings(args, split),
                       max_samples=args.max_samples)


def pretraining_data(args, log) -> TrainData:
    """The training entries and the held-out ones (validated as 'dev'), with descriptions."""
    describer = build_describer(args, log)
    labels = read_corpus(args, log)
    data = TrainData(describer, news_dataset(args, labels, "train", True, describer), "dev",
                         news_dataset(args, labels, "dev", False, describer))
    announce_descriptions(describer, {"train": data.train, "dev": data.val}, args.trust_pickles, log)
    return data


def heldout_datasets(args, describer) -> dict:
    """--eval: the held-out entries once, as 'test' (dev holds the same entries)."""
    return {"test": news_dataset(args, read_corpus(args, lambda *_: None), "test", False, describer)}


def pretrain(args) -> dict:
    """Pre-train (returns the last epoch's log entry) or, with --eval, evaluate the held-out
    entries (returns {"test": metrics})."""
    check_pretrain_args(args)
    if args.eval:
        return run.evaluate(args, datasets=heldout_datasets)
    return run.train(args, data=pretraining_data)
