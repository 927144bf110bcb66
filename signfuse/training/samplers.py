"""Samplers of a run: ``ResumableSampler`` (training: this rank's shuffled shard in whole
batches, resumable mid-epoch) and ``BatchShardSampler`` (evaluation: whole batches of the
single-process order)."""

import torch
from torch.utils.data import DistributedSampler, Sampler


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch with ``set_epoch``, padded to a multiple of the
    number of ranks) that yields whole batches only (the last partial batch of each rank is
    dropped, as Uni-Sign's ``drop_last=True`` loader drops it) and can start after the first
    batches of its epoch: a resumed run sees exactly the remaining batches of every rank.

    Rank r's k-th batch holds positions ``r + world * (k * batch_size + j)`` of the epoch's
    padded permutation, so after ``b`` batches per rank the consumed samples are exactly the
    first ``b * batch_size * world`` positions: skipping them and sharding the rest gives every
    rank its remaining batches, and still covers each sample once when the run is resumed
    with another number of processes."""

    def __init__(self, dataset, num_replicas, rank, shuffle, seed, batch_size):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.batch_size, self.consumed = batch_size, 0

    def set_start_batch(self, skip: int, world_size: int | None = None) -> None:
        """Start after ``skip`` batches of each of the ``world_size`` ranks (default: this run's)."""
        self.consumed = skip * self.batch_size * (world_size or self.num_replicas)

    def epoch_indices(self) -> list:
        """The epoch's padded permutation (DistributedSampler's, before sharding)."""
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=g).tolist()
        else:
            indices = list(range(n))
        padding = self.total_size - n
        if padding > 0 and indices:
            indices += (indices * -(-padding // n))[:padding]
        return indices

    def remaining(self) -> list:
        """The epoch's positions not consumed yet, padded (by repeating its first ones) to a
        multiple of the number of ranks, so that every rank gets as many batches (needed only
        after resuming with another number of processes)."""
        rest = self.epoch_indices()[self.consumed:]
        extra = -len(rest) % self.num_replicas
        if extra and rest:
            rest += (rest * -(-extra // len(rest)))[:extra]
        return rest

    def __iter__(self):
        mine = self.remaining()[self.rank::self.num_replicas]
        return iter(mine[:len(self)])

    def __len__(self):
        """This rank's samples in whole batches."""
        mine = -(-max(0, self.total_size - self.consumed) // self.num_replicas)
        return mine // self.batch_size * self.batch_size



def train_batches_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """Micro-batches of one process in a whole epoch of ``n`` samples: DistributedSampler's
    share (padded), in whole batches (Uni-Sign's ``len(train_dataloader)``)."""
    return -(-n // world_size) // batch_size



class BatchShardSampler(Sampler):
    """Evaluation shard by whole batches: the batches of a single-process evaluation
    (``batch_size`` consecutive samples), every ``world``-th one from ``rank``. Each batch
    keeps its single-process composition (so its padding and results), no sample is padded
    in or seen twice; the ranks may get one batch more or less than each other."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int):
        batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
        self.batches = batches[rank::world]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)
