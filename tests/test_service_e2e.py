"""Board service in its own process, host CLI in another, over TCP on 127.0.0.1."""
import importlib.util
import json
import shutil
import socket
import threading

import numpy as np
import pytest

from contract import export_dir
from host_stm32mp1.client import BoardClient, BoardError
from contract.preprocess import to_model_input
from protocol import wire as W
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec
from wq_service_helpers import run_host, service

N_MAPS = 200


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    random_model(CNNSpec.uniform(4, 4), seed=3).save(d / "model")
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(N_MAPS, 26, 31)).astype(np.uint8)
    x[:, :3] = 0
    y = rng.integers(0, 9, size=N_MAPS)
    np.savez(d / "maps.npz", x=x, y=y)
    return d


@pytest.fixture(scope="module")
def board(work):
    with service(work / "model", work) as (port, _proc):
        yield port


def classify(work, port, files, *extra, out="r.json"):
    args = ["classify", *map(str, files), "--board", f"127.0.0.1:{port}", "--model",
            str(work / "model"), "--batch", "64", "--out", str(work / out), "--no-progress", *extra]
    proc = run_host(args)
    data = json.loads((work / out).read_text()) if (work / out).exists() else None
    return proc, data


def expected_classes(work, maps):
    model = IntModel.load(work / "model")
    inputs = np.stack([to_model_input(m, model.spec.in_size) for m in maps])
    return model.classify(inputs)


def test_classify_matches_int_model_and_sends_weights_once(work, board):
    proc, data = classify(work, board, [work / "maps.npz"])
    assert proc.returncode == 0, proc.stderr
    res = data["results"]
    assert len(res) == N_MAPS and sorted(r["id"] for r in res) == list(range(N_MAPS))
    assert [r["index"] for r in res] == list(range(N_MAPS))
    with np.load(work / "maps.npz") as z:
        x, y = z["x"], z["y"]
    cls, logits = expected_classes(work, x)
    assert [r["class_index"] for r in res] == cls.tolist()
    assert [r["logits"] for r in res] == logits.tolist()
    assert [r["label"] for r in res] == y.tolist()
    s = data["summary"]
    assert s["weights_sent"] is True and s["n_ok"] == N_MAPS and s["n_errors"] == 0
    assert s["accuracy"] == pytest.approx(float(np.mean(cls == y)))
    assert "throughput" in proc.stdout and "Center" in proc.stdout

    proc, data = classify(work, board, [work / "maps.npz"], out="r2.json")
    assert proc.returncode == 0, proc.stderr
    assert data["summary"]["weights_sent"] is False
    with BoardClient("127.0.0.1", board, timeout=10) as c:
        info = c.query()
    meta = export_dir.read(work / "model").meta
    assert info["weight_loads"] == 1 and info["weights_checksum"] == meta["weights_checksum"]
    assert info["backend"] == "reference" and info["classes"] == list(meta["spec"]["classes"])


def test_wrong_image_size_gives_per_image_errors(work, board):
    proc, data = classify(work, board, [work / "maps.npz"], "--size", "40", out="size.json")
    assert proc.returncode == 1, proc.stderr
    res = data["results"]
    assert len(res) == N_MAPS
    assert all(r["status"] == "error" and r["error"]["name"] == "BAD_SHAPE" for r in res)
    assert "40x40x1" in res[0]["error"]["message"]


def test_corrupt_file_is_one_error_record(work, board):
    good = work / "few.npy"
    maps = np.random.default_rng(1).integers(0, 3, (5, 20, 20)).astype(np.uint8)
    np.save(good, maps)
    bad = work / "bad.npz"
    bad.write_bytes((work / "maps.npz").read_bytes()[:300])
    proc, data = classify(work, board, [bad, good], out="corrupt.json")
    assert proc.returncode == 1, proc.stderr
    res = data["results"]
    assert len(res) == 6
    assert res[0]["status"] == "error" and res[0]["source"] == str(bad) and res[0]["error"]["message"]
    assert all(r["status"] == "ok" for r in res[1:])
    assert [r["class_index"] for r in res[1:]] == expected_classes(work, maps)[0].tolist()


def test_unreachable_board_exit_2(work):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc, _ = classify(work, port, [work / "maps.npz"], out="none.json")
    assert proc.returncode == 2 and "cannot connect" in proc.stderr


def test_no_weights_malformed_frame_topology_and_concurrency(work, tmp_path):
    with service(work / "model", tmp_path) as (port, _):
        with BoardClient("127.0.0.1", port, timeout=10) as c:
            imgs = np.zeros((3, 42, 42, 1), np.uint8)
            recs = c.infer_batch(imgs, [5, 6, 7])
            assert [r["status"] for r in recs] == [W.E_NO_WEIGHTS] * 3
            with pytest.raises(BoardError, match="BAD_WEIGHTS"):
                c.load_weights(b"\0" * 8)
            assert c.query()["weights_loaded"] == 0

        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(W.HEADER.pack(b"JUNK", 1, 1, 0, 1, 0, 0))
            f = W.read_frame(s, timeout=10)
            assert f.type == W.T_ERROR and "bad magic" in W.decode_error(f.payload)[1]
            with pytest.raises(W.ConnectionClosed):
                W.read_frame(s, timeout=10)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(W.HEADER.pack(W.MAGIC, W.VERSION, W.T_INFER_BATCH, 0, 1, 1 << 30, 0))
            f = W.read_frame(s, timeout=10)
            assert "oversize" in W.decode_error(f.payload)[1]

        other = tmp_path / "other"
        random_model(CNNSpec.uniform(4, 4, channels=(4, 8)), seed=0).save(other)
        with BoardClient("127.0.0.1", port, timeout=10) as c, pytest.raises(BoardError, match="topology"):
            c.ensure_weights(other)

        maps = np.random.default_rng(2).integers(0, 3, (8, 42, 42)).astype(np.uint8)
        inputs = np.stack([to_model_input(m, 42) for m in maps])
        want = IntModel.load(work / "model").classify(inputs)[0].tolist()
        with BoardClient("127.0.0.1", port, timeout=10) as c:
            c.ensure_weights(work / "model")
        errors, got = [], []

        def worker():
            try:
                with BoardClient("127.0.0.1", port, timeout=30) as c:
                    for _ in range(3):
                        got.append([r["class_index"] for r in c.infer_batch(inputs, range(8))])
            except Exception as e:  # noqa: BLE001 - reported by the assert below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors and len(got) == 12 and all(g == want for g in got)


def test_client_reconnects_once(work, board):
    c = BoardClient("127.0.0.1", board, timeout=10)
    c.query()
    c.sock.shutdown(socket.SHUT_RDWR)  # a broken connection, as after a cable glitch
    assert c.query()["backend"] == "reference"
    c.close()


@pytest.mark.needs_gxx
def test_csim_backend_e2e(work, tmp_path):
    if importlib.util.find_spec("hls.csim") is None:
        pytest.skip("hls.csim is not written yet")
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    with service(work / "model", tmp_path, backend="csim", start_timeout=300,
                 extra=("--work-dir", str(tmp_path / "csim"))) as (port, _):
        proc, data = classify(work, port, [work / "few.npy"] if (work / "few.npy").exists()
                              else [work / "maps.npz"], out="csim.json")
    assert proc.returncode == 0, proc.stderr
    src = data["results"][0]["source"]
    maps = np.load(src) if src.endswith(".npy") else np.load(src)["x"]
    assert [r["class_index"] for r in data["results"]] == expected_classes(work, maps)[0].tolist()


def test_chardev_absent_node_message(tmp_path):
    from zybo_z7.backends import make_backend

    with pytest.raises(FileNotFoundError, match="load the waferq driver or choose --backend csim"):
        make_backend("chardev", device=str(tmp_path / "waferq0"))


def test_sigint_stops_service(work, tmp_path):
    import signal

    with service(work / "model", tmp_path) as (_port, proc):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
