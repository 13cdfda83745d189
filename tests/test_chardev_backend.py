"""The board service's ``chardev`` backend: its protocol handling, against a socket stand-in.

What this tests is the service side: the backend's framing of requests, its reading of
replies, its use of SET_TIMEOUT/RESET/GET_STATS, how it turns a missing reply into
TimeoutError and driver errnos into OSError, and the service and host CLI over TCP.
The driver itself is not modelled here: the real module runs in a booted kernel in
tests/test_driver_qemu.py. The stand-in (``SocketDriverStandIn``) is a Unix
SOCK_SEQPACKET socket served by a thread of this process that answers with the
driver's documented errnos (drivers/README.md) and hands good requests to the C
simulation of the core generated for a random model. The backend reaches it through
SeqpacketFile (zybo_z7/devnode.py).
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
from protocol import pixels as PX
from protocol import stream as S
from protocol import wire as W
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
        4 * (len(PX.pack_pixels(i)) + 4) for i in x)
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
        # the weights checksum is the LOAD_WEIGHTS reply's: no QUERY
        assert dev.stats["tx_messages"] - before["tx_messages"] == 1    # INFER_BATCH
        assert dev.stats["tx_bytes"] - before["tx_bytes"] == request
        assert request <= B.CharDevBackend.max_request_bytes
        cls, logits = model.classify(x)
        assert (res.status == 0).all() and np.array_equal(res.classes, cls)
        assert np.array_equal(res.logits, logits)
    finally:
        dev.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


# --- the weights checksum in RESULTS: read from the core only when it may have changed ---

class ResettingCore:
    """The reference core as the stand-in calls it, whose reset() is the driver's
    WAFERQ_IOC_RESET on the board: a CSR soft reset, which clears the weights
    (``#pragma HLS reset``; hls/refcore.py)."""

    def __init__(self, spec, max_batch=16):
        from hls.refcore import RefCore

        self.core = RefCore(spec)
        self.core.max_batch = max_batch

    def transact(self, words):
        return self.core.handle(words)

    def reset(self):
        self.core._invalidate()


class OpcodeStandIn(SocketDriverStandIn):
    """The stand-in, recording the opcode of every message written."""

    def __init__(self, path, core):
        super().__init__(path, core)
        self.ops = []

    def _write(self, data):
        if len(data) >= 4:
            self.ops.append({v: k for k, v in S.OPCODES.items()}.get(data[0], data[0]))
        return super()._write(data)

    def take(self):
        ops, self.ops = self.ops, []
        return ops


@pytest.fixture
def rig():
    """(Board on the chardev backend, the stand-in, the core, two models of one topology)."""
    from contract import blob
    from zybo_z7.service import Board

    spec = CNNSpec.uniform(4, 4)
    models = [random_model(spec, seed) for seed in (7, 8)]
    core = ResettingCore(spec)
    sock_dir = tempfile.mkdtemp(prefix="wq")
    dev = OpcodeStandIn(Path(sock_dir) / "waferq0", core)
    acc = open_accel(dev, timeout=0.5)
    try:
        yield Board(acc), dev, core, [blob.pack(m).astype("<u4").tobytes() for m in models], models
    finally:
        acc.close()
        dev.close()
        shutil.rmtree(sock_dir, ignore_errors=True)


def maps(n, seed):
    from contract.preprocess import CATEGORY_CODES

    return CATEGORY_CODES[np.random.default_rng(seed).integers(0, 3, (n, 42, 42, 1))]


def run(board, n=8, seed=0):
    x = maps(n, seed)
    res, checksum = board.infer_batch(np.arange(n), x)
    assert res.weights_checksum == checksum
    return res, checksum, x


def test_a_batch_queries_the_core_only_when_its_state_is_not_known(rig):
    board, dev, core, blobs, models = rig
    core.core.handle(S.encode(S.OP_LOAD_WEIGHTS, np.frombuffer(blobs[0], "<u4")))  # an earlier run's
    first = core.core.weights_checksum
    dev.take()
    res, checksum, x = run(board)        # start-up: the state is read from the core
    assert dev.take() == ["QUERY", "INFER_BATCH"] and checksum == first
    assert np.array_equal(res.classes, models[0].classify(x)[0])
    for seed in (1, 2):                             # then one driver write a batch
        res, checksum, _ = run(board, seed=seed)
        assert dev.take() == ["INFER_BATCH"] and checksum == first and (res.status == 0).all()

    dev.stall_next = 1                              # timeout: the backend's RESET clears the weights
    res, _, _ = run(board)
    assert dev.take() == ["INFER_BATCH"] and (res.status == W.E_INTERNAL).all()
    for _ in range(2):                              # read again, and again after NO_WEIGHTS
        res, checksum, _ = run(board)
        assert dev.take() == ["QUERY", "INFER_BATCH"]
        assert (res.status == W.E_NO_WEIGHTS).all() and checksum == 0

    assert board.load_weights(blobs[1]) == core.core.weights_checksum != first
    assert dev.take() == ["LOAD_WEIGHTS"]
    res, checksum, x = run(board, seed=3)  # the LOAD_WEIGHTS reply's checksum
    assert dev.take() == ["INFER_BATCH"] and checksum == core.core.weights_checksum
    assert np.array_equal(res.logits, models[1].classify(x)[1])


def test_a_checksum_loaded_through_the_service_shows_in_the_next_results(rig):
    board, dev, core, blobs, models = rig
    sums = []
    for i in (0, 1, 0):
        sums.append(board.load_weights(blobs[i]))
        for seed in (0, 1):
            res, checksum, x = run(board, seed=seed)
            assert checksum == sums[-1] == core.core.weights_checksum
            assert np.array_equal(res.logits, models[i].classify(x)[1])
    assert sums[0] != sums[1] and sums[0] == sums[2]


def test_a_failed_load_is_not_taken_for_loaded_weights(rig):
    board, dev, core, blobs, models = rig
    board.load_weights(blobs[0])
    run(board)
    dev.stall_next = 1                          # the load times out; the RESET clears the weights
    with pytest.raises(TimeoutError):
        board.load_weights(blobs[1])
    dev.take()
    res, checksum, _ = run(board)
    assert dev.take() == ["QUERY", "INFER_BATCH"]
    assert checksum == 0 and (res.status == W.E_NO_WEIGHTS).all()


def test_weights_lost_behind_the_service_give_no_weights_not_a_stale_checksum(rig):
    """The core loses its weights without a failed exchange of the service's (the
    driver's own recovery, a soft reset): the next INFER_BATCH's NO_WEIGHTS
    reply shows it. The RESULTS say 0, as a QUERY would, and the next batch
    reads the state again."""
    board, dev, core, blobs, models = rig
    loaded = board.load_weights(blobs[0])
    assert run(board)[1] == loaded
    core.reset()
    dev.take()
    res, checksum, _ = run(board)
    assert dev.take() == ["INFER_BATCH"]
    assert (res.status == W.E_NO_WEIGHTS).all() and checksum == 0
    res, checksum, _ = run(board)
    assert dev.take() == ["QUERY", "INFER_BATCH"] and checksum == 0
