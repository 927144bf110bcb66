"""Where a dataset's label files and pose files are (Uni-Sign's layout).

Under ``--data_root`` (default ``.``), as Uni-Sign's ``config.py`` has it:

    data/<dataset>/labels.<split>            label files (WLASL: labels-2000.<split>)
    dataset/<dataset>/pose_format/           pose files, <video_path stem>.pkl
    dataset/<dataset>/pose_format/<split>/   ... when the dataset keeps one folder per split

``--label_dir`` and ``--pose_dir`` point anywhere else. (Uni-Sign's config points How2Sign
and OpenASL at the WLASL pose folder, a bug; here every dataset uses its own folder.)
"""
from pathlib import Path

from signfuse.config import DATASETS, SPLITS
from signfuse.errors import InputError

# Label file names per dataset, as in Uni-Sign's config.py ("{split}" is filled in). The
# first name is Uni-Sign's; later ones are accepted when the first is absent.
LABEL_FILES = {
    "CSL_News": ("CSL_News_Labels.json",),  # one JSON file for every split (pre-training)
    "CSL_Daily": ("labels.{split}",),
    "WLASL": ("labels-2000.{split}", "labels.{split}"),
    "How2Sign": ("labels.{split}",),
    "OpenASL": ("labels.{split}",),
    "Synthetic": ("labels.{split}",),
}


def splits(dataset: str) -> tuple:
    """The splits of ``dataset`` (How2Sign has no dev split)."""
    if dataset not in SPLITS:
        raise InputError(f"--dataset {dataset}: unknown dataset, expected one of {', '.join(DATASETS)}")
    return SPLITS[dataset]


def check_split(dataset: str, split: str) -> None:
    if split not in splits(dataset):
        raise InputError(f"--dataset {dataset}: no '{split}' split (its splits: {', '.join(splits(dataset))})")


def label_path(dataset: str, split: str, data_root=".", label_dir=None) -> Path:
    """The label file of ``dataset``/``split``: ``<label_dir or data_root/data/dataset>/<name>``.

    Raises InputError naming the path and the flags that fix it when the file is missing.
    """
    check_split(dataset, split)
    folder = Path(label_dir) if label_dir is not None else Path(data_root) / "data" / dataset
    candidates = [folder / name.format(split=split) for name in LABEL_FILES[dataset]]
    for path in candidates:
        if path.is_file():
            return path
    also = f" (nor {', '.join(p.name for p in candidates[1:])})" if len(candidates) > 1 else ""
    where = ("--label_dir" if label_dir is not None
             else f"--data_root (it must hold data/{dataset}/) or --label_dir")
    raise InputError(f"{candidates[0]}: label file not found{also}: the {dataset} {split} "
                     f"labels; set {where} to the folder that holds it")


def pose_dir(dataset: str, split: str, data_root=".", pose_dir=None) -> Path:
    """The folder of ``dataset``/``split``'s pose files.

    ``pose_dir`` if given, else ``<data_root>/dataset/<dataset>/pose_format``; then its
    ``<split>`` sub-folder when that exists (WLASL keeps one per split). Raises InputError
    when the folder is missing.
    """
    check_split(dataset, split)
    base = Path(pose_dir) if pose_dir is not None else Path(data_root) / "dataset" / dataset / "pose_format"
    if not base.is_dir():
        where = ("--pose_dir" if pose_dir is not None
                 else f"--data_root (it must hold dataset/{dataset}/pose_format/) or --pose_dir")
        raise InputError(f"{base}: pose directory not found: the {dataset} pose files; "
                         f"set {where} to the folder that holds them")
    return base / split if (base / split).is_dir() else base
