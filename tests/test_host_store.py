"""The results store and journal, on SQLite and on a real PostgreSQL server
(a private cluster started here on 127.0.0.1, stopped at teardown)."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from host_stm32mp1.store import StoreError, open_store


def _pg_bin():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url():
    """URL of a throwaway PostgreSQL cluster. initdb refuses to run as root,
    so as root (CI) the cluster belongs to the 'postgres' system user."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            pytest.skip("no PostgreSQL driver (pip install 'psycopg[binary]')")
    as_user = []
    base = tempfile.mkdtemp(prefix="wq-pg-")   # under /tmp: the postgres user can reach it
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own the cluster")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        runuser = shutil.which("runuser")
        as_user = [runuser, "-u", "postgres", "--"] if runuser else None
        if as_user is None:
            pytest.skip("running as root without runuser to start PostgreSQL as 'postgres'")
    data, port = os.path.join(base, "data"), _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "wq", "--no-sync", "-E", "UTF8")
    if r.returncode:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail("initdb failed: " + r.stderr[-2000:])
    opts = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off"
    r = run(f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", os.path.join(base, "log"), "-w",
            "-t", "60", "start")
    if r.returncode:
        log = Path(base, "log").read_text() if Path(base, "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail("pg_ctl start failed: " + r.stderr[-1000:] + log[-2000:])
    try:
        yield f"postgresql://wq@127.0.0.1:{port}/postgres"
    finally:
        run(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "r.sqlite")
    url = request.getfixturevalue("pg_url")
    # A fresh schema per test: drop what the last test wrote.
    with open_store(url) as s:
        for t in ("wq_results", "wq_files", "wq_images"):
            s._exec(f"DROP TABLE IF EXISTS {t}")
        s._commit()
    return url


def _row(seq, k, **kw):
    return dict(seq=seq, status="ok", class_index=k, class_name=f"c{k}", logits=[k, -k],
                board="b1", weights_checksum=0xDEADBEEF, latency_s=0.001, **kw)


def test_journal_register_results_idempotent(db_url):
    imgs = [("a" * 64, i, "f.npz", i % 3) for i in range(5)] + [("b" * 64, -1, "bad.xml", None)]
    with open_store(db_url) as s:
        seqs = s.register(imgs)
        assert len(set(seqs)) == 6 and seqs == sorted(seqs)
        assert s.register(imgs[2:4]) == seqs[2:4]                 # same image, same seq
        assert [p[0] for p in s.pending()] == seqs
        assert s.record_results([_row(seqs[0], 1), _row(seqs[1], 2)]) == 2
        # A resend after a crash answers seq 1 again: dropped, never counted twice.
        assert s.record_results([_row(seqs[1], 5), _row(seqs[2], 0)]) == 1
    with open_store(db_url) as s:                                  # reopened: all persisted
        got = s.results(seqs)
        assert sorted(got) == seqs[:3] and got[seqs[1]]["class_index"] == 2
        assert got[seqs[0]]["logits"] == [1, -1] and got[seqs[0]]["weights_checksum"] == 0xDEADBEEF
        s.record_results([dict(seq=seqs[5], status="error", error_code=2, error_name="BAD_REQUEST",
                               error_message="cannot read")])
        c = s.counters()
        assert c == dict(images=6, results_ok=3, results_error=1, pending=2, files=0)
        rows = s.rows()
        assert [r["seq"] for r in rows] == seqs[:3] + [seqs[5]] and rows[0]["label"] == 0
        assert rows[0]["file_sha256"] == "a" * 64 and rows[0]["board"] == "b1"


def test_files_recorded_once(db_url):
    with open_store(db_url) as s:
        assert s.file_outcome("c" * 64) is None
        s.record_file("c" * 64, "/line/x.stdf", 3, "done")
        s.record_file("c" * 64, "/line/copy.stdf", 3, "failed")
        assert s.file_outcome("c" * 64) == "done" and s.counters()["files"] == 1


def test_bad_store_urls(tmp_path):
    with pytest.raises(StoreError, match="unknown store"):
        open_store("mysql://x")
    with pytest.raises(StoreError, match="cannot connect"):
        open_store(f"postgresql://wq@127.0.0.1:{_free_port_closed()}/postgres")
    (tmp_path / "f").write_text("not a db")
    with pytest.raises(StoreError):
        open_store(str(tmp_path / "f"))


def _free_port_closed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_postgres_two_writers_one_result(pg_url):
    """Two hosts answering the same image into the fab-wide store: one row."""
    with open_store(pg_url) as a, open_store(pg_url) as b:
        for t in ("wq_results", "wq_files", "wq_images"):
            a._exec(f"DELETE FROM {t}")
        a._commit()
        (seq,) = a.register([("d" * 64, 0, "x.npy", None)])
        assert b.register([("d" * 64, 0, "x.npy", None)]) == [seq]
        t0 = time.time()
        assert a.record_results([_row(seq, 3)]) + b.record_results([_row(seq, 4)]) == 1
        assert b.results([seq])[seq]["class_index"] == 3 and time.time() - t0 < 10
