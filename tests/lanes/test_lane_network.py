"""runner/task/lanes.py's LaneNetwork: lanes' copies of a network as one vmapped computation give
each lane's own outputs, gradients and BatchNorm statistics (float64, to rounding), and keep each
bucket's rows in its own parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from runner.task.lanes import LaneNetwork
from tasks.classifier import nets


def _nets(make, lanes: int) -> list[nn.Module]:
    torch.manual_seed(0)
    return [make().double() for _ in range(lanes)]


@pytest.mark.parametrize("make,shape", [
    (lambda: nets.mlp((1, 8, 8), 10, hidden=(16, 16)), (1, 8, 8)),
    (lambda: nets.cnn((1, 8, 8), 10, channels=(4, 8), hidden=16), (1, 8, 8)),
    (lambda: nets.FastNet((3, 8, 8), 10, widths=(8, 8, 8), stem=4), (3, 8, 8)),
], ids=["mlp", "cnn", "fastnet-batchnorm"])
def test_each_lane_computes_its_own_network(make, shape):
    single = _nets(make, 3)
    stacked = LaneNetwork(copy.deepcopy(single), sizes=[2, 1])
    torch.manual_seed(1)
    x = torch.randn(3, 5, *shape, dtype=torch.float64)
    for _ in range(2):  # twice: the second pass reads the running statistics the first one wrote
        out = stacked(x)
        expected = torch.stack([n(xi) for n, xi in zip(single, x)])
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-14)
    out.square().sum().backward()
    expected.square().sum().backward()
    per_lane = stacked.weights.grads()
    for j, p in enumerate(single[0].parameters()):
        for i, n in enumerate(single):
            torch.testing.assert_close(per_lane[j][i], list(n.parameters())[j].grad, rtol=1e-12, atol=1e-14)
    assert [len(b[0]) for b in stacked.weights.buckets()] == [2, 1]
    stacked.eval()
    for n in single:
        n.eval()
    torch.testing.assert_close(stacked(x[0], shared=True), torch.stack([n(x[0]) for n in single]),
                               rtol=1e-12, atol=1e-14)
    copies = _nets(make, 3)
    stacked.write_back(copies)
    for a, b in zip(copies, single):
        for (k, u), v in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-14, msg=k)
