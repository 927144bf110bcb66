"""Where a dataset's label files and pose files are (Uni-Sign's layout).

Under ``--data_root`` (default ``.``), as Uni-Sign's ``config.py`` has it:

    data/<dataset>/labels.<split>            label files (WLASL: labels-2000.<split>)
    dataset/<dataset>/pose_format/           pose files, <video_path stem>.pkl
    dataset/<dataset>/pose_format/<split>/   ... when the dataset keeps one folder per split
    dataset/<dataset>/rgb_format[/<split>]/  videos (--rgb_support; CSL_Daily: sentence-crop/), rgb_dir(...)
    description/<dataset>/<sample_id>.json   action descriptions (``--desc_dir`` moves description/)

``--label_dir``, ``--pose_dir`` and ``--rgb_dir`` point anywhere else. (Uni-Sign's config points How2Sign
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
    "YouTube_ASL": ("YouTube_ASL_Labels.json",),  # CSL-News's JSON format (pre-training)
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


def description_root(data_root=".", desc_dir=None) -> Path:
    """The root of the description files, which holds one folder per dataset: --desc_dir, default
    ``<data_root>/description``. The same in every command."""
    return Path(desc_dir) if desc_dir is not None else Path(data_root) / "description"


def description_dir(dataset: str, data_root=".", desc_dir=None) -> Path:
    """The folder of ``dataset``'s description files (``<sample_id>.json``): ``<root>/<dataset>``."""
    return description_root(data_root, desc_dir) / dataset


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


# Video folders of the RGB branch (docs/rgb-pose.md section 1, Uni-Sign's config.rgb_dirs): the
# folder under dataset/<dataset>/ and whether it keeps one sub-folder per split.
RGB_FOLDERS = {
    "CSL_News": ("rgb_format", False),
    "CSL_Daily": ("sentence-crop", False),
    "WLASL": ("rgb_format", True),
    "How2Sign": ("rgb_format", True),
    "OpenASL": ("rgb_format", True),
    "YouTube_ASL": ("rgb_format", False),
    "Synthetic": ("rgb_format", True),
}
SPLIT_FOLDER_ALIASES = {"dev": ("dev", "val")}  # Uni-Sign's code looks in dev/, its docs show val/


def default_rgb_dir(dataset: str, split: str, data_root=".") -> Path:
    """Where Uni-Sign's layout puts ``dataset``/``split``'s videos (whether it exists or not)."""
    check_split(dataset, split)
    folder, per_split = RGB_FOLDERS[dataset]
    base = Path(data_root) / "dataset" / dataset / folder
    return base / split if per_split else base


def rgb_dir(dataset: str, split: str, data_root=".", rgb_dir=None) -> Path:
    """The folder of ``dataset``/``split``'s videos (``<folder>/<video_path>`` is a sample's video).

    ``rgb_dir`` if given, else ``<data_root>/dataset/<dataset>/<folder>`` (``sentence-crop``
    for CSL_Daily, else ``rgb_format``); then its ``<split>`` sub-folder when that exists (for
    the dev split ``dev/``, else ``val/``). WLASL, How2Sign and OpenASL keep one per split in
    Uni-Sign's layout. Raises InputError when the folder is missing.
    """
    check_split(dataset, split)
    folder, _ = RGB_FOLDERS[dataset]
    base = Path(rgb_dir) if rgb_dir is not None else Path(data_root) / "dataset" / dataset / folder
    if not base.is_dir():
        where = ("--rgb_dir" if rgb_dir is not None
                 else f"--data_root (it must hold dataset/{dataset}/{folder}/) or --rgb_dir")
        raise InputError(f"{base}: video directory not found: the {dataset} videos (--rgb_support); "
                         f"set {where} to the folder that holds them")
    for name in SPLIT_FOLDER_ALIASES.get(split, (split,)):
        if (base / name).is_dir():
            return base / name
    return base
