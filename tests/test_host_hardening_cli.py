"""The host CLI against the issue 18 list (and issue 21 item 9), on a real board
service on 127.0.0.1: identity and confidence in every output, settings in the
cache key, one-sentence errors with exit 2, fast failure on a silent board."""
import csv
import json
import shutil
import socket
import sqlite3
import threading

import numpy as np
import pytest
from PIL import Image

from contract import export_dir
from quant import metrics
from contract.intmodel import IntModel, random_model
from contract.spec import CNNSpec
from test_host_formats import g85_xml, stdf_for, wafer
from wq_service_helpers import run_host, service

SUBCOMMANDS_WITH_BOARD = ("classify", "watch", "configure", "status", "bench")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("hard")
    random_model(CNNSpec.uniform(4, 4), seed=9).save(d / "model")
    random_model(CNNSpec.uniform(4, 4), seed=10).save(d / "model2")      # same topology, other weights
    maps = [wafer(26, 31, seed=s) for s in range(4)]
    (d / "lot.xml").write_text(g85_xml(maps[:2]).replace('SubstrateId="W01"', 'SubstrateId="S1" WaferId="WAF-1"'))
    (d / "lot.stdf").write_bytes(stdf_for(maps[2:4]))
    (d / "rows.json").write_text(json.dumps([dict(waferMap=maps[0].tolist(), lotName="LJ", waferIndex=4.0,
                                                  failureType='=HYPERLINK("http://x","y")')]))
    grad = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (50, 1))
    Image.fromarray(grad, "L").save(d / "gradient.png")
    return d


@pytest.fixture(scope="module")
def board(work):
    with service(work / "model", work) as (port, _):
        yield f"127.0.0.1:{port}"


def host(work, board, *args, model="model", timeout=90):
    return run_host([*map(str, args), "--board", board, "--model", str(work / model)], timeout=timeout)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def dead_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# --- items 2, 9, 15 and issue 21 item 9 ---------------------------------------------

def test_identity_confidence_and_csv_cells(work, board, tmp_path):
    db = tmp_path / "r.sqlite"
    files = [work / n for n in ("lot.xml", "lot.stdf", "rows.json", "gradient.png")]
    proc = host(work, board, "classify", *files, "--db", db, "--csv", tmp_path / "r.csv",
                "--out", tmp_path / "r.json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "r.json").read_text())["results"]
    assert [(r["lot_id"], r["wafer_id"]) for r in res] == [
        ("LOT7", "W00"), ("LOT7", "WAF-1"), ("LOT9", "W0"), ("LOT9", "W1"), ("LJ", "4"), (None, None)]
    assert res[2]["tester"] == "NODE" and res[2]["part"] == "PART" and res[0]["part"] == "P1"
    # Confidence: softmax max of the real-valued logits, checked with quant.metrics.
    scale = 2.0 ** IntModel.load(work / "model").logit_scale_log2
    want = metrics.softmax(np.array([r["logits"] for r in res], float) * scale).max(1)
    assert np.allclose([r["confidence"] for r in res], want, atol=1e-6)
    assert all(r["rejected"] is None for r in res)      # this export has no reject rule
    # A gradient is not a wafer map: classified, but said so.
    assert "gradient.png[0]: a grayscale image with 50 gray levels" in proc.stderr
    assert "gray levels" in res[5]["warnings"][0]
    rows = read_csv(tmp_path / "r.csv")
    assert [r["wafer_id"] for r in rows[:2]] == ["W00", "WAF-1"] and rows[2]["tester"] == "NODE"
    assert float(rows[0]["confidence"]) == pytest.approx(want[0], abs=1e-6)
    assert rows[4]["label_name"] == "'=HYPERLINK(\"http://x\",\"y\")"      # no formula in a spreadsheet
    assert "gray levels" in rows[5]["warnings"]
    with sqlite3.connect(db) as c:
        got = c.execute("SELECT i.lot_id, i.wafer_id, i.tester, r.confidence FROM wq_images i "
                        "JOIN wq_results r ON r.seq = i.seq ORDER BY i.seq").fetchall()
    assert [g[:3] for g in got][:3] == [("LOT7", "W00", None), ("LOT7", "WAF-1", None), ("LOT9", "W0", "NODE")]
    assert np.allclose([g[3] for g in got], want, atol=1e-6)
    proc = run_host(["report", "--db", str(db), "--out", str(tmp_path / "r.html")])
    html = (tmp_path / "r.html").read_text()
    assert proc.returncode == 0 and "<h2>Wafers</h2>" in html and "WAF-1" in html and "<h2>Files</h2>" in html
    assert "lot.stdf" in html and "results_ok" not in html and "files: 0" not in html
    assert "gray levels" in html


def test_reject_rule_from_model_json(work, board, tmp_path):
    """With a 'reject' key (quant.train's calibrate_reject form) the flag follows apply_reject."""
    model = tmp_path / "model"
    shutil.copytree(work / "model", model)
    proc = host(work, board, "classify", work / "lot.xml", work / "lot.stdf", "--out", tmp_path / "a.json",
                "--no-progress")
    res = json.loads((tmp_path / "a.json").read_text())["results"]
    logits = np.array([r["logits"] for r in res], float) * 2.0 ** IntModel.load(model).logit_scale_log2
    rule = dict(temperature=1.7, threshold=float(np.median(metrics.softmax(logits, 1.7).max(1))))
    meta = export_dir.read(model).meta
    (model / "model.json").write_text(json.dumps(dict(meta, reject=rule)))
    proc = run_host(["classify", str(work / "lot.xml"), str(work / "lot.stdf"), "--board", board, "--model",
                     str(model), "--out", str(tmp_path / "b.json"), "--csv", str(tmp_path / "b.csv"),
                     "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "b.json").read_text())["results"]
    want = metrics.apply_reject(logits, rule) == metrics.REVIEW
    assert [r["rejected"] for r in res] == want.tolist() and 0 < want.sum() < len(want)
    assert [r["rejected"] for r in read_csv(tmp_path / "b.csv")] == ["1" if w else "0" for w in want]
    assert f"rejected by the reject rule (review): {int(want.sum())}" in proc.stdout
    assert {r.get("reject_reason") for r in res} == {None, "low confidence"}


# --- item 3: the cache key -------------------------------------------------------------

def test_store_reclassifies_under_other_settings(work, board, tmp_path):
    db = tmp_path / "k.sqlite"

    def run(*extra, model="model"):
        proc = host(work, board, "classify", work / "lot.stdf", "--db", db, "--out", tmp_path / "o.json",
                    "--no-progress", *extra, model=model)
        assert proc.returncode == 0, proc.stderr
        return json.loads((tmp_path / "o.json").read_text())

    first = run()
    assert first["summary"]["n_from_store"] == 0
    assert run()["summary"]["n_from_store"] == 2                 # same settings: from the store
    swapped = run("--pass-bins", "7")                            # fail bin passes, bin 1 fails
    assert swapped["summary"]["n_from_store"] == 0 and swapped["summary"]["settings"] != first["summary"]["settings"]
    other = run(model="model2")                                  # other weights, same topology
    assert other["summary"]["n_from_store"] == 0
    assert len({first["summary"]["settings"], swapped["summary"]["settings"], other["summary"]["settings"]}) == 3
    assert [r["logits"] for r in other["results"]] != [r["logits"] for r in first["results"]]
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(DISTINCT settings) FROM wq_images").fetchone()[0] == 3
        assert c.execute("SELECT COUNT(*) FROM wq_settings").fetchone()[0] == 3


# --- items 5, 6, 7, 10, 14, 17: messages and exits -----------------------------------

def _one_sentence(proc, *needles):
    # The tests talk to bench boards with --insecure ($WQ_INSECURE): its warning is not the error.
    lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("warning: --insecure")]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "Errno" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("problem", ["missing", "mode", "content"])
def test_key_file_problems_everywhere(work, tmp_path, problem):
    key = tmp_path / "wire.key"
    if problem != "missing":
        key.write_text("1:" + ("ab" * 32 if problem == "mode" else "zz"))
        key.chmod(0o644 if problem == "mode" else 0o600)
    want = {"missing": "No such file", "mode": "chmod 600", "content": "expected KEY_ID:HEX"}[problem]
    # Every subcommand once; the other problems take the same path (cli.main, before dispatch).
    for cmd in SUBCOMMANDS_WITH_BOARD if problem == "missing" else ("classify", "status"):
        extra = [str(work)] if cmd == "watch" else [str(work / "lot.xml")] if cmd == "classify" else []
        proc = run_host([cmd, *extra, "--board", dead_address(), "--model", str(work / "model"),
                         "--key-file", str(key)])
        _one_sentence(proc, "cannot use the key file", want)


def test_watch_stops_on_auth_refusal(work, tmp_path):
    key = tmp_path / "wire.key"
    key.write_text("1:" + "cd" * 32)
    key.chmod(0o600)
    line = tmp_path / "line"
    line.mkdir()
    shutil.copy(work / "lot.xml", line / "a.xml")
    with service(work / "model", tmp_path, extra=["--key-file", str(key)]) as (port, _):
        proc = run_host(["watch", str(line), "--board", f"127.0.0.1:{port}", "--model", str(work / "model"),
                         "--poll-interval", "0.1", "--settle", "0", "--no-progress"], timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "AUTH" in proc.stderr and "stopping" in proc.stderr and proc.stderr.count("error:") == 1
    assert (line / "a.xml").exists()       # left for a host with the key


class SilentBoard:
    """Accepts connections and never answers (a hung service)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.conns, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                pass

    @property
    def address(self):
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_silent_board_fails_on_the_probe(work, tmp_path):
    silent = SilentBoard()
    try:
        # Timeout 60 s and 1 retry would be 2+ minutes on the batch timeout; the probe is 0.3 s.
        proc = run_host(["classify", str(work / "lot.xml"), "--board", silent.address, "--model",
                         str(work / "model"), "--retries", "1", "--probe-timeout", "0.3", "--no-progress"],
                        timeout=100)
        status = run_host(["status", "--board", silent.address, "--probe-timeout", "0.3"], timeout=100)
    finally:
        silent.close()
    _one_sentence(status, "did not answer HELLO within 0.3 s")
    assert proc.returncode == 2, proc.stderr
    assert "accepted the connection but did not answer HELLO within 0.3 s" in proc.stderr
    assert "weights sent: - (no board reached)" in proc.stdout        # item 10


class SlowBoard:
    """Answers HELLO as a C-simulation board does, then holds every
    INFER_BATCH unanswered: a backend slower than the request is long."""

    def __init__(self):
        from protocol import wire as W

        self.W, self.sock = W, socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        W = self.W
        conn = self.sock.accept()[0]
        with conn:
            while True:
                try:
                    frame = W.read_frame(conn)
                except (W.WireError, OSError):
                    return
                if frame.type == W.T_HELLO:
                    info = dict(max_batch=256, backend="csim", in_height=8, in_width=8, in_channels=1,
                                n_classes=9, classes=["c"] * 9)
                    conn.sendall(W.encode_frame(W.T_INFO, W.encode_info(info), frame.request_id))

    def close(self):
        self.sock.close()


def test_a_request_longer_than_the_timeout_says_what_to_change():
    # The C simulation runs a few images a second: a request sized for a board
    # outlasts --timeout; the error says so, with the batch and the remedy.
    from host_stm32mp1.client import BoardClient, BoardTimeout

    board = SlowBoard()
    try:
        with BoardClient("127.0.0.1", board.port, timeout=60, probe_timeout=60, key=None) as c:
            assert c.query()["backend"] == "csim"
            # Only the request the board holds gets the short timeout: the
            # HELLO above must not race a busy machine's scheduler.
            c.timeout = 0.5
            with pytest.raises(BoardTimeout) as e:
                c.infer_batch(np.ones((3, 8, 8, 1), np.uint8), [1, 2, 3])
    finally:
        board.close()
    msg = str(e.value)
    assert "did not answer within 0.5 s (--timeout)" in msg and "held 3 images" in msg
    assert "C simulation" in msg and "smaller --batch or a longer --timeout" in msg
    assert e.value.retryable


def test_help_shows_defaults_exit_codes_and_texts():
    for cmd in ("classify", "watch"):
        out = run_host([cmd, "--help"]).stdout
        assert "(default: 60.0)" in out and "(default: 5.0)" in out and "(default: 5)" in out, out
        assert "exit status: 0 every map classified" in " ".join(out.split())
    out = " ".join(run_host(["report", "--help"]).stdout.split())
    assert "a table per file and per wafer" in out and "debug log on stderr" in out
    out = " ".join(run_host(["watch", "--help"]).stdout.split())
    assert "inotify" in out and "read lease" in out and "the drop folder" in out
    assert "E142" in " ".join(run_host(["classify", "--help"]).stdout.split())


def test_preprocessing_errors_and_empty_inputs(work, board, tmp_path):
    bad = {"neg.npy": np.full((5, 5), -1, np.int16), "big.npy": np.full((5, 5), 300, np.int16),
           "float.npy": np.full((5, 5), 0.5), "cplx.npy": np.ones((5, 5), complex),
           "str.npy": np.full((5, 5), "a"), "none.npy": np.zeros((0, 26, 26), np.uint8)}
    for name, arr in bad.items():
        np.save(tmp_path / name, arr)
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "folder.npy").mkdir()
    names = [*bad, "empty.json", "folder.npy"]
    proc = host(work, board, "classify", *[tmp_path / n for n in names], "--csv", tmp_path / "e.csv",
                "--no-progress")
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    for name, text in (("neg.npy", "-1..-1 are outside 0..255"), ("big.npy", "300..300 are outside"),
                       ("float.npy", "non-integer values"), ("cplx.npy", "dtype complex128"),
                       ("str.npy", "dtype <U1"), ("none.npy", "the file holds no maps"),
                       ("empty.json", "empty file (0 bytes)"), ("folder.npy", "is a folder, not a map file")):
        assert any(line.startswith("error: ") and name in line and text in line for line in err.splitlines()), \
            (name, err)
    rows = read_csv(tmp_path / "e.csv")
    assert len(rows) == len(names) and all(r["status"] == "error" for r in rows)
    assert {r["error_name"] for r in rows} == {"INPUT_ERROR", "READ_ERROR"}      # nothing was sent
    assert "BAD_REQUEST" not in proc.stdout + err


def test_usage_errors_are_one_sentence(work, tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    dead = dead_address()
    cases = [
        (["classify", str(work / "lot.xml"), "--out", str(tmp_path / "blocker" / "r.json")], ["--out", "cannot be written"]),
        (["classify", str(work / "lot.xml"), "--csv", str(tmp_path)], ["is a folder"]),
        (["bench", "--out", str(tmp_path / "blocker" / "b.json")], ["cannot be written"]),
        (["classify", str(work / "lot.xml"), "--board", "127.0.0.1:70000"], ["port must be 1..65535"]),
        (["status", "--board", "127.0.0.1:70000"], ["port must be 1..65535"]),
    ]
    for args, needles in cases:
        if "--board" not in args:
            args = [*args, "--board", dead]
        if args[0] != "status":
            args = [*args, "--model", str(work / "model")]
        proc = run_host(args)
        _one_sentence(proc, *needles)
        assert "cannot connect" not in proc.stderr          # checked before anything is sent
    for model, text, cmds in ((tmp_path / "nope", "does not exist", ("classify", "configure")),
                              (tmp_path / "blocker", "is a file", ("watch", "bench")),
                              (tmp_path, "has no model.json", ("classify", "watch"))):
        for cmd in cmds:
            extra = [str(work / "lot.xml")] if cmd == "classify" else [str(tmp_path)] if cmd == "watch" else []
            _one_sentence(run_host([cmd, *extra, "--board", dead, "--model", str(model)]), text)
    proc = run_host(["report", "--db", str(work / "nope.sqlite"), "--out", str(tmp_path / "blocker" / "r.html")])
    _one_sentence(proc, "cannot be written")


def test_html_report_tables_errors_and_labels():
    """Item 15, on rows as the store returns them: per-file and per-wafer tables, errors
    with their files, readable counters, both time labels inside the chart."""
    from host_stm32mp1 import htmlreport
    from host_stm32mp1.store import IMAGE_INFO, RESULT_COLS

    def row(seq, src, idx, status="ok", **kw):
        r = dict.fromkeys(("seq", "file_sha256", "idx", "settings", "source", "label", "created_at")
                          + IMAGE_INFO + RESULT_COLS)
        r.update(seq=seq, source=src, idx=idx, file_sha256=src * 2, status=status, finished_at=1.7e9 + seq,
                 latency_s=0.001, board="b")
        r.update(kw)
        return r
    rows = [row(1, "lot.stdf", 0, class_index=1, class_name="Donut", lot_id="L1", wafer_id="W1",
                tester="T9", confidence=0.91, rejected=1),
            row(2, "lot.stdf", 1, "error", error_name="READ_ERROR", error_message="wafer W2: no WRR",
                lot_id="L1", wafer_id="W2"),
            row(3, "x.npy", 0, class_index=0, class_name="none", confidence=0.5,
                warnings='["a grayscale image with 50 gray levels"]')]
    html = htmlreport.render(rows, dict(images=3, results_ok=2, results_error=1, pending=0, files=0))
    assert "<li>files: 2</li>" in html and "results_ok" not in html and "files handled by watch" not in html
    assert "lot.stdf [1]" in html.split("<h2>Errors</h2>")[1]           # the error names its file
    wafers = html.split("<h2>Wafers</h2>")[1].split("<h2>")[0]
    assert "W1" in wafers and "T9" in wafers and "91.0%" in wafers and "review" in wafers
    assert "50 gray levels" in wafers
    files = html.split("<h2>Files</h2>")[1].split("<h2>")[0]
    assert files.count("<tr>") == 3 and "L1" in files
    assert 'text-anchor="end"' in html and 'text-anchor="start"' in html
