"""Skeleton graphs, adjacency matrices and ST-GCN blocks (signfuse.models.graph, .stgcn)."""
import numpy as np
import pytest
import torch

from conftest import golden
from signfuse.models.graph import BODY, FACE_ALL, HAND, PART_SKELETONS, distance_adjacency, hop_distance
from signfuse.models.stgcn import GCNUnit, STGCNBlock, spatial_chain, temporal_chain


# ---- graphs ----

@pytest.mark.parametrize("part", ["body", "left", "right", "face_all"])
def test_adjacency_equals_golden(part):
    expected = np.load(golden("expected.npz"))[f"graph_A_{part}"]
    A = distance_adjacency(PART_SKELETONS[part])
    assert A.dtype == np.float32
    np.testing.assert_array_equal(A, expected)


@pytest.mark.parametrize("skeleton, num_edges", [(HAND, 20), (BODY, 8), (FACE_ALL, 8 + 8 + 17)])
def test_graph_sizes_and_connectivity(skeleton, num_edges):
    assert len(set(map(frozenset, skeleton.edges))) == num_edges
    # every node is joined to the centre: the graph is one piece
    hop = hop_distance(skeleton, max_hop=skeleton.num_nodes)
    assert np.isfinite(hop[skeleton.center]).all()


@pytest.mark.parametrize("skeleton", [HAND, BODY, FACE_ALL])
def test_adjacency_partition_and_column_normalisation(skeleton):
    A = distance_adjacency(skeleton)
    V = skeleton.num_nodes
    assert A.shape == (2, V, V)
    np.testing.assert_allclose(A.sum(axis=(0, 1)), np.ones(V), rtol=1e-6)  # columns of A0 + A1 sum to 1
    assert np.count_nonzero(A[0] - np.diag(np.diag(A[0]))) == 0  # hop 0: the diagonal only
    assert np.all(np.diag(A[1]) == 0)
    assert np.count_nonzero(A[1]) == 2 * len(skeleton.edges)  # hop 1: both directions of each edge


def test_adjacency_known_entries():
    body, face, hand = (distance_adjacency(s) for s in (BODY, FACE_ALL, HAND))
    # the nose has 4 neighbours and a self-loop; a wrist has its elbow and itself
    assert body[0, 0, 0] == pytest.approx(1 / 5)
    assert body[1, 5, 7] == pytest.approx(1 / 2)  # elbow -> left wrist, column of node 7
    assert body[1, 7, 5] == pytest.approx(1 / 3)  # wrist -> elbow (elbow: shoulder, wrist, self)
    # face: node 17 (nose) is joined to all 17 others
    assert face[0, 17, 17] == pytest.approx(1 / 18)
    assert face[1, 17, 0] == pytest.approx(1 / 3)  # jaw end 0: neighbours 1 and 17
    assert face[1, 16, 9] == pytest.approx(1 / 4)  # the mouth ring is closed by 16-9
    # hand: the wrist has 5 fingers and itself; a finger tip has one neighbour
    assert hand[0, 0, 0] == pytest.approx(1 / 6)
    assert hand[1, 3, 4] == pytest.approx(1 / 2)
    assert hand[1, 4, 8] == 0  # no edge between two finger tips


# ---- GCN unit and blocks ----

def _copy_unit(A: torch.Tensor, channels: int = 4) -> GCNUnit:
    """A GCN unit whose 1x1 conv copies its input into each of the K subsets (BN: identity in eval)."""
    unit = GCNUnit(channels, channels, A).eval()
    with torch.no_grad():
        unit.conv.weight.copy_(torch.eye(channels).repeat(A.shape[0], 1)[:, :, None, None])
        unit.conv.bias.zero_()
    return unit


def test_gcn_unit_shape_and_parameter_adjacency():
    A = torch.from_numpy(distance_adjacency(BODY))
    unit = GCNUnit(3, 8, A)
    assert isinstance(unit.A, torch.nn.Parameter) and torch.equal(unit.A.data, A)
    assert unit.A.data_ptr() != A.data_ptr()  # its own copy: training one part's A leaves the graph alone
    assert unit(torch.randn(2, 3, 5, 9)).shape == (2, 8, 5, 9)
    assert set(unit.state_dict()) == {
        "conv.weight", "conv.bias", "A", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
        "bn.num_batches_tracked",
    }


@pytest.mark.parametrize("skeleton", [HAND, BODY, FACE_ALL])
def test_gcn_unit_aggregates_over_columns(skeleton):
    # output node w = sum_k sum_v x[v] A[k, v, w]; columns of A0 + A1 sum to 1, so a constant
    # input stays constant (rows do not sum to 1: the transposed product would not)
    unit = _copy_unit(torch.from_numpy(distance_adjacency(skeleton)))
    x = torch.full((1, 4, 3, skeleton.num_nodes), 2.0)
    with torch.no_grad():
        y = unit(x)
    torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-5)


def test_gcn_unit_mixes_only_graph_neighbours():
    unit = _copy_unit(torch.from_numpy(distance_adjacency(BODY)))
    x = torch.rand(1, 4, 3, 9) + 1.0
    x2 = x.clone()
    x2[..., 7] += 1.0  # left wrist
    with torch.no_grad():
        changed = (unit(x2) - unit(x)).abs().amax(dim=(0, 1, 2)) > 0
    assert changed.tolist() == [i in (5, 7) for i in range(9)]  # itself and the left elbow


def test_chain_state_dict_names():
    A = torch.from_numpy(distance_adjacency(HAND))
    spatial = spatial_chain((8, 16, 32), A)
    temporal = temporal_chain(32, A, temporal_kernel=5, num_blocks=3)
    keys = set(spatial.state_dict())
    assert {k.split(".")[0] for k in keys} == {"layer0_0", "layer1_0", "layer2_0"}
    assert not any(".tcn." in k for k in keys)  # kernel 1: no temporal convolution
    assert not any(k.startswith("layer0_0.residual") for k in keys)  # 8 -> 8: identity
    assert spatial.state_dict()["layer1_0.residual.0.weight"].shape == (16, 8, 1, 1)
    assert spatial.state_dict()["layer2_0.residual.1.running_var"].shape == (32,)
    assert spatial.state_dict()["layer2_0.gcn.conv.weight"].shape == (64, 16, 1, 1)
    tkeys = set(temporal.state_dict())
    assert {k.split(".")[0] for k in tkeys} == {"layer0_0", "layer0_1", "layer0_2"}
    assert temporal.state_dict()["layer0_1.tcn.0.weight"].shape == (32, 32, 5, 1)
    assert "layer0_2.tcn.1.running_mean" in tkeys and not any("residual" in k for k in tkeys)


def test_block_output_is_relu_of_sum_with_residual():
    A = torch.from_numpy(distance_adjacency(BODY))
    block = STGCNBlock(4, 4, A, temporal_kernel=1).eval()
    x = torch.randn(2, 4, 3, 9)
    with torch.no_grad():
        expected = torch.relu(block.gcn(x) + x)
        torch.testing.assert_close(block(x), expected)
        assert (block(x) >= 0).all()


def test_temporal_receptive_field():
    torch.manual_seed(0)
    A = torch.from_numpy(distance_adjacency(BODY))
    spatial = spatial_chain((4, 4, 8), A).eval()
    temporal = temporal_chain(8, A, temporal_kernel=5, num_blocks=3).eval()
    x = torch.randn(1, 4, 30, 9)
    x2 = x.clone()
    x2[:, :, 15] += 1.0
    with torch.no_grad():
        s_changed = (spatial(x2) - spatial(x)).abs().amax(dim=(0, 1, 3)) > 0
        h, h2 = spatial(x), spatial(x2)
        t_changed = (temporal(h2) - temporal(h)).abs().amax(dim=(0, 1, 3)) > 1e-7
    assert s_changed.nonzero().flatten().tolist() == [15]  # kernel 1: frame by frame
    changed = t_changed.nonzero().flatten().tolist()  # three kernel-5 blocks: +-6 frames
    assert min(changed) >= 9 and max(changed) <= 21 and 9 in changed and 21 in changed
