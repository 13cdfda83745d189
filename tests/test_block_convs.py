"""wmcnn with more than one conv3x3 in a block (``CNNSpec.block_convs``): the
layer graph and its per-layer bit widths, old exports without the field, the
refusals, and the options of quant.train and bench.accuracy_vs_bits that set
it. The trained chain (Brevitas, integer model, qonnx, C simulation) runs in
tests/test_die_channels.py, whose net has a two-conv block."""
from __future__ import annotations

import pytest

from contract.spec import CNNSpec, spec_from_dict


def _convs(spec):
    return [(l["name"], l["in_c"], l["out_c"], l["w_bits"], l["out_bits"])
            for l in spec.layers() if l["type"] == "conv2d"]


def test_blocks_hold_their_convs_in_order_with_their_own_widths():
    spec = CNNSpec.with_bits((8, 4, 2, 6), (4, 3, 2), in_size=16, channels=(6, 8), block_convs=(1, 2))
    assert _convs(spec) == [("conv0", 1, 6, 8, 4), ("conv1", 6, 8, 4, 3), ("conv1_1", 8, 8, 2, 2)]
    names = [l["name"] for l in spec.layers()]
    assert names == ["conv0", "pool0", "conv1", "conv1_1", "pool1", "fc"]
    assert spec.layers()[-1]["w_bits"] == 6 and spec.name == "wmcnn_xwxa"
    assert spec_from_dict(spec.to_dict()) == spec


def test_one_conv_a_block_is_the_default_and_old_exports_read_as_it():
    plain = CNNSpec.uniform(4, 4, in_size=16, channels=(6, 8))
    ones = CNNSpec.uniform(4, 4, in_size=16, channels=(6, 8), block_convs=(1, 1))
    assert plain.layers() == ones.layers()
    old = {k: v for k, v in plain.to_dict().items() if k != "block_convs"}
    assert spec_from_dict(old) == plain
    assert CNNSpec.n_convs((6, 8)) == 2 and CNNSpec.n_convs((6, 8), (2, 3)) == 5


@pytest.mark.parametrize("blocks,match", [((1,), "block_convs needs 2"), ((1, 0), "at least 1")])
def test_counts_that_do_not_match_the_blocks_are_refused(blocks, match):
    with pytest.raises(ValueError, match=match):
        CNNSpec.uniform(4, 4, in_size=16, channels=(6, 8), block_convs=blocks)


def test_bit_lists_must_cover_every_conv():
    with pytest.raises(ValueError, match="w_bits needs 4 entries, got 3"):
        CNNSpec(in_size=16, channels=(6, 8), block_convs=(1, 2), w_bits=(4, 4, 4), a_bits=(4, 4, 4))
    with pytest.raises(ValueError, match="a_bits needs 3 entries, got 2"):
        CNNSpec(in_size=16, channels=(6, 8), block_convs=(1, 2), w_bits=(4, 4, 4, 4), a_bits=(4, 4))


def test_train_option_and_bench_edge_widths(tmp_path):
    pytest.importorskip("torch")
    from bench.accuracy_vs_bits import make_spec as bench_spec
    from quant import train as tr

    args = tr.parse_args(["--out", str(tmp_path), "--size", "16", "--channels", "6,8",
                          "--block-convs", "1,2", "--w-bits", "8,4,4,8", "--a-bits", "4"])
    spec = tr.make_spec(args)
    assert spec.block_convs == (1, 2) and [c[3] for c in _convs(spec)] == [8, 4, 4]
    # Edge widths go to the first conv and the classifier, wherever the extra convs sit.
    edge = bench_spec("wmcnn", 2, 16, None, (6, 8), edge_bits=8, block_convs=(2, 2))
    assert [c[3] for c in _convs(edge)] == [8, 2, 2, 2] and edge.layers()[-1]["w_bits"] == 8
