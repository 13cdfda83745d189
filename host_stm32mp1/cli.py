"""Host CLI: classify wafer maps on the board, watch a line folder, manage the board.

    python -m host_stm32mp1 classify FILES... --board HOST:PORT --model DIR [--db URL]
    python -m host_stm32mp1 watch DIR --board HOST:PORT --model DIR [--db URL]
    python -m host_stm32mp1 configure|status|bench --board HOST:PORT [--model DIR]
    python -m host_stm32mp1 report --db URL --out report.html
    python -m host_stm32mp1 console ...

Exit status: 0 every image classified, 1 some images (or files) have error
records, 2 usage, model, store or connection errors. Numpy only (no torch):
runs on the STM32MP1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from host_stm32mp1 import engine, readers, report
from host_stm32mp1.boards import BoardPool, RetryPolicy
from host_stm32mp1.client import BoardError, parse_boards
from host_stm32mp1.store import StoreError, open_store
from protocol import wire as W

log = logging.getLogger("waferq.host")

EXIT_OK, EXIT_IMAGE_ERRORS, EXIT_USAGE = 0, 1, 2

FORMATS = ("NPY (HxW or NxHxW), NPZ (keys 'x' and optional int labels 'y', or 'arr_0'), "
           "grayscale PNG, WM-811K rows as JSON (.json; LSWMD .pkl with --allow-pickle and "
           "pandas), SEMI G85 XML (.xml, .g85), STDF V4 (.stdf, .std, .stdf.gz); category "
           "maps use 0=no die, 1=pass, 2=fail")


def _board_opts(p, model_required=True):
    p.add_argument("--board", required=True, action="append", metavar="HOST:PORT",
                   help="board service address; classify takes several (repeat --board or "
                        "a comma list) and balances and fails over between them")
    p.add_argument("--model", required=model_required, metavar="DIR",
                   help="export folder (model.json, weights.bin) the board must run")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a reply")
    p.add_argument("--retries", type=int, default=5,
                   help="tries per batch after the first, and reconnects per board (backoff "
                        "0.25 s doubling to 4 s) before giving up")
    p.add_argument("--key-file", metavar="PATH",
                   help="pre-shared HMAC key file, mode 0600 (default: $WQ_KEY_FILE, then "
                        "$WQ_KEY)")
    p.add_argument("--insecure", action="store_true",
                   help="talk to the board without a key: frames are NOT authenticated "
                        "(bench use only; also $WQ_INSECURE=1)")
    p.add_argument("-v", "--verbose", action="store_true")


def _input_opts(p):
    p.add_argument("--batch", type=int, default=64, help="maps per request (default 64)")
    p.add_argument("--db", metavar="URL",
                   help="results store and journal: a SQLite file path (or sqlite:///path) or "
                        "postgresql://user@host:port/db; a rerun sends only unanswered images")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read LSWMD .pkl files (unpickling runs code: trusted files only)")
    p.add_argument("--pass-bins", metavar="N,N,...",
                   help="STDF: hard bins that pass (default: PART_FLG, then the HBR pass flag)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host_stm32mp1",
                                description="waferq host: classify wafer maps on the Zybo accelerator")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("classify", help="classify wafer-map files",
                       description="Send wafer maps to the board and report their classes.")
    c.add_argument("files", nargs="+", metavar="FILE", help=FORMATS)
    _board_opts(c)
    _input_opts(c)
    c.add_argument("--labels", metavar="JSON",
                   help="JSON object: file path or name -> label or list of labels (class "
                        "index or name); overrides an NPZ's 'y'")
    c.add_argument("--out", metavar="JSON", help="write per-image results and the summary here")
    c.add_argument("--csv", metavar="CSV", help="write per-image results as CSV here")
    c.add_argument("--size", type=int, default=None,
                   help="resize maps to this size instead of the model's (testing the board's checks)")

    w = sub.add_parser("watch", help="classify map files as they arrive in a folder (line mode)",
                       description="Poll DIR for new map files; classify each once its size is "
                       "stable, then move it to DIR/done/ or DIR/failed/. A file whose content "
                       "was classified before is not sent again.")
    w.add_argument("dir", metavar="DIR")
    _board_opts(w)
    _input_opts(w)
    w.add_argument("--poll-interval", type=float, default=2.0, help="seconds between scans")
    w.add_argument("--settle", type=float, default=None,
                   help="seconds a file's size must stay unchanged (default: one poll interval)")
    w.add_argument("--once", action="store_true", help="process the files there now, then exit")
    w.add_argument("--max-files", type=int, default=None, help="exit after this many files")

    g = sub.add_parser("configure", help="push the model's weights to the board",
                       description="Load the model's weight blob into the board (only if it "
                       "runs other weights, unless --force).")
    _board_opts(g)
    g.add_argument("--force", action="store_true", help="send the weights even if already loaded")

    s = sub.add_parser("status", help="board info, model hash, counters",
                       description="Show the board's core, loaded weights and counters; with "
                       "--model whether it runs that model; with --db the store's counters.")
    _board_opts(s, model_required=False)
    s.add_argument("--db", metavar="URL", help="also show this store's counters")
    s.add_argument("--json", action="store_true", help="print JSON")

    b = sub.add_parser("bench", help="throughput and latency over N maps",
                       description="Classify N maps (random maps, or FILES) and report "
                       "throughput and batch/image latency p50/p99. Nothing is stored.")
    b.add_argument("files", nargs="*", metavar="FILE", help="maps to use (default: random maps)")
    _board_opts(b)
    b.add_argument("-n", "--n", type=int, default=1000, help="maps to classify (default 1000)")
    b.add_argument("--batch", type=int, default=64, help="maps per request (default 64)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", metavar="JSON", help="write the summary here")
    b.add_argument("--no-progress", action="store_true")

    r = sub.add_parser("report", help="HTML report from a results store",
                       description="Write a self-contained HTML page: class mix over time, "
                       "confusion matrix (labelled maps), latency per board.")
    r.add_argument("--db", required=True, metavar="URL")
    r.add_argument("--out", required=True, metavar="HTML")
    r.add_argument("--bins", type=int, default=12, help="time buckets for the class mix")
    r.add_argument("-v", "--verbose", action="store_true")

    k = sub.add_parser("console", help="the board's serial console (zybo_z7.console)",
                       description="Runs python -m zybo_z7.console with the remaining arguments.")
    k.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for zybo_z7.console")
    return p


def _class_index(value, classes) -> int:
    if isinstance(value, str):
        if value not in classes:
            raise ValueError(f"unknown class name {value!r}")
        return classes.index(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(classes):
        raise ValueError(f"label {value!r} is not a class index 0..{len(classes) - 1}")
    return value


def load_labels(path, classes) -> dict:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError("labels JSON must be an object: file -> label(s)")
    out = {}
    for key, v in data.items():
        out[key] = ([_class_index(x, classes) for x in v] if isinstance(v, list)
                    else _class_index(v, classes))
    return out


def pass_bins(text):
    if not text:
        return None
    try:
        return {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise ValueError(f"--pass-bins {text!r}: expected comma-separated bin numbers") from None


def _usage(e) -> int:
    print(f"error: {W.printable(e, 1000)}", file=sys.stderr)
    return EXIT_USAGE


def classify(args) -> int:
    try:
        model = engine.Model.load(args.model, args.size)
        labels = load_labels(args.labels, model.classes) if args.labels else None
        addresses = parse_boards(args.boards)
        bins = pass_bins(args.pass_bins)
        if args.batch < 1:
            raise ValueError("--batch must be at least 1")
        store = open_store(args.db) if args.db else None
    except (OSError, ValueError, KeyError, StoreError) as e:
        return _usage(e)
    status = EXIT_OK
    try:
        items = readers.read_files(args.files, labels, allow_pickle=args.allow_pickle, pass_bins=bins)
        run = engine.prepare(items, model, store)
    except StoreError as e:
        store.close()
        return _usage(e)
    client = BoardPool(addresses, model, RetryPolicy(timeout=args.timeout, retries=args.retries))
    t0 = time.perf_counter()
    try:
        # Everything answered already (a rerun of a finished batch): no need for the board.
        if run.pending or store is None:
            bar = engine.progress_bar(len(run.pending), args.no_progress)
            try:
                engine.send(run, client, model, args.batch, store, args.board, bar)
            finally:
                bar.close()
    except (BoardError, OSError, StoreError) as e:
        print(f"error: {W.printable(e, 1000)}", file=sys.stderr)
        status = EXIT_USAGE
        engine.fail_unsent(run, str(e))
    finally:
        client.close()
        if store is not None:
            store.close()
    wall = time.perf_counter() - t0
    summary = report.summarize(run.records, model.classes, run.latencies, run.sizes, wall,
                               run.weights_sent, run.board_info)
    summary["n_from_store"] = run.cached
    summary["boards"] = run.boards
    print(report.format_table(summary))
    if args.out:
        report.write_json(args.out, run.records, summary)
    if args.csv:
        report.write_csv(args.csv, run.records)
    if status == EXIT_OK and summary["n_errors"]:
        status = EXIT_IMAGE_ERRORS
    return status


def key_configured() -> bool:
    return any(os.environ.get(k) for k in ("WQ_KEY_FILE", "WQ_KEY"))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "board", None):
        # One string for the single-board commands (their parse_address refuses a list).
        args.boards, args.board = args.board, ",".join(args.board)
    if getattr(args, "key_file", None):
        os.environ["WQ_KEY_FILE"] = args.key_file   # every BoardClient reads it (FROM_ENV)
    if getattr(args, "board", None) and not key_configured():
        if not (args.insecure or os.environ.get("WQ_INSECURE") == "1"):
            print("error: no key: give --key-file (or $WQ_KEY_FILE / $WQ_KEY), or --insecure "
                  "to talk to a bench board unauthenticated", file=sys.stderr)
            return EXIT_USAGE
        print("warning: --insecure: frames to and from the board are NOT authenticated",
              file=sys.stderr)
    if args.command == "classify":
        return classify(args)
    from host_stm32mp1 import ops, watch  # only what the command needs

    handlers = {"watch": watch.run, "configure": ops.configure, "status": ops.status,
                "bench": ops.bench, "report": ops.report, "console": ops.console}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
