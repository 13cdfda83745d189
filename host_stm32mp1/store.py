"""Results store and write-ahead journal: SQLite (stdlib) by default,
PostgreSQL for a fab-wide store (``--db postgresql://...``, psycopg 3 or
psycopg2). Same schema and behaviour on both.

An image is one map of one file under one set of settings, keyed by
``(file_sha256, idx, settings)``: the SHA-256 of the file's raw bytes, the
map's position in it (-1 for a file that could not be read), and a digest of
everything else that decides its answer (the reader options such as
``--pass-bins``, the input size, the model's topology hash and weights
checksum; ``engine.settings_key``). The same file under other settings is
another image and is classified again; ``wq_settings`` says what each digest
stands for. ``seq`` is the store's sequence id. The journal is
the two tables: an image row is written (pending) before its map is sent,
a result row when its answer comes back. The result's primary key is the
image's seq and writes are INSERT .. ON CONFLICT DO NOTHING, so a resend
after a crash can never count an image twice; a rerun sends only images
with no result.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS wq_images (
    seq         {serial},
    file_sha256 TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    settings    TEXT NOT NULL,
    source      TEXT NOT NULL,
    label       INTEGER,
    lot_id      TEXT,
    wafer_id    TEXT,
    tester      TEXT,
    part        TEXT,
    warnings    TEXT,
    created_at  DOUBLE PRECISION NOT NULL,
    UNIQUE (file_sha256, idx, settings)
);
CREATE TABLE IF NOT EXISTS wq_results (
    seq            BIGINT PRIMARY KEY REFERENCES wq_images (seq),
    status         TEXT NOT NULL,
    class_index    INTEGER,
    class_name     TEXT,
    logits         TEXT,
    error_code     INTEGER,
    error_name     TEXT,
    error_message  TEXT,
    board          TEXT,
    weights_checksum BIGINT,
    latency_s      DOUBLE PRECISION,
    confidence     DOUBLE PRECISION,
    rejected       INTEGER,
    finished_at    DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS wq_files (
    file_sha256  TEXT NOT NULL,
    settings     TEXT NOT NULL,
    path         TEXT NOT NULL,
    n_images     INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    processed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (file_sha256, settings)
);
CREATE TABLE IF NOT EXISTS wq_settings (
    settings     TEXT PRIMARY KEY,
    description  TEXT NOT NULL
);
"""
RESULT_COLS = ("status", "class_index", "class_name", "logits", "error_code", "error_name",
               "error_message", "board", "weights_checksum", "latency_s", "confidence", "rejected",
               "finished_at")
IMAGE_INFO = ("lot_id", "wafer_id", "tester", "part", "warnings")


class StoreError(Exception):
    pass


class Store:
    """Common SQL; subclasses supply the connection and the dialect."""

    param = "?"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, conn, url: str):
        self.conn, self.url = conn, url
        self._setup()

    def _sql(self, text: str) -> str:
        return text if self.param == "?" else text.replace("?", self.param)

    def _exec(self, sql: str, params=(), many: bool = False):
        cur = self.conn.cursor()
        try:
            (cur.executemany if many else cur.execute)(self._sql(sql), params)
        except Exception as e:  # sqlite3.Error, psycopg.Error: no common base
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001 - the connection may be gone; report the first error
                pass
            raise StoreError(f"store {redact(self.url)}: {type(e).__name__}: {e}") from e
        return cur

    def _commit(self) -> None:
        try:
            self.conn.commit()
        except Exception as e:  # noqa: BLE001 - see _exec
            raise StoreError(f"store {redact(self.url)}: commit failed: {e}") from e

    def _setup(self) -> None:
        for stmt in SCHEMA.format(serial=self.serial).split(";"):
            if stmt.strip():
                self._exec(stmt)
        self._commit()
        try:   # a store from before settings keys: its cache would answer under other settings
            self._exec("SELECT settings FROM wq_images WHERE 1 = 0")
        except StoreError:
            raise StoreError(f"store {redact(self.url)} was written by an older waferq (its "
                             "results are not keyed by model and reader settings): use a new "
                             "store") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- journal ----------------------------------------------------------
    def register(self, images, settings: str = "", info=None) -> list[int]:
        """Images as (file_sha256, idx, source, label) under ``settings`` -> their
        seq ids, written (committed) before anything is sent. An image already
        known keeps its seq. ``info``: one dict per image of IMAGE_INFO values."""
        images = list(images)
        info = list(info) if info is not None else [{}] * len(images)
        now = time.time()
        self._exec(f"INSERT INTO wq_images (file_sha256, idx, settings, source, label, "
                   f"{', '.join(IMAGE_INFO)}, created_at) VALUES "
                   f"({', '.join('?' * (6 + len(IMAGE_INFO)))}) "
                   "ON CONFLICT (file_sha256, idx, settings) DO NOTHING",
                   [(sha, idx, settings, src, lab, *(extra.get(k) for k in IMAGE_INFO), now)
                    for (sha, idx, src, lab), extra in zip(images, info)], many=True)
        seqs = {}
        for sha in {im[0] for im in images}:
            for idx, seq in self._exec("SELECT idx, seq FROM wq_images WHERE file_sha256 = ? "
                                       "AND settings = ?", (sha, settings)).fetchall():
                seqs[(sha, idx)] = seq
        self._commit()
        return [seqs[(sha, idx)] for sha, idx, _, _ in images]

    def describe_settings(self, settings: str, description: str) -> None:
        self._exec("INSERT INTO wq_settings (settings, description) VALUES (?, ?) "
                   "ON CONFLICT (settings) DO NOTHING", (settings, description))
        self._commit()

    def results(self, seqs) -> dict[int, dict]:
        """Stored results of these images, by seq."""
        out = {}
        seqs = list(seqs)
        for start in range(0, len(seqs), 500):
            chunk = seqs[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            cur = self._exec(f"SELECT seq, {', '.join(RESULT_COLS)} FROM wq_results "
                             f"WHERE seq IN ({marks})", chunk)
            for row in cur.fetchall():
                rec = dict(zip(RESULT_COLS, row[1:]))
                rec["logits"] = json.loads(rec["logits"]) if rec["logits"] else None
                out[row[0]] = rec
        return out

    def record_results(self, rows) -> int:
        """rows: dicts with ``seq`` and RESULT_COLS; one transaction. Returns
        how many were new (a resent image's second answer is dropped)."""
        rows = list(rows)
        if not rows:
            return 0
        now = time.time()
        cols = ("seq",) + RESULT_COLS
        values = []
        for r in rows:
            r = dict(r, finished_at=r.get("finished_at") or now)
            if isinstance(r.get("logits"), list):
                r["logits"] = json.dumps(r["logits"])
            values.append(tuple(r.get(c) for c in cols))
        before = self.count_results()
        self._exec(f"INSERT INTO wq_results ({', '.join(cols)}) VALUES "
                   f"({', '.join('?' * len(cols))}) ON CONFLICT (seq) DO NOTHING", values, many=True)
        self._commit()
        return self.count_results() - before

    def count_results(self) -> int:
        return self._exec("SELECT COUNT(*) FROM wq_results").fetchone()[0]

    def pending(self) -> list[tuple[int, str, int, str]]:
        """Images written but never answered: (seq, file_sha256, idx, source)."""
        return [tuple(r) for r in self._exec(
            "SELECT i.seq, i.file_sha256, i.idx, i.source FROM wq_images i "
            "LEFT JOIN wq_results r ON r.seq = i.seq WHERE r.seq IS NULL ORDER BY i.seq").fetchall()]

    # --- files (watch) ----------------------------------------------------
    def file_outcome(self, sha: str, settings: str = "") -> str | None:
        row = self._exec("SELECT outcome FROM wq_files WHERE file_sha256 = ? AND settings = ?",
                         (sha, settings)).fetchone()
        return row[0] if row else None

    def record_file(self, sha: str, path: str, n_images: int, outcome: str,
                    settings: str = "") -> None:
        self._exec("INSERT INTO wq_files (file_sha256, settings, path, n_images, outcome, "
                   "processed_at) VALUES (?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (file_sha256, settings) DO NOTHING",
                   (sha, settings, path, n_images, outcome, time.time()))
        self._commit()

    # --- reports ----------------------------------------------------------
    def counters(self) -> dict:
        one = lambda sql: self._exec(sql).fetchone()[0]  # noqa: E731
        return dict(images=one("SELECT COUNT(*) FROM wq_images"),
                    results_ok=one("SELECT COUNT(*) FROM wq_results WHERE status = 'ok'"),
                    results_error=one("SELECT COUNT(*) FROM wq_results WHERE status <> 'ok'"),
                    pending=len(self.pending()),
                    files=one("SELECT COUNT(*) FROM wq_files"))

    def rows(self) -> list[dict]:
        head = ("seq", "file_sha256", "idx", "settings", "source", "label") + IMAGE_INFO + ("created_at",)
        cols = head + RESULT_COLS
        cur = self._exec(
            f"SELECT {', '.join('i.' + c for c in head)}, "
            f"{', '.join('r.' + c for c in RESULT_COLS)} FROM wq_images i "
            "JOIN wq_results r ON r.seq = i.seq ORDER BY r.finished_at, i.seq")
        return [dict(zip(cols, row)) for row in cur.fetchall()]


class SqliteStore(Store):
    def __init__(self, path: str, url: str):
        import sqlite3

        if Path(path).is_dir():
            raise StoreError(f"{path} is a folder, not a SQLite store")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30)
        # WAL: a report or a test can read while a run writes; NORMAL is still
        # crash-safe against a killed process (only power loss could drop the tail).
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        super().__init__(conn, url)


class PostgresStore(Store):
    serial = "BIGSERIAL PRIMARY KEY"

    def __init__(self, url: str):
        try:
            import psycopg as driver
        except ImportError:
            try:
                import psycopg2 as driver
            except ImportError:
                raise StoreError("a postgresql:// store needs psycopg (pip install "
                                 "'psycopg[binary]') or psycopg2") from None
        try:
            conn = driver.connect(url, connect_timeout=10)
        except Exception as e:  # the drivers' OperationalError has no common base
            raise StoreError(f"cannot connect to {redact(url)}: {e}".strip()) from e
        self.param = "%s"
        super().__init__(conn, url)


def redact(url: str) -> str:
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.split(':')[0]}:***@{tail}"


def open_store(url: str, create: bool = True) -> Store:
    """``postgresql://...`` / ``postgres://...``, ``sqlite:///path`` or a file path.
    ``create=False`` (report, status): a SQLite file that is not there is an
    error, not a new empty store."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    if url.startswith("sqlite://"):
        url = url[len("sqlite://"):]
    if not url or "://" in url:
        raise StoreError(f"unknown store {url!r}: use a file path, sqlite:///path or postgresql://...")
    if not create and not Path(url).is_file():
        raise StoreError(f"no store at {url}: the file does not exist (check the --db path)")
    try:
        return SqliteStore(url, url)
    except Exception as e:  # sqlite3.Error and OSError both mean "cannot open"
        raise StoreError(f"cannot open the SQLite store {url}: {e}") from e
