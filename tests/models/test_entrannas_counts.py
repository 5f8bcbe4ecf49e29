"""EnTranNAS-DST counts: kept edges as the paper counts them (input edges per node)
and kept (input, op) pairs, by hand on a constructed coefficient table."""

import numpy as np
import pytest

from models.entrannas import cells, edge_counts, entrannas_supernet, genotype, op_counts
from models.entrannas import record_counts

OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
# probabilities per edge (temperature 1, logits = log p); edges in DARTS order:
# node 0 <- inputs 0, 1; node 1 <- inputs 0, 1, node 0 (= input 2)
PROBS = np.array([
    [0.1, 0.1, 0.2, 0.6],   # e0: 0 -> node 0
    [0.1, 0.5, 0.1, 0.3],   # e1: 1 -> node 0
    [0.7, 0.1, 0.1, 0.1],   # e2: 0 -> node 1 (its mass is on "none", never kept)
    [0.1, 0.1, 0.1, 0.7],   # e3: 1 -> node 1
    [0.1, 0.4, 0.4, 0.1],   # e4: node 0 -> node 1
])
THRESHOLDS = [0.4, 0.5]
# DST (eqs. 7-9) by hand: p_hat = p / (largest non-none p of the node), kept if > t_j.
# node 0: largest 0.6; e0: pool 1/6, skip 1/3, sep 1 -> sep; e1: pool 5/6, skip 1/6,
#   sep 1/2 -> pool, sep. Inputs {0, 1}: 2 edges, 3 ops.
# node 1: largest 0.7; e2: 1/7 each -> none; e3: sep 1 -> sep; e4: pool 4/7, skip 4/7,
#   sep 1/7 -> pool, skip. Inputs {1, 2}: 2 edges, 3 ops.
RECORD = [[[0, "sep_conv_3x3"], [1, "max_pool_3x3"], [1, "sep_conv_3x3"]],
          [[1, "sep_conv_3x3"], [2, "max_pool_3x3"], [2, "skip_connect"]]]


@pytest.fixture(scope="module")
def model():
    model = entrannas_supernet(channels=4, cells=3, steps=2, ops=OPS, dst=True)
    for cell in cells(model):
        if cell.temperature is not None and hasattr(cell.temperature, "assign"):
            cell.temperature.assign(1.0)
    engine = [c for c in cells(model) if c.arch_key == "normal"][0]
    engine.arch("logits").assign(np.log(PROBS).astype("float32"))
    t = np.array(THRESHOLDS)
    engine.arch("betas").assign(np.log(t / (1 - t)).astype("float32"))
    return model


def test_record_of_the_constructed_table(model):
    assert genotype(model)["normal"] == RECORD


def test_edges_as_the_paper_counts_and_ops_separately(model):
    assert edge_counts(model)["normal"] == 4   # node 0: inputs 0, 1; node 1: inputs 1, 2
    assert op_counts(model)["normal"] == 6     # 3 + 3 (input, op) pairs
    assert record_counts(RECORD) == (4, 6)
    # every count at most the possible edges of 2 nodes (2 + 3)
    assert all(e <= 5 and e <= o for e, o in zip(edge_counts(model).values(),
                                                 op_counts(model).values()))
