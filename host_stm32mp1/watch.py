"""Line mode: poll a folder for map files and classify each one once.

A file is taken when its size and mtime have not changed for ``--settle``
seconds (the tester or the copy that writes it has finished). After its
results are in the store it is recorded by content hash and moved to
``DIR/done/`` (every map answered OK) or ``DIR/failed/`` (unreadable, or
some maps answered with an error). A file whose content hash is already
recorded is moved without being sent again, so a copy that arrives twice,
or a restart between "recorded" and "moved", never double-counts. If the
board is unreachable the file stays where it is and is tried again.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from host_stm32mp1 import engine, readers
from host_stm32mp1.client import BoardClient, BoardError, parse_address
from host_stm32mp1.store import StoreError, open_store

log = logging.getLogger("waferq.watch")
EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
SKIP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")


def _candidates(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.iterdir()):
        name = p.name.lower()
        if (p.is_file() and not name.startswith(".") and not name.endswith(SKIP_SUFFIXES)
                and readers.reader_for(p)[0] is not None):
            out.append(p)
    return out


def _move(path: Path, dest_dir: Path, sha: str) -> Path:
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / path.name
    if dest.exists():   # same name, other content (or a repeat): keep both
        dest = dest_dir / f"{path.stem}.{sha[:12]}{path.suffix}"
    os.replace(path, dest)
    return dest


class Watcher:
    def __init__(self, args, model, store, client):
        self.args, self.model, self.store, self.client = args, model, store, client
        self.folder = Path(args.dir)
        self.seen: dict[Path, tuple] = {}     # path -> (size, mtime_ns, unchanged since)
        self.processed = 0
        self.failed = 0

    def ready(self, settle: float) -> list[Path]:
        now, out = time.monotonic(), []
        present = _candidates(self.folder)
        for p in present:
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            old = self.seen.get(p)
            if old is None or old[:2] != sig:
                self.seen[p] = (*sig, now)
            elif now - old[2] >= settle and st.st_size > 0:
                out.append(p)
        self.seen = {p: v for p, v in self.seen.items() if p in present}
        return out

    def process(self, path: Path) -> None:
        """Raises BoardError/OSError when the board is unreachable (file left in place)."""
        sha = readers.file_sha256(path)
        if self.store.file_outcome(sha) is not None:
            dest = _move(path, self.folder / "done", sha)
            log.warning("%s: same content as a file classified before; moved to %s, not sent",
                        path.name, dest)
            print(f"{path.name}: already classified (content {sha[:12]}), not sent again")
            self.processed += 1   # handled (moved), so it counts towards --max-files
            return
        items = readers.read_file(path, allow_pickle=self.args.allow_pickle,
                                  pass_bins=self.args.pass_bins_set)
        run = engine.prepare(items, self.model, self.store)
        if run.pending:
            engine.send(run, self.client, self.model, self.args.batch, self.store, self.args.board)
        errors = sum(r.get("status") != "ok" for r in run.records)
        outcome = "failed" if errors else "done"
        self.store.record_file(sha, str(path), len(run.records), outcome)
        dest = _move(path, self.folder / outcome, sha)
        mix = Counter(r["cls"] for r in run.records if r.get("status") == "ok")
        text = ", ".join(f"{k} {v}" for k, v in mix.most_common()) or "no maps classified"
        print(f"{path.name}: {len(run.records)} maps, {errors} errors -> {dest.parent.name}/ ({text})")
        sys.stdout.flush()
        self.processed += 1
        self.failed += bool(errors)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    from host_stm32mp1.cli import pass_bins

    folder = Path(args.dir)
    try:
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        if args.poll_interval <= 0 or args.batch < 1:
            raise ValueError("--poll-interval must be positive and --batch at least 1")
        args.pass_bins_set = pass_bins(args.pass_bins)
        model = engine.Model.load(args.model)
        host, port = parse_address(args.board)
        store = open_store(args.db or str(folder / "waferq.sqlite"))
    except (OSError, ValueError, KeyError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    settle = args.poll_interval if args.settle is None else args.settle
    # A service manager stops the line with SIGTERM: leave the loop as on Ctrl-C, closing the store.
    signal.signal(signal.SIGTERM, _interrupt)
    client = BoardClient(host, port, timeout=args.timeout)
    w = Watcher(args, model, store, client)
    initial = set(_candidates(folder)) if args.once else None
    bar = engine.progress_bar(0, args.no_progress, desc="files")
    status = EXIT_OK
    try:
        while True:
            for path in w.ready(settle):
                if initial is not None and path not in initial:
                    continue
                try:
                    w.process(path)
                    bar.update(1)
                except (BoardError, OSError) as e:
                    print(f"error: {path.name}: {e} (left in place, will retry)", file=sys.stderr)
                    if args.once:
                        return EXIT_USAGE
                    break
                if initial is not None:
                    initial.discard(path)
                if args.max_files is not None and w.processed >= args.max_files:
                    return EXIT_ERRORS if w.failed else EXIT_OK
            if initial is not None:
                initial &= set(_candidates(folder))
                if not initial:
                    return EXIT_ERRORS if w.failed else EXIT_OK
            time.sleep(args.poll_interval)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        status = EXIT_USAGE
    except KeyboardInterrupt:
        status = EXIT_ERRORS if w.failed else EXIT_OK
    finally:
        bar.close()
        client.close()
        store.close()
    return status
