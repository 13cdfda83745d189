"""The simulated board the PynqBackend tests share (test_pynq_backend*.py).

Importing this skips the importing module where pynq, hls.csim or hls4ml is missing;
``MARKS`` is those modules' ``pytestmark`` (g++, and a warning of pynq's own to ignore).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from protocol import stream as S
from contract import blob
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec
from contract import board as board_facts
from zybo_z7 import pynq_backend as PB

pynq = pytest.importorskip("pynq", reason="pynq==4.0.0 is in the test extras")
pytest.importorskip("hls.csim", reason="hls.csim needs numpy and ctypes")
pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")

from pynq_sim import hwh as sim_hwh  # noqa: E402
from pynq_sim.device import bit_file, sim_board  # noqa: E402

MARKS = [pytest.mark.needs_gxx,
         pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is not installed"),
         # pynq's own _SGDMAChannel.wait() calls PynqBuffer.close(), which warns so
         pytest.mark.filterwarnings("ignore:.close no longer functional:DeprecationWarning")]

# Small enough to build in seconds; the feature map makes INFER's reply the long one.
SPEC = CNNSpec(name="pynq32", in_size=32, channels=(4, 16), w_bits=(4, 4, 4), a_bits=(4, 4))
MODES = ["sg", "simple"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from hls.csim import CSimCore
    base = tmp_path_factory.mktemp("pynq_core")
    random_model(SPEC, seed=7).save(base / "export")
    CSimCore.for_model(base / "export", base / "hls", features=True)
    return IntModel.load(base / "export"), base / "hls" / "csim" / "libwaferq_csim.so"


@pytest.fixture
def board(monkeypatch, tmp_path, built, request):
    """A simulated board with waferq.bit/.hwh on it; ``request.param``: the DMA mode."""
    from hls.csim import CSimCore
    mode = getattr(request, "param", "sg")
    core = CSimCore(built[1])
    facts = board_facts.load()
    bit = tmp_path / "waferq.bit"
    bit.write_bytes(bit_file())
    bit.with_suffix(".hwh").write_text(sim_hwh.fixture(sg=mode == "sg"))
    addresses = {k: (v["base"], v["range"]) for k, v in facts["address"].items()}
    with sim_board(monkeypatch, core.transact, sg=mode == "sg", addresses=addresses,
                   sg_length_width=facts["dma"]["sg_length_width"]) as dev:
        dev.bit, dev.mode, dev.model = bit, mode, built[0]
        yield dev
    core.close()


def backend(dev, **kw):
    return PB.PynqBackend(dev.bit, timeout=kw.pop("timeout", 2.0), **kw)


def image(seed=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (SPEC.in_size, SPEC.in_size, SPEC.in_channels), dtype=np.uint8)


def load_weights(be, model, tag=5):
    reply = S.decode(be.transact(S.encode(S.OP_LOAD_WEIGHTS, blob.pack(model), tag)))
    assert reply.opcode == S.OP_LOAD_WEIGHTS | S.REPLY_BIT and reply.tag == tag
    return reply


def query_ok(be, tag=9):
    reply = be.transact(S.encode(S.OP_QUERY, [], tag))
    msg = S.decode(reply)
    assert msg.opcode == S.OP_QUERY | S.REPLY_BIT and msg.tag == tag
    return reply
