"""Skeleton graphs of the four pose parts and their adjacency matrices (pyskl style).

Each part is a small graph over its keypoints (docs/unisign-compat.md section 4). The ST-GCN
blocks use the 'distance' partition with max hop 1: two (V, V) matrices, one for the node
itself (hop 0) and one for its neighbours (hop 1), taken from the column-normalised
matrix of "hop <= 1" (self-loops included).
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    num_nodes: int
    edges: tuple  # (i, j) pairs, undirected; self-loops are added by the adjacency
    center: int   # kept for reference (pyskl); the 'distance' partition does not use it


def _chain(nodes) -> tuple:
    return tuple(zip(nodes[:-1], nodes[1:]))


# Hand (21 nodes): the wrist 0 and five fingers of four points each.
HAND = Skeleton(
    num_nodes=21,
    edges=sum((_chain((0,) + tuple(range(f, f + 4))) for f in (1, 5, 9, 13, 17)), ()),
    center=0,
)
# Body (9 nodes): nose 0, ears 1-2, shoulders 3-4, elbows 5-6, wrists 7 (left) and 8 (right).
BODY = Skeleton(
    num_nodes=9,
    edges=((0, 1), (0, 2), (0, 3), (0, 4), (3, 5), (5, 7), (4, 6), (6, 8)),
    center=0,
)
# Face (18 nodes): jaw chain 0..8, mouth ring 9..16, nose 17 joined to all of them.
FACE_ALL = Skeleton(
    num_nodes=18,
    edges=_chain(tuple(range(9))) + _chain(tuple(range(9, 17))) + ((16, 9),)
    + tuple((17, i) for i in range(17)),
    center=17,
)

PART_SKELETONS = {"body": BODY, "left": HAND, "right": HAND, "face_all": FACE_ALL}


def hop_distance(skeleton: Skeleton, max_hop: int = 1) -> np.ndarray:
    """(V, V) number of edges between two nodes; inf beyond ``max_hop``."""
    V = skeleton.num_nodes
    A = np.eye(V, dtype=np.int64)
    for i, j in skeleton.edges:
        A[i, j] = A[j, i] = 1
    reach = [np.linalg.matrix_power(A, d) > 0 for d in range(max_hop + 1)]  # hop <= d
    hop = np.full((V, V), np.inf)
    for d in range(max_hop, -1, -1):
        hop[reach[d]] = d
    return hop


def distance_adjacency(skeleton: Skeleton, max_hop: int = 1) -> np.ndarray:
    """(max_hop + 1, V, V) float32: matrix k keeps the hop-k entries of A @ diag(1 / colsum)."""
    hop = hop_distance(skeleton, max_hop)
    A = (hop <= max_hop).astype(np.float64)  # (V, V), self-loops included
    A_norm = A / A.sum(axis=0, keepdims=True)  # A @ diag(1 / colsum): every column sums to 1
    return np.stack([np.where(hop == k, A_norm, 0.0) for k in range(max_hop + 1)]).astype(np.float32)
