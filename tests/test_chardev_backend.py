"""The board service's ``chardev`` backend: its protocol handling, against a socket stand-in.

What this tests is the service side: the backend's framing of requests, its reading of
replies, its use of SET_TIMEOUT/RESET/GET_STATS, how it turns a missing reply into
TimeoutError and driver errnos into OSError, and the service and host CLI over TCP.
The driver itself is not modelled here: the real module runs in a booted kernel in
tests/test_driver_qemu.py. The stand-in (``SocketDriverStandIn``) is a Unix
SOCK_SEQPACKET socket served by a thread of this process that answers with the
driver's documented errnos (drivers/README.md) and hands good requests to the C
simulation of the core generated for a random model. The backend reaches it through
SeqpacketFile (zybo_z7/backends.py).
"""
import errno
import json
import shutil
import struct
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from contract import export_dir
from protocol import ioctl as IOC
from protocol import stream as S
from contract.intmodel import random_model
from contract.spec import CNNSpec
from bench.chardev_standin import SocketDriverStandIn
from driver_helpers import msg_lib
from wq_service_helpers import run_host, service
from zybo_z7 import backends as B

# Every wait below is bounded: the backend's socket and poll timeouts, and the
# subprocess timeouts of the service test.
pytestmark = pytest.mark.needs_gxx


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("chardev")
    from hls.csim import CSimCore

    model = random_model(CNNSpec.uniform(4, 4), 1)
    model.save(d / "model")
    core = CSimCore.for_model(d / "model", d / "csim")
    sock_dir = tempfile.mkdtemp(prefix="wq")  # sun_path is short; tmp_path can be long
    dev = SocketDriverStandIn(Path(sock_dir) / "waferq0", core, msg_lib(d))
    yield d, model, dev
    dev.close()
    shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
def dev(env):
    d, model, dev = env
    dev.timeout_ms, dev.stall_next = 5000, 0
    return dev


def open_accel(dev, timeout=2.0):
    return B.Accelerator(B.CharDevBackend(dev.path, timeout=timeout))


def images(model, n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, *model.input_shape), dtype=np.uint8)


def test_results_equal_the_int_model_and_stats_count(env, dev):
    d, model, _ = env
    with closing(open_accel(dev)) as acc:
        before = acc.backend.stats()
        blob = np.fromfile(d / "model" / "weights.bin", dtype="<u4")
        meta = export_dir.read(d / "model").meta
        assert acc.load_weights(blob) == meta["weights_checksum"]
        x = images(model, 12, 0)
        got = [acc.infer(img) for img in x]
        cls, logits = model.classify(x)
        assert [c for c, _ in got] == cls.tolist()
        assert [lg.tolist() for _, lg in got] == logits.tolist()
        after = acc.backend.stats()
    n = 1 + 1 + len(x)  # LOAD_WEIGHTS, the QUERY infer() makes first, the images
    assert after["tx_messages"] - before["tx_messages"] == n
    assert after["rx_messages"] - before["rx_messages"] == n
    assert after["tx_bytes"] - before["tx_bytes"] == 4 * (blob.size + 4) + 4 * 4 + sum(
        4 * (len(S.pack_pixels(i)) + 4) for i in x)
    assert after["errors"] == before["errors"] and after["timeouts"] == before["timeouts"]


def test_second_open_is_ebusy_and_release_frees_it(dev):
    with closing(B.CharDevBackend(dev.path)):
        with pytest.raises(OSError, match="open in another process") as e:
            B.CharDevBackend(dev.path)
        assert e.value.errno == errno.EBUSY
    with closing(open_accel(dev)) as acc:  # closed: the next open works
        assert acc.query()["n_classes"] > 0


def test_driver_errno_reaches_the_caller_as_oserror(dev):
    with closing(open_accel(dev)) as acc:
        with pytest.raises(OSError, match="write: Message too long") as e:
            acc.backend.transact(np.zeros(S.MAX_MESSAGE_WORDS + 1, dtype=np.uint32))
        assert e.value.errno == errno.EMSGSIZE
        assert acc.query()["n_classes"] > 0


def test_a_driver_of_another_interface_version_is_refused_at_open(dev):
    dev.api_version = IOC.WAFERQ_API_VERSION + 1
    try:
        with pytest.raises(OSError, match="interface version 3, this service 2") as e:
            B.CharDevBackend(dev.path)
        assert e.value.errno == errno.EPROTO
    finally:
        dev.api_version = IOC.WAFERQ_API_VERSION
    with closing(open_accel(dev)) as acc:  # the refused open released the device
        assert acc.query()["n_classes"] > 0


def test_ioctls(dev):
    with closing(B.CharDevBackend(dev.path, timeout=1.5)) as be:
        assert dev.timeout_ms == 1500  # the backend gives the driver its timeout
        for ms in (0, IOC.TIMEOUT_MAX_MS + 1):
            with pytest.raises(OSError) as e:
                be.file.ioctl(IOC.WAFERQ_IOC_SET_TIMEOUT, struct.pack("<I", ms))
            assert e.value.errno == errno.EINVAL
        for cmd in (IOC.ioc(IOC.IOC_NONE, IOC.WAFERQ_IOC_MAGIC, IOC.WAFERQ_IOC_MAXNR + 1, 0),
                    IOC.ioc(IOC.IOC_NONE, 0x42, 0, 0)):
            with pytest.raises(OSError) as e:
                be.file.ioctl(cmd)
            assert e.value.errno == errno.ENOTTY


def test_timeout_resets_and_the_next_request_works(dev):
    with closing(open_accel(dev, timeout=0.3)) as acc:
        n_classes = acc.query()["n_classes"]
        dev.stall_next = 1
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="no reply within 0.3 s; the device was reset"):
            acc.query()
        assert time.monotonic() - t0 < 2
        assert dev.state == "idle"  # RESET dropped the outstanding request
        assert acc.query()["n_classes"] == n_classes


def test_service_and_host_cli_over_tcp(env, dev, tmp_path):
    d, model, _ = env
    x = images(model, 20, 1)[..., 0]
    np.save(tmp_path / "few.npy", x)
    with service(d / "model", tmp_path, backend="chardev", start_timeout=30,
                 extra=("--device", dev.path)) as (port, _proc):
        proc = run_host(["classify", str(tmp_path / "few.npy"), "--board", f"127.0.0.1:{port}",
                         "--model", str(d / "model"), "--batch", "8", "--out",
                         str(tmp_path / "r.json"), "--no-progress"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "r.json").read_text())["results"]
    assert sorted(r["id"] for r in res) == list(range(len(x)))
    cls, logits = model.classify(x)
    res.sort(key=lambda r: r["id"])
    assert [r["class_index"] for r in res] == cls.tolist()
    assert [r["logits"] for r in res] == logits.tolist()


def test_a_batch_of_max_batch_maps_is_one_write(tmp_path):
    """The service's INFER_BATCH of the core's max_batch wafer maps (die
    states, PACK_DIE2) is one write() of the whole message and one read()."""
    from contract import blob
    from contract.preprocess import CATEGORY_CODES
    from hls.refcore import RefCore
    from zybo_z7.service import Board

    model = random_model(CNNSpec.uniform(4, 4), 2)
    core = RefCore(model.spec)
    assert core.max_batch == 1024   # hls/batch.py for the 9-class 42x42 CNN
    core.max_batch = 256            # the host's batch; a quarter of the time to classify
    core.reset = lambda: None
    core.transact = core.handle
    sock_dir = tempfile.mkdtemp(prefix="wq")
    dev = SocketDriverStandIn(Path(sock_dir) / "waferq0", core)
    try:
        with closing(open_accel(dev, timeout=30.0)) as acc:
            board = Board(acc)
            board.load_weights(blob.pack(model).astype("<u4").tobytes())
            n = board.info["max_batch"]
            x = CATEGORY_CODES[np.random.default_rng(4).integers(0, 3, (n, 42, 42, 1))]
            before = dict(dev.stats)
            res, _ = board.infer_batch(np.arange(n), x)
        request = 4 * (S.HEADER_WORDS + 1 + n * S.image_words(42 * 42, S.PACK_DIE2) + 1)
        assert dev.stats["tx_messages"] - before["tx_messages"] == 2    # QUERY, INFER_BATCH
        assert dev.stats["tx_bytes"] - before["tx_bytes"] == 16 + request
        assert request <= B.CharDevBackend.max_request_bytes
        cls, logits = model.classify(x)
        assert (res.status == 0).all() and np.array_equal(res.classes, cls)
        assert np.array_equal(res.logits, logits)
    finally:
        dev.close()
        shutil.rmtree(sock_dir, ignore_errors=True)
