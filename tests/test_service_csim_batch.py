"""Bit-exactness of batched inference through the whole board side: host
client -> TCP -> service -> C simulation of the generated HLS core, for a
batch of one map and one of the core's max_batch (one INFER_BATCH message),
as die states (PACK_DIE2), and gray maps as bytes (PACK_U8); and the
host's own batch size for such a board."""
import numpy as np
import pytest

from contract.intmodel import random_model
from contract.preprocess import CATEGORY_CODES
from contract.spec import CNNSpec
from host_stm32mp1.client import BoardClient
from protocol import wire as W
from wq_service_helpers import run_host, service

pytestmark = pytest.mark.needs_gxx


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    d = tmp_path_factory.mktemp("csim_batch")
    model = random_model(CNNSpec.uniform(4, 4), seed=9)
    model.save(d / "model")
    with service(d / "model", d, backend="csim", start_timeout=600,
                 extra=("--work-dir", str(d / "csim"))) as (port, _):
        with BoardClient("127.0.0.1", port, timeout=600, key=None) as c:
            c.ensure_weights(d / "model")
            yield c, model, port, d


@pytest.mark.parametrize("size,kind", [(1, "die_states"), (1, "bytes"), ("max_batch", "die_states"),
                                       (64, "bytes")])
def test_batch_bit_exact_with_the_int_model(board, size, kind):
    c, model = board[:2]
    n = c.query()["max_batch"] if size == "max_batch" else size
    assert n in (1, 64, 1024)
    rng = np.random.default_rng(n)
    if kind == "die_states":
        x = CATEGORY_CODES[rng.integers(0, 3, (n, 42, 42, 1))]
    else:   # gray levels: the service sends PACK_U8
        x = rng.integers(0, 256, (n, 42, 42, 1), dtype=np.uint8)
    res = c.infer_batch(x, np.arange(n) + 7)
    cls, logits = model.classify(x)
    assert (res.status == W.OK).all() and res.ids.tolist() == list(range(7, n + 7))
    assert np.array_equal(res.classes, cls) and np.array_equal(res.logits, logits)


def test_host_auto_batches_are_small_on_the_c_simulation(board):
    # Without --batch the host sizes requests by the board's INFO; on the C
    # simulation (a few images a second) that is CSIM_BATCH images, not the
    # 256 a board's core gets, so a reply comes well within --timeout.
    _, _, port, d = board
    proc = run_host(["bench", "--board", f"127.0.0.1:{port}", "--model", str(d / "model"), "-n", "10",
                     "--no-progress"], timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "10 of 10 maps in 2 batches of up to 8" in proc.stdout
