"""``watch`` against a tester-like writer (issue 18 item 1) and hostile drop
folders (issue 21 item 10): slow writes, a pause with the file open, a rename,
a file that changes while it is classified, a symbolic link, a swapped file."""
import hashlib
import sqlite3
import threading
import time

import numpy as np
import pytest

from host_stm32mp1 import cli, engine, readers
from host_stm32mp1.client import BoardClient, parse_address
from contract.preprocess import to_model_input
from host_stm32mp1.store import open_store
from host_stm32mp1.watch import Watcher
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec
from test_host_formats import Stdf, bbox, wafer
from wq_service_helpers import run_host, service


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("line")
    random_model(CNNSpec.uniform(4, 4), seed=5).save(d / "model")
    return d


@pytest.fixture(scope="module")
def board(work):
    with service(work / "model", work) as (port, _):
        yield f"127.0.0.1:{port}"


def lot_records(maps, lot="LOT1"):
    """An STDF as a tester writes it, as a list of byte chunks (header, each part, the end)."""
    s = Stdf()
    s.mir(lot)
    chunks = [s.bytes()]
    for i, m in enumerate(maps):
        for rec in _wafer_records(f"W{i}", m):
            chunks.append(rec)
    end = Stdf()
    end.buf.clear()
    end.hbr(1, "P")
    end.hbr(7, "F")
    end.mrr()
    chunks.append(end.bytes())
    return chunks


def _wafer_records(wid, m):
    s = Stdf()
    s.buf.clear()
    s.wir(wid)
    out = [s.bytes()]
    for (r, c), v in np.ndenumerate(m):
        if v:
            s.buf.clear()
            s.part(c, r, 1 if v == 1 else 7)
            out.append(s.bytes())
    s.buf.clear()
    s.wrr(wid, int((m > 0).sum()), int((m == 1).sum()))
    out.append(s.bytes())
    return out


def expected(work, maps):
    model = IntModel.load(work / "model")
    x = np.stack([to_model_input(bbox(m), model.spec.in_size) for m in maps])
    return model.classify(x)[0].tolist()


def classes_in(db):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT i.source, i.wafer_id, r.status, r.class_index FROM wq_images i "
                         "JOIN wq_results r ON r.seq = i.seq ORDER BY i.source, i.idx").fetchall()


def test_tester_like_writer_end_to_end(work, board, tmp_path):
    """A slow writer that pauses with the file open, and one that writes a .part and renames.
    Whatever the timing, nothing is moved while it is written, and every wafer is classified
    once from its complete file."""
    line = tmp_path / "line"
    line.mkdir()
    maps1 = [wafer(14, 15, seed=s) for s in range(2)]
    maps2 = [wafer(12, 13, seed=9)]
    paused, resume = threading.Event(), threading.Event()

    def tester():
        chunks = lot_records(maps1, "LOTA")
        with open(line / "A.stdf", "wb") as f:
            for i, chunk in enumerate(chunks):
                f.write(chunk)
                f.flush()
                if i == len(chunks) // 2:
                    paused.set()
                    resume.wait(30)    # the tester pauses mid-wafer, the file open
                elif i % 40 == 0:
                    time.sleep(0.01)
        with open(line / "B.stdf.part", "wb") as f:
            for chunk in lot_records(maps2, "LOTB"):
                f.write(chunk)
                f.flush()
        (line / "B.stdf.part").rename(line / "B.stdf")

    writer = threading.Thread(target=tester)
    writer.start()
    assert paused.wait(30)
    import subprocess
    from wq_service_helpers import PY, ROOT, env
    watch = subprocess.Popen([PY, "-m", "host_stm32mp1", "watch", str(line), "--board", board, "--model",
                              str(work / "model"), "--max-files", "2", "--poll-interval", "0.05",
                              "--settle", "0.1", "--no-progress"],
                             cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Let the watcher see the paused file for many settle times before the tester goes on.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and watch.poll() is None:
            assert (line / "A.stdf").exists()        # never moved while the writer holds it
            time.sleep(0.05)
        resume.set()
        writer.join(30)
        out, err = watch.communicate(timeout=120)
    finally:
        resume.set()
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, out + err
    assert sorted(p.name for p in (line / "done").iterdir()) == ["A.stdf", "B.stdf"]
    assert not (line / "failed").exists()
    got = classes_in(line / "waferq.sqlite")
    assert [(g[1], g[2]) for g in got] == [("W0", "ok"), ("W1", "ok"), ("W0", "ok")]
    assert [g[3] for g in got] == expected(work, maps1) + expected(work, maps2)


def _watcher(work, board, line, **kw):
    args = cli.build_parser().parse_args(["watch", str(line), "--board", board, "--model",
                                          str(work / "model"), "--settle", "0"])
    args.pass_bins_set = None
    args.boards, args.board = args.board, ",".join(args.board)     # as cli.main does
    model = engine.Model.load(work / "model")
    store = open_store(str(line / "w.sqlite"))
    settings, _ = engine.settings_key(model, **cli.reader_options(args))
    client = BoardClient(*parse_address(board), timeout=30)
    return Watcher(args, model, store, client, settings, **kw)


def test_paused_partial_file_stays_until_complete(work, board, tmp_path):
    """Where no lease can be had (another owner), a paused tester's file is taken,
    found partial (no MRR), and left in place -- deterministic, no timing."""
    line = tmp_path / "line"
    line.mkdir()
    m = [wafer(11, 11, seed=3)]
    chunks = lot_records(m)
    p = line / "P.stdf"
    p.write_bytes(b"".join(chunks[:-1]))          # everything but HBRs and the MRR
    w = _watcher(work, board, line, use_lease=False)
    try:
        assert w.ready(0) == [] and w.ready(0) == [p]      # seen twice unchanged
        assert w.process(p) is False and p.exists() and not (line / "failed").exists()
        assert w.ready(0) == []                    # unchanged: not read again
        with open(p, "ab") as f:
            f.write(chunks[-1])                    # the tester finishes
        assert w.ready(0) == [] and w.ready(0) == [p]
        assert w.process(p) is True and (line / "done" / "P.stdf").exists()
    finally:
        w.client.close()
        w.store.close()
    assert [g[3] for g in classes_in(line / "w.sqlite")] == expected(work, m)


def test_file_changed_while_classified_is_left(work, board, tmp_path, monkeypatch):
    line = tmp_path / "line"
    line.mkdir()
    m = [wafer(11, 11, seed=4)]
    p = line / "C.stdf"
    p.write_bytes(b"".join(lot_records(m)))
    w = _watcher(work, board, line)
    send = engine.send

    def send_and_append(*a, **kw):
        send(*a, **kw)
        with open(p, "ab") as f:                   # the writer was not done after all
            f.write(b"\0\0\1\62")
    monkeypatch.setattr(engine, "send", send_and_append)
    try:
        assert w.process(p) is False and p.exists() and not (line / "done").exists()
        sha = hashlib.sha256(b"".join(lot_records(m))).hexdigest()
        assert w.store.file_outcome(sha, w.settings) is None      # not recorded as handled
    finally:
        w.client.close()
        w.store.close()


def test_swapped_file_is_hashed_and_parsed_from_the_same_bytes(work, board, tmp_path, monkeypatch):
    line = tmp_path / "line"
    line.mkdir()
    first, second = [wafer(11, 11, seed=5)], [wafer(13, 9, seed=6)]
    p = line / "S.stdf"
    p.write_bytes(b"".join(lot_records(first)))
    w = _watcher(work, board, line)
    read_file = readers.read_file

    def swap_then_read(*a, **kw):   # another process swaps the file between open and parse
        p.write_bytes(b"".join(lot_records(second)))
        return read_file(*a, **kw)
    monkeypatch.setattr(readers, "read_file", swap_then_read)
    try:
        assert w.process(p) is False                      # changed: left, read again later
        monkeypatch.setattr(readers, "read_file", read_file)
        assert w.process(p) is True
    finally:
        w.client.close()
        w.store.close()
    with sqlite3.connect(line / "w.sqlite") as c:
        rows = c.execute("SELECT i.file_sha256, r.class_index FROM wq_images i JOIN wq_results r "
                         "ON r.seq = i.seq ORDER BY i.seq").fetchall()
        files = c.execute("SELECT file_sha256 FROM wq_files").fetchall()
    sha1 = hashlib.sha256(b"".join(lot_records(first))).hexdigest()
    sha2 = hashlib.sha256(b"".join(lot_records(second))).hexdigest()
    # Each hash holds the answers of its own content; only the file finally moved is recorded.
    assert rows == [(sha1, expected(work, first)[0]), (sha2, expected(work, second)[0])]
    assert files == [(sha2,)]


def test_symlink_in_drop_folder_is_not_followed(work, board, tmp_path):
    line, outside = tmp_path / "line", tmp_path / "secret"
    line.mkdir()
    outside.mkdir()
    np.save(outside / "m.npy", wafer(seed=1))
    (line / "link.npy").symlink_to(outside / "m.npy")
    proc = run_host(["watch", str(line), "--once", "--board", board, "--model", str(work / "model"),
                     "--poll-interval", "0.05", "--settle", "0", "--no-progress"])
    assert proc.returncode == 1, proc.stderr
    assert "symbolic link" in proc.stderr and (line / "failed" / "link.npy").is_symlink()
    assert (outside / "m.npy").exists()
    with sqlite3.connect(line / "waferq.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM wq_results").fetchone()[0] == 0


def test_lease_says_when_a_writer_holds_the_file(tmp_path):
    from host_stm32mp1.watch import open_for_writing

    p = tmp_path / "x.stdf"
    p.write_bytes(b"x")
    assert open_for_writing(p) is False
    with open(p, "ab"):
        assert open_for_writing(p) is True
    with open(p, "rb"):
        assert open_for_writing(p) is False      # readers do not count
    assert open_for_writing(p) is False
