"""The data of a run from its flags: datasets (``build_dataset``), loaders (``build_loader``),
the training and validation splits with their descriptions (``training_data``)."""
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from signfuse.config import SPLITS
from signfuse.data import paths
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.data.hand_crops import RGBSettings
from signfuse.describe.describer import build_describer
from signfuse.training import distributed as D
from signfuse.training.samplers import BatchShardSampler, ResumableSampler


def rgb_settings(args, split: str):
    """With --rgb_support, the hand crops' settings of ``split``: its video folder
    (``paths.rgb_dir``: Uni-Sign's layout under --data_root, or --rgb_dir), --rgb_crop,
    --rgb_eval_sampling; else None."""
    if not getattr(args, "rgb_support", False):
        return None
    return RGBSettings(video_dir=paths.rgb_dir(args.dataset, split, args.data_root, args.rgb_dir),
                       crop=args.rgb_crop, eval_sampling=args.rgb_eval_sampling)



def build_dataset(args, split: str, train: bool, describer=None) -> SignDataset:
    """The SignDataset of ``split`` from the run's flags (layout, sampling, descriptions, videos)."""
    label = paths.label_path(args.dataset, split, data_root=args.data_root, label_dir=args.label_dir)
    pose = paths.pose_dir(args.dataset, split, data_root=args.data_root, pose_dir=args.pose_dir)
    ds = SignDataset(label, pose, dataset=args.dataset, split=split, task=args.task,
                     max_length=args.max_length, train=train, seed=args.seed,
                     trust_pickles=args.trust_pickles, describer=describer, rgb=rgb_settings(args, split))
    if getattr(args, "max_samples", None):
        ds.keys = ds.keys[: args.max_samples]
    return ds



def build_loader(ds, args, info: D.DistInfo, train: bool, generator_seed: int = 0) -> DataLoader:
    """Training: this rank's shuffled shard in whole batches (``ResumableSampler``, the last
    partial batch dropped); evaluation: this rank's whole batches of the single-process order
    (``BatchShardSampler``, nothing dropped)."""
    g = torch.Generator()
    g.manual_seed(generator_seed)  # DataLoader seeds its workers from this, not the global RNG
    common = dict(collate_fn=collate_fn, num_workers=args.num_workers, generator=g,
                  persistent_workers=False, pin_memory=info.device.type == "cuda")
    if not train:
        return DataLoader(ds, batch_sampler=BatchShardSampler(len(ds), args.batch_size, info.rank, info.world_size),
                          **common)
    sampler = ResumableSampler(ds, info.world_size, info.rank, shuffle=True, seed=args.seed,
                               batch_size=args.batch_size)
    return DataLoader(ds, batch_size=args.batch_size, sampler=sampler, drop_last=True, **common)



def eval_datasets(args, describer) -> dict:
    """{split: dataset} of --eval: dev then test (How2Sign: test)."""
    return {split: build_dataset(args, split, train=False, describer=describer) for split in eval_splits(args.dataset)}


def eval_splits(dataset: str) -> list[str]:
    """dev then test; How2Sign has no dev split."""
    return [s for s in ("dev", "test") if s in SPLITS[dataset]]



@dataclass
class TrainData:
    describer: object           # Describer or None
    train: SignDataset
    val_split: str
    val: SignDataset

    def sample_ids(self) -> list:
        return self.train.sample_ids() + self.val.sample_ids()



def training_data(args, log) -> TrainData:
    """The training split and the validation split (dev; How2Sign: test), with descriptions."""
    describer = build_describer(args, log)
    val_split = eval_splits(args.dataset)[0]
    data = TrainData(describer, build_dataset(args, "train", train=True, describer=describer),
                     val_split, build_dataset(args, val_split, train=False, describer=describer))
    announce_descriptions(describer, {"train": data.train, val_split: data.val}, args.trust_pickles, log)
    return data


def announce_descriptions(describer, datasets: dict, trust_pickles: bool, log) -> None:
    """Tell the describer the pose files of ``datasets`` ({split: dataset}, for --describe rules)
    and log its coverage per split; nothing without descriptions."""
    if describer is None:
        return
    tell_pose_files(describer, datasets.values(), trust_pickles)
    for split, ds in datasets.items():
        log(describer.summary(split, ds.sample_ids()))



def tell_pose_files(describer, datasets, trust_pickles: bool) -> None:
    """--describe rules: tell the describer every sample's pose file, so that it can make any
    sample's descriptions itself (``warm_text_cache`` encodes every text before the run)."""
    if hasattr(describer, "set_pose_files"):
        describer.set_pose_files({sample_id: path for ds in datasets for sample_id, path in ds.pose_files().items()},
                                 trust_pickles)
