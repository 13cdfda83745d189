"""One definition each. acc_bits: one function (hls.cost) for the generated
C++ accum_t and the estimator, the narrowest signed width that holds every sum
the C++ can form. CORE_VERSION: one constant."""
import pytest

from hls import cost as C
from hls import gen_config as G


def test_one_function_for_the_cpp_and_the_estimate():
    assert G.acc_bits is C.acc_bits


# fan 65536 at W8A8: the inputs' largest code is 255, not 256, and that decides one bit.
@pytest.mark.parametrize("fan_in,in_bits,w_bits", [(65536, 8, 8), (1, 1, 2), (9, 4, 4),
                                                    (3 * 3 * 64, 8, 8), (1 << 20, 2, 2)])
def test_acc_bits_is_the_narrowest_width_that_holds_every_sum(fan_in, in_bits, w_bits):
    # in_t is ap_uint<in_bits> (0 .. 2**in_bits - 1), weight_t ap_int<w_bits>, bias int32.
    x_max, w_min, w_max = (1 << in_bits) - 1, -(1 << (w_bits - 1)), (1 << (w_bits - 1)) - 1
    lo = fan_in * x_max * w_min - (1 << 31)
    hi = fan_in * x_max * w_max + (1 << 31) - 1

    def holds(n):
        return -(1 << (n - 1)) <= lo and hi <= (1 << (n - 1)) - 1

    n = G.acc_bits(fan_in, in_bits, w_bits)   # the width the generated accum_t gets
    assert holds(n) and not holds(n - 1)


def test_core_version_is_defined_once():
    """The version QUERY reports: the generated C++ and the Python reference core
    read one constant (hls.gen_config.CORE_VERSION)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    where = []
    tops = ("protocol", "contract", "quant", "hls", "zybo_z7", "host_stm32mp1", "bench", "deploy",
            "scripts", "tests")
    for path in sorted(p for top in tops for p in (root / top).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CORE_VERSION"
                                                    for t in node.targets):
                where.append(str(path.relative_to(root)))
    assert where == ["hls/gen_config.py"]
