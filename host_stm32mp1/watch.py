"""Line mode: watch a drop folder and classify each map file once.

When is a file ready? A tester writes a file over minutes and may pause in
the middle, so a quiet moment proves nothing. A file is taken when

1. its writer closed it (inotify IN_CLOSE_WRITE, or it was renamed in:
   IN_MOVED_TO), or its size and mtime have not changed for ``--settle``
   seconds (polling, where inotify is missing or overflowed), and
2. no process has it open for writing: a read lease (F_SETLEASE) is refused
   while a writer holds the file. The kernel grants leases only to the
   file's owner (or CAP_LEASE); where it grants none, 1. alone decides.

Then it is opened once (``O_NOFOLLOW``: a symbolic link is never followed),
fstat'ed to be a regular file, read whole, hashed and parsed from those same
bytes. A file that parses as cut short (an STDF with no MRR or WRR, a
truncated record, an XML document that stops) stays where it is: the tester
may be paused. It is looked at again when it changes, and goes to
``failed/`` only after ``--incomplete-after`` seconds without a change.

After the results are in the store, the file is recorded by content hash and
settings, then moved to ``DIR/done/`` (every map answered) or ``DIR/failed/``
(unreadable, or error records) -- unless its size, mtime or inode changed
since it was read: then it is still being written, and is left in place and
read again later. A file whose content was recorded before under the same
settings is moved without being sent again, so a copy that arrives twice, or
a restart between "recorded" and "moved", never double-counts. If the board
is unreachable the file stays where it is and is tried again; if the board
refuses the host (AUTH, another topology) watch stops with exit 2.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
import select
import signal
import stat
import struct
import sys
import time
from collections import Counter
from pathlib import Path

from host_stm32mp1 import engine, readers
from host_stm32mp1.boards import BoardPool
from host_stm32mp1.client import BoardClient, BoardError, parse_boards
from host_stm32mp1.store import StoreError, open_store

log = logging.getLogger("waferq.watch")
EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
SKIP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")

# <sys/inotify.h>
IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_Q_OVERFLOW = 0x100, 0x200, 0x4000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
_EVENT = struct.Struct("iIII")


class Inotify:
    """The folder's inotify events through libc (ctypes: the host stays stdlib).
    ``open`` returns None where the kernel or libc has no inotify."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def open(cls, folder: Path) -> "Inotify | None":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                return None
            mask = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
            if libc.inotify_add_watch(fd, os.fsencode(folder), mask) < 0:
                os.close(fd)
                return None
        except (OSError, AttributeError):
            return None
        return cls(fd)

    def wait(self, timeout: float) -> tuple[dict[str, int], bool]:
        """Events within ``timeout``: (name -> OR of masks, queue overflowed)."""
        names: dict[str, int] = {}
        overflow = False
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        while ready:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            pos = 0
            while pos + _EVENT.size <= len(buf):
                _wd, mask, _cookie, n = _EVENT.unpack_from(buf, pos)
                name = buf[pos + _EVENT.size:pos + _EVENT.size + n].rstrip(b"\0")
                pos += _EVENT.size + n
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                elif name:
                    key = os.fsdecode(name)
                    names[key] = names.get(key, 0) | mask
            ready, _, _ = select.select([self.fd], [], [], 0)
        return names, overflow

    def close(self) -> None:
        os.close(self.fd)


def ignore_lease_breaks() -> None:
    """A writer opening the file in the instant we hold the lease makes the kernel
    send SIGIO, whose default action ends the process: ignore it (nothing else here
    uses SIGIO). Only the main thread may set handlers; elsewhere leases stay off."""
    signal.signal(signal.SIGIO, signal.SIG_IGN)


def open_for_writing(path: Path) -> bool | None:
    """True if some process has ``path`` open for writing, False if none, None
    if the kernel will not say (a lease needs the owner's uid or CAP_LEASE)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        return True if e.errno in (errno.EAGAIN, errno.EBUSY) else None
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def _candidates(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.iterdir()):
        name = p.name.lower()
        if name.startswith(".") or name.endswith(SKIP_SUFFIXES) or readers.reader_for(p)[0] is None:
            continue
        try:
            mode = p.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):   # a link is refused (and moved) later
            out.append(p)
    return out


def _move(path: Path, dest_dir: Path, sha: str) -> Path:
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / path.name
    if dest.exists():   # same name, other content (or a repeat): keep both
        dest = dest_dir / f"{path.stem}.{(sha or 'nohash')[:12]}{path.suffix}"
    os.replace(path, dest)
    return dest


class Fatal(Exception):
    """The board refused the host: retrying would flood its log and never work."""


class Watcher:
    def __init__(self, args, model, store, client, settings: str = "", use_lease: bool = True):
        self.args, self.model, self.store, self.client = args, model, store, client
        self.settings = settings
        self.folder = Path(args.dir)
        self.seen: dict[Path, tuple] = {}     # path -> (size, mtime_ns, unchanged since)
        self.closed: set[Path] = set()        # writer closed it (inotify) since its last change
        self.incomplete: dict[Path, tuple] = {}  # path -> (size, mtime_ns, first seen cut short)
        self.use_lease = use_lease
        if use_lease:
            try:
                ignore_lease_breaks()
            except ValueError:     # not the main thread
                self.use_lease = False
        self.processed = 0
        self.failed = 0
        self.left = 0                          # partial files left in place (--once)

    def notice(self, events: dict[str, int]) -> None:
        for name, mask in events.items():
            p = self.folder / name
            if mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
                self.closed.add(p)
            elif mask & (IN_MODIFY | IN_CREATE):
                self.closed.discard(p)

    def ready(self, settle: float) -> list[Path]:
        now, out = time.monotonic(), []
        present = _candidates(self.folder)
        for p in present:
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            old = self.seen.get(p)
            if old is None or old[:2] != sig:
                self.seen[p] = (*sig, now)
                if p not in self.closed:
                    continue
            elif now - old[2] < settle and p not in self.closed:
                continue
            if st.st_size == 0:
                continue
            cut = self.incomplete.get(p)
            if cut is not None and cut[:2] == sig and now - cut[2] < self.args.incomplete_after:
                continue           # cut short and unchanged since: wait for the writer
            if self.use_lease and open_for_writing(p):
                log.debug("%s: open for writing by another process; not taken", p.name)
                continue
            out.append(p)
        self.seen = {p: v for p, v in self.seen.items() if p in present}
        self.closed &= set(present)
        self.incomplete = {p: v for p, v in self.incomplete.items() if p in present}
        return out

    def process(self, path: Path) -> bool:
        """Classify one file. False if it was left in place (still being written).
        Raises BoardError/OSError when the board is unreachable (file left in place)."""
        args = self.args
        try:
            loaded = readers.load(path, follow_symlinks=False)
        except readers.ReadError as e:
            dest = _move(path, self.folder / "failed", "")
            print(f"error: {engine.clean(path.name)}: {e}; moved to {dest.parent.name}/", file=sys.stderr)
            self.processed += 1
            self.failed += 1
            return True
        if self.store.file_outcome(loaded.sha256, self.settings) is not None:
            dest = _move(path, self.folder / "done", loaded.sha256)
            log.warning("%s: same content as a file classified before; moved to %s, not sent",
                        path.name, dest)
            print(f"{path.name}: already classified (content {loaded.sha256[:12]}), not sent again")
            self.processed += 1   # handled (moved), so it counts towards --max-files
            return True
        items = list(readers.read_file(path, allow_pickle=args.allow_pickle,
                                       pass_bins=args.pass_bins_set,
                                       allow_incomplete=args.allow_incomplete, loaded=loaded))
        sig = (loaded.size, loaded.mtime_ns)
        if any(isinstance(i, readers.Failure) and i.incomplete for i in items):
            first = self.incomplete.get(path)
            since = first[2] if first is not None and first[:2] == sig else time.monotonic()
            if time.monotonic() - since < args.incomplete_after:
                if first is None or first[:2] != sig:
                    print(f"{path.name}: incomplete (still being written?), left in place until "
                          f"it changes or {args.incomplete_after:g} s pass")
                self.incomplete[path] = (*sig, since)
                self.left += 1
                return False
        run = engine.prepare(items, self.model, self.store, self.settings)
        if run.pending:
            engine.send(run, self.client, self.model, args.batch, self.store, args.board)
        if self._changed(path, loaded):
            print(f"{path.name}: changed while it was classified (still being written); left "
                  "in place, read again later")
            self.seen.pop(path, None)
            self.closed.discard(path)
            return False
        errors = sum(r.get("status") != "ok" for r in run.records)
        outcome = "failed" if errors else "done"
        self.store.record_file(loaded.sha256, str(path), len(run.records), outcome, self.settings)
        dest = _move(path, self.folder / outcome, loaded.sha256)
        self.incomplete.pop(path, None)
        mix = Counter(r["cls"] for r in run.records if r.get("status") == "ok")
        text = ", ".join(f"{k} {v}" for k, v in mix.most_common()) or "no maps classified"
        print(f"{path.name}: {len(run.records)} maps, {errors} errors -> {dest.parent.name}/ ({text})")
        sys.stdout.flush()
        self.processed += 1
        self.failed += bool(errors)
        return True

    @staticmethod
    def _changed(path: Path, loaded) -> bool:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return True
        return (st.st_size, st.st_mtime_ns, st.st_ino) != (loaded.size, loaded.mtime_ns, loaded.ino)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args) -> int:
    from host_stm32mp1.cli import policy, reader_options

    folder = Path(args.dir)
    try:
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        if args.poll_interval <= 0 or (args.batch is not None and args.batch < 1):
            raise ValueError("--poll-interval must be positive and --batch at least 1")
        if args.probe_timeout <= 0 or args.timeout <= 0:
            raise ValueError("--timeout and --probe-timeout must be positive")
        opts = reader_options(args)
        args.pass_bins_set = opts["pass_bins"]
        model = engine.Model.load(args.model)
        addresses = parse_boards(args.boards)
        retry = policy(args)
        settings, described = engine.settings_key(model, **opts)
        store = open_store(args.db or str(folder / "waferq.sqlite"))
    except (OSError, ValueError, KeyError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    settle = args.poll_interval if args.settle is None else args.settle
    # A service manager stops the line with SIGTERM: leave the loop as on Ctrl-C, closing the store.
    signal.signal(signal.SIGTERM, _interrupt)
    if len(addresses) == 1:
        (host, port), = addresses
        client = BoardClient(host, port, timeout=args.timeout, probe_timeout=args.probe_timeout)
    else:   # several boards: balanced, with failover, as in classify
        client = BoardPool(addresses, model, retry)
    w = Watcher(args, model, store, client, settings)
    notify = None if args.no_inotify else Inotify.open(folder)
    log.info("watching %s with %s", folder, "inotify" if notify else f"polling every {args.poll_interval:g} s")
    initial = set(_candidates(folder)) if args.once else None
    bar = engine.progress_bar(0, args.no_progress, desc="files")
    status = EXIT_OK
    failures = 0
    try:
        store.describe_settings(settings, described)
        while True:
            for path in w.ready(settle):
                if initial is not None and path not in initial:
                    continue
                try:
                    done = w.process(path)
                    failures = 0
                    if done:
                        bar.update(1)
                except (BoardError, OSError) as e:
                    if isinstance(e, BoardError) and not e.retryable:
                        raise Fatal(str(e)) from e
                    failures += 1
                    print(f"error: {path.name}: {e} (left in place, will retry)", file=sys.stderr)
                    if args.once:
                        return EXIT_USAGE
                    # The board is away: back off (up to a minute) instead of hammering it.
                    time.sleep(min(60.0, args.poll_interval * 2 ** min(failures, 6)))
                    break
                if initial is not None:
                    initial.discard(path)
                    if not done:
                        print(f"{path.name}: left in place (--once)")
                if args.max_files is not None and w.processed >= args.max_files:
                    return EXIT_ERRORS if w.failed else EXIT_OK
            if initial is not None:
                initial &= set(_candidates(folder))
                if not initial:
                    return EXIT_ERRORS if w.failed or w.left else EXIT_OK
            # Wake on the next event, or when a settling file may be ready.
            wait = min(args.poll_interval, settle / 2) if w.seen else args.poll_interval
            if notify is not None:
                events, overflow = notify.wait(wait)
                w.notice(events)
                if overflow:
                    w.closed.clear()      # lost events: fall back on settle times
            else:
                time.sleep(wait)
    except Fatal as e:
        print(f"error: {e} -- stopping: the board refuses this host, retrying cannot help",
              file=sys.stderr)
        status = EXIT_USAGE
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        status = EXIT_USAGE
    except KeyboardInterrupt:
        status = EXIT_ERRORS if w.failed else EXIT_OK
    finally:
        bar.close()
        client.close()
        store.close()
        if notify is not None:
            notify.close()
    return status
