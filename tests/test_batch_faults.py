"""A wire batch that spans several INFER_BATCH messages, cut inside: by a
timeout of one message, or by a SIGKILL of the service with a message in the
core. Every map gets exactly one result or error record, bit-exact results,
and only maps without a record are sent again.

The service runs as its own process on the chardev backend; its device is
the driver's stand-in (bench.chardev_standin) in this process, in front of
the reference core with a max_batch of 16, so a batch of 64 maps is four
messages. The order of events is fixed by a gate on the stand-in's write(),
not by timing; every wait is bounded.
"""
from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from bench.chardev_standin import SocketDriverStandIn
from contract.intmodel import IntModel, random_model
from contract.preprocess import to_model_input
from contract.spec import CNNSpec
from hls.refcore import RefCore
from host_stm32mp1.client import BoardClient
from protocol import stream as S
from protocol import wire as W
from wq_service_helpers import PY, ROOT, env, service

CORE_BATCH = 16


class Core:
    """The reference core as the stand-in calls it; counts the images it ran."""

    def __init__(self, spec):
        self.core = RefCore(spec)
        self.core.max_batch = CORE_BATCH
        self.images = 0

    def transact(self, words):
        words = np.asarray(words, dtype=np.uint32)
        if int(words[0]) & 0xFF == S.OP_INFER_BATCH:
            self.images += int(words[3]) & 0xFFFF
        return self.core.handle(words)

    def reset(self):
        pass


class GatedStandIn(SocketDriverStandIn):
    """The stand-in, with a stall (no reply: the backend times out) or a hold
    (the write waits for ``release``) on the n-th INFER_BATCH message."""

    def __init__(self, path, core):
        super().__init__(path, core)
        self.messages, self.stall_at, self.hold_at = 0, set(), None
        self.held, self.release = threading.Event(), threading.Event()

    def _write(self, data):
        if len(data) >= 16 and data[0] == S.OP_INFER_BATCH:
            self.messages += 1
            if self.messages in self.stall_at:
                self.stall_next = 1
            if self.messages == self.hold_at:
                self.held.set()
                self.release.wait(60)
        return super()._write(data)


@pytest.fixture()
def rig(tmp_path):
    spec = CNNSpec.uniform(4, 4)
    random_model(spec, seed=5).save(tmp_path / "model")
    sock_dir = tempfile.mkdtemp(prefix="wqbf")   # sun_path is short
    core = Core(spec)
    dev = GatedStandIn(Path(sock_dir) / "waferq0", core)
    yield tmp_path, dev, core
    dev.release.set()
    dev.close()
    shutil.rmtree(sock_dir, ignore_errors=True)


def model_inputs(maps):
    return np.stack([to_model_input(m, 42) for m in maps])


def test_a_timeout_inside_a_batch_costs_exactly_its_message(rig):
    tmp, dev, core = rig
    x = model_inputs(np.random.default_rng(1).integers(0, 3, (64, 12, 12)).astype(np.uint8))
    model = IntModel.load(tmp / "model")
    cls, logits = model.classify(x)
    dev.stall_at = {2}     # the second message of the first batch gets no reply
    with service(tmp / "model", tmp, backend="chardev", extra=("--device", dev.path)) as (port, _):
        with BoardClient("127.0.0.1", port, timeout=60, key=None) as c:
            c.ensure_weights(tmp / "model")
            res = c.infer_batch(x, np.arange(64))
            again = c.infer_batch(x, np.arange(64))    # the device was reset: all of it runs
    assert len(res) == 64 and dev.messages == 8
    bad = np.arange(CORE_BATCH, 2 * CORE_BATCH)
    assert (res.status[bad] == W.E_INTERNAL).all()
    good = np.setdiff1d(np.arange(64), bad)
    assert (res.status[good] == W.OK).all()
    assert np.array_equal(res.classes[good], cls[good]) and np.array_equal(res.logits[good], logits[good])
    assert (again.status == W.OK).all() and np.array_equal(again.logits, logits)


def _count(db, sql="SELECT COUNT(*) FROM wq_results"):
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_service_killed_inside_a_batch_then_restarted(rig):
    """Batches of 64 maps, four messages each; the kill lands with the second
    message of the second batch in the core. The first batch is journaled,
    the second is sent again whole (none of its maps has a record), and every
    map has exactly one result, equal to the integer model's."""
    tmp, dev, core = rig
    n = 256
    maps = np.random.default_rng(2).integers(0, 3, (n, 12, 12)).astype(np.uint8)
    np.savez(tmp / "maps.npz", x=maps)
    db = tmp / "j.sqlite"
    dev.hold_at = 6
    with ExitStack() as stack:
        port, proc = stack.enter_context(service(tmp / "model", tmp, backend="chardev",
                                                 extra=("--device", dev.path)))
        host = subprocess.Popen(
            [PY, "-m", "host_stm32mp1", "classify", str(tmp / "maps.npz"), "--board",
             f"127.0.0.1:{port}", "--model", str(tmp / "model"), "--db", str(db), "--batch", "64",
             "--timeout", "30", "--retries", "8", "--out", str(tmp / "r.json"), "--no-progress"],
            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=open(tmp / "host.err", "wb"))
        stack.callback(lambda: host.poll() is None and (host.kill(), host.wait(5)))
        assert dev.held.wait(60), "the second batch never reached its second message"
        assert _count(db) == 64          # the first batch, and nothing of the second
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        dev.release.set()                # the held write() returns to a closed connection
        assert dev.in_use.acquire(timeout=30), "the stand-in kept the dead service's open()"
        dev.in_use.release()             # released: the restarted service can open the device
        stack.enter_context(service(tmp / "model", tmp, backend="chardev",
                                    extra=("--device", dev.path, "--port", str(port))))
        assert host.wait(120) == 0, (tmp / "host.err").read_text()
    assert _count(db) == n and _count(db, "SELECT COUNT(*) FROM wq_images") == n
    # the second batch ran twice in part (its first message, and the held one
    # the dying service never read back), everything else once
    assert core.images == n + 2 * CORE_BATCH
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT i.idx, r.class_index, r.logits FROM wq_images i "
                         "JOIN wq_results r ON r.seq = i.seq ORDER BY i.idx").fetchall()
    cls, logits = IntModel.load(tmp / "model").classify(model_inputs(maps))
    assert [r[0] for r in rows] == list(range(n)) and [r[1] for r in rows] == cls.tolist()
    assert [json.loads(r[2]) for r in rows] == logits.tolist()
