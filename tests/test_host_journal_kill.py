"""SIGKILL the host mid-batch, rerun it: every image has exactly one result
row, and the rerun sends only what had none."""
import json
import signal
import sqlite3
import subprocess
import time

import numpy as np

from contract.preprocess import to_model_input
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec
from wq_service_helpers import PY, ROOT, env, run_host, service

N = 2000


def _count(db, sql):
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:   # not created yet
        return 0


def test_sigkill_mid_batch_then_resume(tmp_path):
    random_model(CNNSpec.uniform(4, 4), seed=5).save(tmp_path / "model")
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, size=(N, 12, 12)).astype(np.uint8)
    np.savez(tmp_path / "maps.npz", x=x, y=rng.integers(0, 9, N))
    db = tmp_path / "journal.sqlite"
    with service(tmp_path / "model", tmp_path) as (port, _):
        args = ["classify", str(tmp_path / "maps.npz"), "--board", f"127.0.0.1:{port}", "--model",
                str(tmp_path / "model"), "--db", str(db), "--no-progress"]
        # Batches of one map: thousands of round trips, so the kill lands mid-run.
        proc = subprocess.Popen([PY, "-m", "host_stm32mp1", *args, "--batch", "1"], cwd=ROOT,
                                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while _count(db, "SELECT COUNT(*) FROM wq_results") < 100:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "no results journaled within 60 s"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        proc.stderr.close()
        done_at_kill = _count(db, "SELECT COUNT(*) FROM wq_results")
        assert 100 <= done_at_kill < N, "the run finished before the kill: make it slower"
        assert _count(db, "SELECT COUNT(*) FROM wq_images") == N   # all journaled before sending

        rerun = run_host([*args, "--batch", "64", "--out", str(tmp_path / "r.json")], timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["summary"]["n_from_store"] == done_at_kill
    assert data["summary"]["n_ok"] == N and len(data["results"]) == N
    assert sum(r.get("cached", False) for r in data["results"]) == done_at_kill

    assert _count(db, "SELECT COUNT(*) FROM wq_images") == N
    assert _count(db, "SELECT COUNT(*) FROM wq_results") == N
    assert _count(db, "SELECT COUNT(*) FROM (SELECT seq FROM wq_results GROUP BY seq "
                      "HAVING COUNT(*) > 1)") == 0
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT i.idx, r.class_index, r.logits FROM wq_images i "
                         "JOIN wq_results r ON r.seq = i.seq ORDER BY i.idx").fetchall()
    model = IntModel.load(tmp_path / "model")
    cls, logits = model.classify(np.stack([to_model_input(m, model.spec.in_size) for m in x]))
    assert [r[0] for r in rows] == list(range(N))
    assert [r[1] for r in rows] == cls.tolist()
    assert [json.loads(r[2]) for r in rows] == logits.tolist()
