"""quant.equalize: cross-layer equalization keeps the float net's function and
evens out the per-channel weight ranges that per-tensor scales handle badly."""
import pytest

torch = pytest.importorskip("torch")

from quant.equalize import _scale_in, equalize, pairs  # noqa: E402
from quant.floatnet import FloatNet  # noqa: E402
from contract.spec import CNNSpec  # noqa: E402
from contract.zoo import ZooSpec, buffer_spec  # noqa: E402


def test_pairs_follow_single_consumers_only():
    mob = ZooSpec("mobilenet_s", in_size=16, width=4).layers()
    names = [l["name"] for l in mob]
    got = pairs(mob)
    chain = [n for n in names if n not in ("gap",)]
    assert got == list(zip(chain[:-1], chain[1:]))        # stem->dw0->pw0->...->pw3->(gap)->fc
    xc = pairs(buffer_spec(4, 4, in_size=32, width=4).layers())
    assert ("entry_a_dw", "entry_a_pw") in xc
    # stem1 feeds the entry flow and its shortcut; fpn_top feeds an add: never equalized
    assert not any(a in ("stem1", "entry_short", "fpn_top", "fpn_lat") for a, _ in xc)
    vgg = pairs(ZooSpec("vgg_s", in_size=16, width=4).layers())
    assert ("conv2_0", "fc0") in vgg                      # through a max-pool into a dense layer


def _spread(net, todo):
    """Mean over the equalizable pairs of A's largest / smallest output-channel range."""
    vals = []
    for a, _ in todo:
        w = net.ops[a].weight.detach()
        r = w.reshape(w.shape[0], -1).abs().amax(1)
        vals.append(float(r.max() / r.min()))
    return sum(vals) / len(vals)


@pytest.mark.parametrize("spec", [ZooSpec("mobilenet_s", in_size=16, width=4),
                                  ZooSpec("vgg_s", in_size=16, width=4),
                                  CNNSpec.uniform(4, 4, channels=(4, 8, 8)),
                                  buffer_spec(4, 4, in_size=32, width=4)], ids=lambda s: s.family)
def test_same_function_narrower_channel_spread(spec):
    """A net is detuned by per-channel factors that cancel between the layers
    of each pair (so its function stays); equalization keeps the function
    and takes the channel spread back near the untouched net's."""
    torch.manual_seed(0)
    ref = FloatNet(spec).eval()
    todo = pairs(spec.layers())
    layers = {l["name"]: l for l in spec.layers()}
    fp = FloatNet(spec).eval()
    fp.load_state_dict(ref.state_dict())
    with torch.no_grad():
        for a, b in todo:
            c = fp.ops[a].weight.shape[0]
            t = torch.logspace(-1.5, 1.5, c)[torch.randperm(c)]
            fp.ops[a].weight.mul_(t.reshape(-1, *([1] * (fp.ops[a].weight.ndim - 1))))
            fp.ops[a].bias.mul_(t)
            fp.ops[b].weight.copy_(_scale_in(layers[b], fp.ops[b].weight, 1 / t))
    x = torch.rand(6, 1, spec.in_size, spec.in_size)
    with torch.no_grad():
        want = ref(x)
        torch.testing.assert_close(fp(x), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
        eq = equalize(fp)
        torch.testing.assert_close(eq(x), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert set(eq.state_dict()) == set(fp.state_dict())
    assert _spread(fp, todo) > 20 * _spread(ref, todo)
    assert _spread(eq, todo) < 2 * _spread(ref, todo)


def test_refuses_batch_norms():
    with pytest.raises(ValueError, match="fold them first"):
        equalize(FloatNet(ZooSpec("vgg_s", in_size=16, width=4), bn=True))
