"""Temporal alignment of descriptions to the sampled frames (``docs/descriptions.md``):
``TemporalAligner(descriptions, frame_indices, strategy, max_gap).align()`` maps the described
original frames onto the sampled ones."""
from typing import Optional

import numpy as np

from signfuse.config import ALIGNMENTS
from signfuse.errors import InputError


def check_alignment_options(strategy: str, max_gap) -> None:
    """Raise InputError naming the flag when ``strategy`` or ``max_gap`` is not usable."""
    if strategy not in ALIGNMENTS:
        raise InputError(f"--desc_alignment: unknown strategy {strategy!r} "
                         f"(choose from {', '.join(ALIGNMENTS)})")
    if max_gap is not None and (isinstance(max_gap, bool) or not isinstance(max_gap, int)
                                or max_gap < 0):
        raise InputError(f"--max_gap: must be a non-negative number of frames, got {max_gap!r}")


class TemporalAligner:
    """Maps described original frames onto sampled original frames (docs/descriptions.md section 2).

    ``align() -> (aligned, has_description)``: for each sampled frame, ``aligned[i]`` is
    ``[]`` (nothing), ``[(text, 1.0)]`` (exact, nearest, or an interpolation between two equal
    texts) or ``[(text_L, w_L), (text_R, w_R)]`` (interpolation, L first, weights summing to
    1); ``has_description[i]`` is 1 when frame i itself is described, else 0.

    Strategies: ``interpolate`` (exact; else interpolate between L and R; else the one
    neighbour), ``nearest`` (exact; else the nearer of L and R, ties to L), ``exact`` (only
    described frames). ``max_gap`` (frames, default no limit) limits every nearest-neighbour
    choice: the neighbour must be at most ``max_gap`` frames away. It does not limit
    interpolation between two existing neighbours (the spec ties it to the one-sided case).
    Empty or whitespace-only texts count as not described.
    """

    def __init__(self, descriptions: dict, frame_indices, strategy: str = "interpolate",
                 max_gap: Optional[int] = None):
        check_alignment_options(strategy, max_gap)
        items = sorted((int(frame), text) for frame, text in descriptions.items()
                       if isinstance(text, str) and text.strip())
        self.described = np.array([frame for frame, _ in items], dtype=np.int64)
        self.texts = [text for _, text in items]
        self.frame_indices = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        self.strategy = strategy
        self.max_gap = max_gap

    def align(self) -> tuple[list, list]:
        """Return ``(aligned, has_description)`` for the sampled frames, in their order."""
        count = len(self.frame_indices)
        if len(self.described) == 0:
            return [[] for _ in range(count)], [0] * count
        frames, described = self.frame_indices, self.described
        # right: index of the first described frame >= f (len(described) when none).
        right = np.searchsorted(described, frames, side="left")
        clipped = np.minimum(right, len(described) - 1)
        exact = (right < len(described)) & (described[clipped] == frames)
        left = right - 1  # index of the last described frame < f (-1 when none)
        aligned, has_description = [], []
        for i, f in enumerate(frames.tolist()):
            if exact[i]:
                aligned.append([(self.texts[right[i]], 1.0)])
                has_description.append(1)
                continue
            has_description.append(0)
            aligned.append(self._between(f, int(left[i]), int(right[i])))
        return aligned, has_description

    def _between(self, f: int, left: int, right: int) -> list:
        """The pairs of a frame ``f`` that is not described, given its neighbours' indices."""
        has_left, has_right = left >= 0, right < len(self.described)
        if self.strategy == "exact" or not (has_left or has_right):
            return []
        if self.strategy == "interpolate" and has_left and has_right:
            return self._interpolate(f, left, right)
        if has_left and has_right:
            nearer = left if f - self.described[left] <= self.described[right] - f else right
        else:
            nearer = left if has_left else right
        gap = abs(int(self.described[nearer]) - f)
        if self.max_gap is not None and gap > self.max_gap:
            return []
        return [(self.texts[nearer], 1.0)]

    def _interpolate(self, f: int, left: int, right: int) -> list:
        """Linear interpolation: (R - f)/(R - L) on L's text, (f - L)/(R - L) on R's text."""
        text_l, text_r = self.texts[left], self.texts[right]
        if text_l == text_r:
            return [(text_l, 1.0)]
        frame_l, frame_r = int(self.described[left]), int(self.described[right])
        span = frame_r - frame_l
        return [(text_l, (frame_r - f) / span), (text_r, (f - frame_l) / span)]
