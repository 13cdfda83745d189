"""The host subcommands against a real board service on 127.0.0.1."""
import csv
import importlib.util
import json
import shutil
import socket
import sqlite3
import time

import numpy as np
import pytest

from contract import export_dir
from contract.preprocess import to_model_input
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec
from test_host_formats import bbox, g85_xml, stdf_for, wafer
from test_host_store import pg_url  # noqa: F401 - the PostgreSQL fixture
from wq_service_helpers import run_host, service

SUBCOMMANDS = {"classify": "--csv", "watch": "--poll-interval", "configure": "--force",
               "status": "--db", "bench": "--batch", "report": "--out", "console": "zybo_z7.console"}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    random_model(CNNSpec.uniform(4, 4), seed=9).save(d / "model")
    maps = [wafer(26, 31, seed=s) for s in range(6)]
    (d / "lot.xml").write_text(g85_xml(maps[:2]))
    (d / "lot.stdf").write_bytes(stdf_for(maps[2:4]))
    (d / "rows.json").write_text(json.dumps([dict(waferMap=m.tolist(), failureType=[["Donut"]])
                                             for m in maps[4:]]))
    (d / "cut.stdf").write_bytes(stdf_for(maps[:1])[:-9])
    d.joinpath("maps.txt").write_text("\n".join(json.dumps(m.tolist()) for m in maps))
    return d


@pytest.fixture(scope="module")
def board(work):
    with service(work / "model", work) as (port, _):
        yield f"127.0.0.1:{port}"


def expected(work, maps):
    model = IntModel.load(work / "model")
    return model.classify(np.stack([to_model_input(m, model.spec.in_size) for m in maps]))[0].tolist()


def all_maps(work):
    maps = [np.array(json.loads(line), np.uint8) for line in (work / "maps.txt").read_text().splitlines()]
    return maps[:2] + [bbox(m) for m in maps[2:4]] + maps[4:]


def host(work, board, *args, timeout=60):
    return run_host([*map(str, args), "--board", board, "--model", str(work / "model")], timeout=timeout)


def test_help_everywhere():
    proc = run_host(["--help"])
    assert proc.returncode == 0 and all(c in proc.stdout for c in SUBCOMMANDS)
    for cmd, opt in SUBCOMMANDS.items():
        proc = run_host([cmd, "--help"])
        assert proc.returncode == 0 and opt in proc.stdout, (cmd, proc.stdout)
    assert run_host([]).returncode == 2
    assert run_host(["watch"]).returncode == 2


def _classify(work, board, db, tag):
    files = [work / n for n in ("lot.xml", "lot.stdf", "rows.json", "cut.stdf")]
    return host(work, board, "classify", *files, "--db", db, "--csv", work / f"{tag}.csv",
                "--out", work / f"{tag}.json", "--no-progress")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_classify_formats_csv_and_store(work, board, kind, request):
    if kind == "sqlite":
        db = str(work / "cls.sqlite")
    else:
        db = request.getfixturevalue("pg_url")
        from host_stm32mp1.store import open_store
        with open_store(db) as s:
            for t in ("wq_results", "wq_files", "wq_images"):
                s._exec(f"DROP TABLE IF EXISTS {t}")
            s._commit()
    proc = _classify(work, board, db, kind)
    assert proc.returncode == 1, proc.stderr          # cut.stdf is one error record
    res = json.loads((work / f"{kind}.json").read_text())["results"]
    assert [r["status"] for r in res] == ["ok"] * 6 + ["error"]
    assert "truncated" in res[6]["error"]["message"]
    assert [r["class_index"] for r in res[:6]] == expected(work, all_maps(work))
    assert [r["label_name"] for r in res[4:6]] == ["Donut", "Donut"] and res[4]["label"] == 1
    with open(work / f"{kind}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 and rows[0]["class"] == res[0]["cls"] and rows[6]["status"] == "error"
    assert rows[6]["error_message"] and rows[0]["seq"]

    # Rerun: everything is answered already (the broken file's error included): nothing sent.
    proc = _classify(work, board, db, kind + "2")
    assert proc.returncode == 1 and "answered earlier" in proc.stdout
    again = json.loads((work / f"{kind}2.json").read_text())
    assert again["summary"]["n_from_store"] == 7 and again["summary"]["n_batches"] == 0
    assert [r.get("class_index") for r in again["results"]] == [r.get("class_index") for r in res]
    proc = run_host(["status", "--board", board, "--db", db, "--json"])
    counters = json.loads(proc.stdout)["store"]
    assert counters == dict(images=7, results_ok=6, results_error=1, pending=0, files=0)


def test_watch_once_done_failed_and_duplicates(work, board, tmp_path):
    line = tmp_path / "line"
    line.mkdir()
    for n in ("lot.xml", "lot.stdf", "cut.stdf"):
        shutil.copy(work / n, line / n)
    shutil.copy(work / "lot.xml", line / "lot-copy.xml")    # same content, other name
    (line / "notes.txt").write_text("not a map")
    # A cut STDF may be a paused tester: left in place until it has been unchanged this long.
    proc = host(work, board, "watch", line, "--once", "--poll-interval", "0.1", "--no-progress",
                "--incomplete-after", "0")
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in (line / "done").iterdir()) == ["lot-copy.xml", "lot.stdf", "lot.xml"]
    assert [p.name for p in (line / "failed").iterdir()] == ["cut.stdf"]
    assert (line / "notes.txt").exists() and "already classified" in proc.stdout
    db = line / "waferq.sqlite"
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM wq_images").fetchone()[0] == 5
        assert c.execute("SELECT COUNT(*) FROM wq_results").fetchone()[0] == 5
        assert c.execute("SELECT COUNT(*) FROM wq_files").fetchone()[0] == 3
        classes = [r[0] for r in c.execute("SELECT r.class_index FROM wq_images i JOIN wq_results r "
                                           "ON r.seq = i.seq WHERE r.status = 'ok' ORDER BY i.seq")]
    assert sorted(classes) == sorted(expected(work, all_maps(work)[:4]))

    # The same file again, later: moved to done/ without being sent.
    shutil.copy(work / "lot.stdf", line / "again.stdf")
    proc = host(work, board, "watch", line, "--max-files", "1", "--poll-interval", "0.1",
                "--no-progress")
    assert proc.returncode == 0 and (line / "done" / "again.stdf").exists()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM wq_results").fetchone()[0] == 5


def test_watch_several_boards_fails_over(work, board, tmp_path):
    """watch takes several boards like classify: with one of two boards down,
    the other classifies every map and the file still ends in done/."""
    import socket

    with socket.socket() as s:          # a port nobody listens on: a board that is down
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    line = tmp_path / "line"
    line.mkdir()
    shutil.copy(work / "lot.xml", line / "lot.xml")
    proc = host(work, f"{dead},{board}", "watch", line, "--once", "--poll-interval", "0.1",
                "--no-progress", "--retries", "1")
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (line / "done").iterdir()] == ["lot.xml"]
    with sqlite3.connect(line / "waferq.sqlite") as c:
        boards = c.execute("SELECT board FROM wq_results").fetchall()
    assert boards == [(board,), (board,)]


def test_watch_waits_for_a_file_to_stop_growing(work, tmp_path):
    from host_stm32mp1.watch import Watcher

    class A:
        dir = str(tmp_path)
    w = Watcher(A, None, None, None)
    p = tmp_path / "m.stdf"
    p.write_bytes(b"\0" * 10)
    assert w.ready(0.2) == []
    time.sleep(0.25)
    with open(p, "ab") as f:
        f.write(b"\0" * 10)           # still being written
    assert w.ready(0.2) == []
    time.sleep(0.25)
    assert w.ready(0.2) == [p]
    (tmp_path / "x.tmp").write_bytes(b"1")
    assert w.ready(0.0) == [p]


def test_configure_status_bench(work, board):
    proc = host(work, board, "configure", "--force")
    assert proc.returncode == 0 and "weights sent" in proc.stdout
    proc = host(work, board, "configure")
    assert proc.returncode == 0 and "already loaded" in proc.stdout
    proc = host(work, board, "status", "--json")
    info = json.loads(proc.stdout)
    meta = export_dir.read(work / "model").meta
    assert info["model"]["loaded"] and info["weights_checksum"] == meta["weights_checksum"]
    assert info["backend"] == "reference" and info["weight_loads"] >= 1
    proc = host(work, board, "status")
    assert proc.returncode == 0 and "topology matches" in proc.stdout
    proc = host(work, board, "bench", "-n", "100", "--batch", "16", "--no-progress",
                "--out", work / "bench.json")
    assert proc.returncode == 0, proc.stderr
    assert "maps/s" in proc.stdout and "p99" in proc.stdout
    b = json.loads((work / "bench.json").read_text())
    assert b["n_ok"] == 100 and b["n_batches"] == 7


def test_unreachable_board_and_usage_errors(work):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    for cmd in ("configure", "status", "bench"):
        proc = host(work, dead, cmd)
        assert proc.returncode == 2 and "cannot connect" in proc.stderr, cmd
    proc = host(work, dead, "classify", work / "lot.xml", "--db", "mysql://x")
    assert proc.returncode == 2 and "unknown store" in proc.stderr
    proc = host(work, dead, "watch", work / "nope")
    assert proc.returncode == 2 and "not a folder" in proc.stderr


def test_console_wrapper():
    proc = run_host(["console", "--", "--help"])
    if importlib.util.find_spec("zybo_z7.console") is None:
        assert proc.returncode == 2 and "zybo_z7.console" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr


def test_report_html(work, board, tmp_path):
    db = tmp_path / "rep.sqlite"
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"lot.xml": ["Center", "Scratch"]}))
    proc = host(work, board, "classify", work / "lot.xml", work / "rows.json", "--db", db,
                "--labels", labels, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = run_host(["report", "--db", str(db), "--out", str(tmp_path / "r.html")])
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "r.html").read_text()
    assert html.count("<svg") == 2 and "4 labelled maps" in html and board in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    from host_stm32mp1.store import open_store
    open_store(str(tmp_path / "empty.sqlite")).close()
    proc = run_host(["report", "--db", str(tmp_path / "empty.sqlite"), "--out", str(tmp_path / "e.html")])
    assert proc.returncode == 0 and "No classified maps" in (tmp_path / "e.html").read_text()
    # A mistyped store path is an error, and creates nothing (issue 18 item 13).
    proc = run_host(["report", "--db", str(tmp_path / "typo.sqlite"), "--out", str(tmp_path / "t.html")])
    assert proc.returncode == 2 and "no store at" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "typo.sqlite").exists() and not (tmp_path / "t.html").exists()
