"""Board management subcommands: configure, status, bench, console, report."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from host_stm32mp1 import engine, readers, report as rep
from host_stm32mp1.client import BoardClient, BoardError, parse_address
from host_stm32mp1.store import StoreError, redact, open_store

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def _fail(e) -> int:
    print(f"error: {e}", file=sys.stderr)
    return EXIT_USAGE


def configure(args) -> int:
    try:
        model = engine.Model.load(args.model)
        host, port = parse_address(args.board)
    except (OSError, ValueError, KeyError) as e:
        return _fail(e)
    try:
        with BoardClient(host, port, timeout=args.timeout, probe_timeout=args.probe_timeout) as c:
            if args.force:
                info = c.query()
                if info["topology_hash"] != model.topology_hash:
                    c.ensure_weights(model.folder)   # raises the topology error
                got = c.load_weights((model.folder / "weights.bin").read_bytes())
                if got != model.checksum:
                    raise BoardError(f"board reports weights checksum 0x{got:08x}, "
                                     f"model.json says 0x{model.checksum:08x}")
                info, sent = c.query(), True
            else:
                info, sent = c.ensure_weights(model.folder)
    except (BoardError, OSError) as e:
        return _fail(e)
    print(f"weights {'sent' if sent else 'already loaded'}: checksum 0x{info['weights_checksum']:08x}, "
          f"topology 0x{info['topology_hash']:08x}, backend {info['backend']}, "
          f"weight loads {info['weight_loads']}")
    return EXIT_OK


def status(args) -> int:
    try:
        host, port = parse_address(args.board)
        model = engine.Model.load(args.model) if args.model else None
    except (OSError, ValueError, KeyError) as e:
        return _fail(e)
    try:
        with BoardClient(host, port, timeout=args.timeout, probe_timeout=args.probe_timeout) as c:
            info = c.query()
            auth = (f"HMAC, key id {c.session.key_id}" if c.session is not None
                    else "NONE (--insecure)")
    except (BoardError, OSError) as e:
        return _fail(e)
    out = dict(board=args.board, authentication=auth, **info)
    if model is not None:
        out["model"] = dict(folder=str(model.folder), topology_hash=model.topology_hash,
                            weights_checksum=model.checksum,
                            topology_matches=info["topology_hash"] == model.topology_hash,
                            loaded=bool(info["weights_loaded"])
                            and info["weights_checksum"] == model.checksum)
    if args.db:
        try:
            with open_store(args.db, create=False) as store:
                out["store"] = store.counters()
        except StoreError as e:
            return _fail(e)
    if args.json:
        print(json.dumps(out, indent=1))
        return EXIT_OK
    print(f"board {args.board}: backend {info['backend']}, core version {info['core_version']}, "
          f"capabilities 0x{info['capabilities']:x}, authentication {auth}")
    print(f"topology 0x{info['topology_hash']:08x}, input {info['in_height']}x{info['in_width']}"
          f"x{info['in_channels']}, {info['n_classes']} classes")
    print(f"weights: {'loaded' if info['weights_loaded'] else 'none'}, checksum "
          f"0x{info['weights_checksum']:08x}, loads since start {info['weight_loads']}")
    if "model" in out:
        m = out["model"]
        print(f"model {m['folder']}: topology {'matches' if m['topology_matches'] else 'DIFFERS'}, "
              f"weights {'loaded' if m['loaded'] else 'NOT loaded (run configure)'}")
    if "store" in out:
        print("store: " + ", ".join(f"{k} {v}" for k, v in out["store"].items()))
    return EXIT_OK


def bench(args) -> int:
    try:
        model = engine.Model.load(args.model)
        host, port = parse_address(args.board)
        if args.n < 1 or (args.batch is not None and args.batch < 1):
            raise ValueError("--n and --batch must be at least 1")
        if args.out:
            rep.check_writable(args.out, "--out")
    except (OSError, ValueError, KeyError) as e:
        return _fail(e)
    if args.files:
        got = list(readers.read_files(args.files))
        for f in got:
            if isinstance(f, readers.Failure):
                print(f"error: {engine.clean(f.source)}: {engine.clean(f.reason)}", file=sys.stderr)
        maps = [it.map for it in got if isinstance(it, readers.Item)]
        if not maps:
            return _fail("no readable maps in FILES")
        maps = [maps[i % len(maps)] for i in range(args.n)]
    else:
        rng = np.random.default_rng(args.seed)
        maps = list(rng.integers(0, 3, (args.n, model.size, model.size), dtype=np.uint8))
    run = engine.prepare((readers.Item("bench", i, m) for i, m in enumerate(maps)), model, quiet=True)
    bar = engine.progress_bar(len(run.pending), args.no_progress, desc="bench")
    t0 = time.perf_counter()
    try:
        with BoardClient(host, port, timeout=args.timeout, probe_timeout=args.probe_timeout) as c:
            engine.send(run, c, model, args.batch, None, args.board, bar)
    except (BoardError, OSError) as e:
        return _fail(e)
    finally:
        bar.close()
    s = rep.summarize(run.records, model.classes, run.latencies, run.sizes,
                      time.perf_counter() - t0, run.weights_sent, run.board_info)
    b, i = s["batch_latency_s"], s["image_latency_s"]
    print(f"{s['n_ok']} of {args.n} maps in {s['n_batches']} batches of up to {run.batch}: "
          f"{s['throughput_maps_per_s']:.1f} maps/s (wall {s['wall_s']:.2f} s)"
          + (f", {model.views} images a map (views)" if model.views > 1 else ""))
    print(f"latency per batch: p50 {1e3 * b['p50']:.2f} ms  p99 {1e3 * b['p99']:.2f} ms")
    print(f"latency per image: p50 {1e3 * i['p50']:.3f} ms  p99 {1e3 * i['p99']:.3f} ms")
    if args.out:
        try:
            Path(args.out).write_text(json.dumps(dict(s, batch=run.batch, n=args.n), indent=1))
        except OSError as e:
            return _fail(f"cannot write {args.out}: {e.strerror or e}")
    return EXIT_OK if s["n_errors"] == 0 else EXIT_ERRORS


def console(args) -> int:
    # The console belongs to zybo_z7 (another module, maybe not installed here).
    try:
        found = importlib.util.find_spec("zybo_z7.console") is not None
    except ImportError:
        found = False
    if not found:
        print("error: the board console (zybo_z7.console) is not installed with this host; "
              "use a serial terminal (e.g. 'python -m serial.tools.miniterm /dev/ttyUSB1 115200')",
              file=sys.stderr)
        return EXIT_USAGE
    rest = [a for a in args.rest if a != "--"] if args.rest[:1] == ["--"] else args.rest
    return subprocess.call([sys.executable, "-m", "zybo_z7.console", *rest])


def report(args) -> int:
    from host_stm32mp1 import htmlreport

    try:
        rep.check_writable(args.out, "--out")
        with open_store(args.db, create=False) as store:
            rows = store.rows()
            counters = store.counters()
    except (StoreError, ValueError) as e:
        return _fail(e)
    html = htmlreport.render(rows, counters, bins=max(1, args.bins), title=f"waferq results: {redact(args.db)}")
    out = Path(args.out)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as e:
        return _fail(f"cannot write {out}: {e.strerror or e}")
    print(f"wrote {out} ({len(rows)} results)")
    return EXIT_OK
