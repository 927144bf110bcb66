"""The describers ``SignDataset`` calls (``describe(sample_id, frame_indices, pose)``): ``PoseDescriber``
makes the descriptions from each sample's pose with the rules describer (``--describe rules``);
``signfuse.data.descriptions.Describer`` reads them from files. ``build_describer`` is the one
factory that picks between them from a run's flags."""
from typing import Callable, Optional

import numpy as np

from signfuse.data import paths
from pathlib import Path

from signfuse.data.alignment import TemporalAligner, check_alignment_options
from signfuse.data.description_files import read_description_file
from signfuse.data.descriptions import Describer
from signfuse.data.pose import load_pose
from signfuse.describe.rules import rules_describer_from_settings
from signfuse.describe.write import settings_from_args
from signfuse.errors import InputError, SampleError


class PoseDescriber:
    """The dataset hook of ``--describe rules``: descriptions made from each sample's pose.

    ``describe(sample_id, frame_indices, pose) -> (aligned, has_description float32 (T,))``,
    like ``Describer``, but the texts come from ``signfuse.describe.rules.RulesDescriber`` run
    on ``pose`` (the sample's ``PoseRecord``; ``SignDataset`` passes it because
    ``needs_pose`` is True) instead of a file. The texts are those ``signfuse describe``
    writes with the same settings, byte for byte, and they cover every frame of the sample.
    Each sample's segments are computed once and cached (per process).
    ``settings``: ``signfuse.describe.rules.rules_settings(...)``'s dict (what a checkpoint
    records); ``warn``: called once when the settings come from another rules version.
    ``pose_files`` ({sample_id: pose file}, or ``set_pose_files``) lets ``descriptions(sample_id)``
    load a pose itself (e.g. to encode every text up front); a pose file that cannot be used
    then gives no descriptions (the sample is skipped where it is loaded).
    """
    needs_pose = True

    def __init__(self, settings: dict, strategy: str = "interpolate", max_gap: Optional[int] = None,
                 warn: Optional[Callable[[str], None]] = None, pose_files: Optional[dict] = None,
                 trust_pickles: bool = False):
        check_alignment_options(strategy, max_gap)
        self.rules = rules_describer_from_settings(settings, warn=warn)
        self.settings = dict(self.rules.settings)
        self.strategy = strategy
        self.max_gap = max_gap
        self._cache: dict[str, list] = {}
        self._texts: dict[str, str] = {}  # one string object per distinct text
        self.set_pose_files(pose_files or {}, trust_pickles)

    def set_pose_files(self, pose_files: dict, trust_pickles: bool = False) -> None:
        """Where ``descriptions(sample_id)`` finds a pose not given to it: {sample_id: path}."""
        self.pose_files, self.trust_pickles = dict(pose_files), trust_pickles

    def segments(self, sample_id: str, pose=None) -> list:
        """``[(start, end, text)]`` of ``sample_id``, computed once from ``pose`` (or from its file
        in ``pose_files``: SampleError when that cannot be used)."""
        if sample_id not in self._cache:
            if pose is None:
                if sample_id not in self.pose_files:
                    raise ValueError(f"PoseDescriber: the pose of {sample_id!r} is needed (no pose file known)")
                pose = load_pose(self.pose_files[sample_id], self.trust_pickles)
            self._cache[sample_id] = [(s["start"], s["end"], self._texts.setdefault(s["text"], s["text"]))
                                      for s in self.rules.describe_pose(pose)]
        return self._cache[sample_id]

    def descriptions(self, sample_id: str, pose=None) -> dict:
        """``{frame: text}`` of ``sample_id`` (every frame of the sample); ``{}`` when its pose
        file (from ``pose_files``) cannot be used."""
        try:
            segments = self.segments(sample_id, pose)
        except SampleError:
            return {}
        return {f: text for start, end, text in segments for f in range(start, end)}

    def describe(self, sample_id: str, frame_indices, pose=None) -> tuple[list, np.ndarray]:
        """Align the descriptions made from ``pose`` to ``frame_indices`` (original frame numbers)."""
        if pose is None and sample_id not in self._cache and sample_id not in self.pose_files:
            raise ValueError(f"PoseDescriber.describe({sample_id!r}): the sample's pose is needed")
        aligner = TemporalAligner(self.descriptions(sample_id, pose), frame_indices,
                                  strategy=self.strategy, max_gap=self.max_gap)
        aligned, has_description = aligner.align()
        return aligned, np.asarray(has_description, dtype=np.float32)

    def summary(self, split: str, sample_ids=None, max_listed: int = 10) -> str:
        """The start-up line: where the descriptions come from (no file is read)."""
        s = self.settings
        return (f"descriptions ({split}): made from each pose file by the rules describer (version "
                f"{s['version']}, language {s['language']}, frame size {s['frame_size'][0]}x{s['frame_size'][1]}, "
                f"{s['fps']:g} fps, at most {s['max_tokens']} units per text)")

    @property
    def invalid_files(self) -> list:
        return []


class FileDescriber:
    """The hook for one sample whose description file is given (``signfuse predict --description``):
    the file is read at construction (a bad one is an InputError naming it), every sample id
    gets its descriptions."""
    needs_pose = False

    def __init__(self, path, strategy: str = "interpolate", max_gap: Optional[int] = None):
        check_alignment_options(strategy, max_gap)
        try:
            self.texts, _ = read_description_file(Path(path))
        except SampleError as e:
            raise InputError(str(e)) from None
        self.strategy, self.max_gap = strategy, max_gap

    def describe(self, sample_id: str, frame_indices, pose=None) -> tuple[list, np.ndarray]:
        aligner = TemporalAligner(self.texts, [int(f) for f in frame_indices], self.strategy, self.max_gap)
        aligned, has_description = aligner.align()
        return aligned, np.asarray(has_description, dtype=np.float32)


def folder_describer(dataset: str, data_root=".", desc_dir=None, strategy: str = "interpolate",
                     max_gap: Optional[int] = None, strict: bool = False) -> Describer:
    """The description files of ``dataset``: ``<desc_dir>/<dataset>/<sample_id>.json``
    (``paths.description_dir``); a missing folder is an InputError."""
    folder = paths.description_dir(dataset, data_root, desc_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: description folder not found (--desc_dir, default <data_root>/description, "
                         f"is the root that holds one folder per dataset, here {dataset}/)")
    return Describer(folder, strategy=strategy, max_gap=max_gap, strict=strict)


def build_describer(args, log=print, description_file=None):
    """The one describer factory, from a command's flags (train, eval, predict, translate, the
    demo): None without --use_descriptions; ``description_file`` (predict's --description): that
    file's descriptions; --describe rules: those made from each sample's pose (no file is read);
    else the files of ``<desc_dir>/<dataset>/`` (``folder_describer``)."""
    if not getattr(args, "use_descriptions", False):
        return None
    if description_file:
        return FileDescriber(description_file, args.desc_alignment, args.max_gap)
    rules = describer_settings(args)
    if rules is not None:
        return PoseDescriber(rules, strategy=args.desc_alignment, max_gap=args.max_gap,
                             warn=lambda message: log(f"warning: {message}"),
                             trust_pickles=getattr(args, "trust_pickles", False))
    return folder_describer(args.dataset, args.data_root, args.desc_dir, args.desc_alignment, args.max_gap,
                            getattr(args, "desc_strict", False))


def describer_settings(args) -> dict | None:
    """--describe rules: the rules describer's complete settings (``rules_settings``: --language,
    --frame_size and --fps, defaults per dataset, and --desc_max_tokens), with the rules version
    that ``args.rules_version`` records (a checkpoint's; ``PoseDescriber`` reports one that is not
    this signfuse's); None when the descriptions come from files."""
    if getattr(args, "describe", None) != "rules":
        return None
    settings = settings_from_args(args)
    return {**settings, "version": getattr(args, "rules_version", None) or settings["version"]}
