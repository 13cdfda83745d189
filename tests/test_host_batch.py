"""The host sizes its batches by the board's core (issue 20): INFO carries the
core's max_batch and packings, and without --batch a request holds whole core
messages, at most AUTO_BATCH_CAP maps."""
import pytest

from contract.intmodel import random_model
from contract.spec import CNNSpec
from host_stm32mp1.client import AUTO_BATCH_CAP, CSIM_BATCH, DEFAULT_BATCH, BoardClient, auto_batch
from protocol import stream as S
from protocol import wire as W
from wq_service_helpers import run_host, service


@pytest.mark.parametrize("core,want", [(1024, 256), (256, 256), (300, 256), (100, 200),
                                       (16, 256), (7, 252), (0, DEFAULT_BATCH)])
def test_auto_batch_is_whole_core_messages_up_to_the_cap(core, want):
    assert AUTO_BATCH_CAP == 256
    assert auto_batch(dict(max_batch=core)) == want
    assert auto_batch({}) == DEFAULT_BATCH      # a board that reports no core batch


@pytest.mark.parametrize("core,want", [(1024, 8), (8, 8), (3, 6), (0, 8)])
def test_auto_batch_on_the_c_simulation_is_small(core, want):
    # The C simulation runs a few images a second: auto batches stay at
    # CSIM_BATCH images so that a reply comes well within --timeout.
    assert CSIM_BATCH == 8
    assert auto_batch(dict(max_batch=core, backend="csim")) == want
    assert auto_batch(dict(max_batch=core, backend="chardev")) == (auto_batch(dict(max_batch=core)))


def test_info_roundtrips_the_core_batch_fields():
    info = W.decode_info(W.encode_info(dict(max_batch=1024, packings=3, classes=["a"])))
    assert (info["max_batch"], info["packings"]) == (1024, 3)


def test_host_batches_by_the_board_without_batch(tmp_path):
    random_model(CNNSpec.uniform(4, 4), seed=1).save(tmp_path / "model")
    with service(tmp_path / "model", tmp_path) as (port, _):
        with BoardClient("127.0.0.1", port, timeout=30, key=None) as c:
            info = c.query()
        assert info["max_batch"] == 1024
        assert info["packings"] == (1 << S.PACK_U8) | (1 << S.PACK_DIE2)
        assert info["capabilities"] & S.CAP_BATCH
        proc = run_host(["bench", "--board", f"127.0.0.1:{port}", "--model",
                         str(tmp_path / "model"), "-n", "300", "--no-progress"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "300 of 300 maps in 2 batches of up to 256" in proc.stdout
