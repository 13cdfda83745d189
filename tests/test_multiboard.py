"""One host, three board services: balancing, failover on SIGKILL, and a
restarted board that gets its weights back before it gets work again."""
import json
import signal
import sqlite3
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from host_stm32mp1.client import BoardClient
from contract.preprocess import to_model_input
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec
from gate_proxy import GateProxy
from wq_service_helpers import PY, ROOT, env, service

N = 1200


def count(db, sql):
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:   # not created yet
        return 0


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.02)


def log_text(tmp, name):
    return Path(tmp, f"service-{name}.log").read_text(errors="replace")


@pytest.fixture()
def work(tmp_path):
    random_model(CNNSpec.uniform(4, 4), seed=5).save(tmp_path / "model")
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, size=(N, 12, 12)).astype(np.uint8)
    np.savez(tmp_path / "maps.npz", x=x)
    return tmp_path, x


def test_three_boards_sigkill_one_then_restart(work):
    """The order of events is fixed by gates on the data path, not by timing:
    boards 0 and 2 may take 30 batches each and board 1 ten before their gates
    hold, so the run (150 batches) cannot finish before board 1 is killed with
    a batch in flight, and after its restart the host cannot finish without
    it. Boards 0 and 2 reopen only once the restarted board has done work."""
    tmp, x = work
    db = tmp / "journal.sqlite"
    with ExitStack() as stack:
        ports, procs, gates = [], [], []
        for i in range(3):
            d = tmp / f"b{i}"
            d.mkdir()
            port, proc = stack.enter_context(service(tmp / "model", d, extra=("-v",)))
            gate = GateProxy(port, budget=10 if i == 1 else 30)
            stack.callback(gate.close)
            ports.append(port)
            procs.append(proc)
            gates.append(gate)
        boards = [f"127.0.0.1:{g.port}" for g in gates]
        host = subprocess.Popen(
            [PY, "-m", "host_stm32mp1", "classify", str(tmp / "maps.npz"), "--board", boards[0],
             "--board", ",".join(boards[1:]), "--model", str(tmp / "model"), "--db", str(db),
             "--batch", "8", "--timeout", "10", "--retries", "8", "--out", str(tmp / "r.json"),
             "--no-progress"],
            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=open(tmp / "host.err", "wb"))
        stack.callback(lambda: host.poll() is None and (host.kill(), host.wait(5)))
        assert gates[1].wait_held(120), "board 1 never got its eleventh batch"
        procs[1].send_signal(signal.SIGKILL)     # board 1 dies with a batch in flight
        procs[1].wait(5)
        done_at_kill = count(db, "SELECT COUNT(*) FROM wq_results")
        assert done_at_kill <= 70 * 8 < N
        # A fresh process on the same port: no weights until the host pushes them.
        gates[1].open(None)
        restart = stack.enter_context(service(tmp / "model", tmp / "b1",
                                              extra=("-v", "--port", str(ports[1]))))
        t_restart = time.time()
        wait_for(lambda: "batch of" in log_text(tmp / "b1", "reference").split("listening on")[-1],
                 120, lambda: "the restarted board to serve a batch; host log:\n"
                 + (tmp / "host.err").read_text()[-3000:])
        for g in (gates[0], gates[2]):
            g.open(None)
        assert host.wait(120) == 0, (tmp / "host.err").read_text()
        with BoardClient("127.0.0.1", ports[1], timeout=10, key=None) as c:
            info = c.query()
        assert restart[0] == ports[1] and info["weight_loads"] == 1 and info["weights_loaded"]

    assert count(db, "SELECT COUNT(*) FROM wq_results") == N
    assert count(db, "SELECT COUNT(*) FROM wq_images") == N
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT i.idx, r.class_index, r.board, r.finished_at FROM wq_images i "
                         "JOIN wq_results r ON r.seq = i.seq ORDER BY i.idx").fetchall()
    model = IntModel.load(tmp / "model")
    want = model.classify(np.stack([to_model_input(m, model.spec.in_size) for m in x]))[0]
    assert [r[0] for r in rows] == list(range(N)) and [r[1] for r in rows] == want.tolist()
    served = {b: sum(r[2] == b for r in rows) for b in boards}
    assert all(served.values()), served              # each board did part of the work
    assert any(r[2] == boards[1] and r[3] > t_restart for r in rows), \
        "the restarted board got no work after it came back"
    data = json.loads((tmp / "r.json").read_text())
    assert data["summary"]["n_ok"] == N and data["summary"]["boards"][boards[1]]["weights_sent"] >= 2
    assert {r["board"] for r in data["results"]} == set(boards)
    # The restarted service loaded the weights before its first batch.
    log = log_text(tmp / "b1", "reference").split("listening on")[-1]
    assert "loaded weights" in log and "batch of" in log
    assert log.index("loaded weights") < log.index("batch of")


def test_peer_that_accepts_then_drops_fails_cleanly(tmp_path):
    """A listener that accepts every connection and closes it at once (a board
    whose service is gone behind a proxy, or one over its connection cap) is a
    connection failure, not a RecursionError from reconnecting inside connect."""
    import socket
    import threading

    from host_stm32mp1.client import BoardError

    random_model(CNNSpec.uniform(4, 4), seed=5).save(tmp_path / "model")
    lsock = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def drop():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            accepted.append(1)
            c.close()

    threading.Thread(target=drop, daemon=True).start()
    client = BoardClient("127.0.0.1", lsock.getsockname()[1], timeout=5, key=None,
                         on_connect=lambda c: c.ensure_weights(tmp_path / "model"))
    try:
        with pytest.raises(BoardError, match="lost while connecting"):
            client.connect()
    finally:
        client.close()
        lsock.close()
    assert 1 <= len(accepted) <= 2
