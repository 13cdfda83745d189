"""Host CLI: classify wafer maps on the board, watch a line folder, manage the board.

    python -m host_stm32mp1 classify FILES... --board HOST:PORT --model DIR [--db URL]
    python -m host_stm32mp1 watch DIR --board HOST:PORT --model DIR [--db URL]
    python -m host_stm32mp1 configure|status|bench --board HOST:PORT [--model DIR]
    python -m host_stm32mp1 report --db URL --out report.html
    python -m host_stm32mp1 console ...

Exit status (every subcommand; also in --help and host_stm32mp1/README.md):
0 every map classified; 1 some maps or files have error records (their
reasons are on stderr, in the CSV/JSON and in the store); 2 nothing useful
was done: usage, model folder, key file, store, output path, or the board
could not be reached or refused the host (AUTH, topology). Numpy only (no
torch): runs on the STM32MP1.
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
EXIT_CODES = ("exit status: 0 every map classified; 1 some maps or files have error records "
              "(reasons on stderr, in the outputs and the store); 2 usage, model folder, key "
              "file, store or output path errors, or no board reached / the board refused the "
              "host (AUTH, topology): nothing classified")
HELP = dict(formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EXIT_CODES)

FORMATS = ("NPY (HxW or NxHxW), NPZ (keys 'x' and optional int labels 'y', or 'arr_0'), "
           "grayscale PNG, WM-811K rows as JSON (.json; LSWMD .pkl with --allow-pickle and "
           "pandas), SEMI G85 or SEMI E142 XML (.xml, .g85, .e142), STDF V4 (.stdf, .std, "
           ".stdf.gz); category maps use 0=no die, 1=pass, 2=fail; at most 4096x4096 a map "
           "and 256 MiB a file")


def _board_opts(p, model_required=True):
    p.add_argument("--board", required=True, action="append", metavar="HOST:PORT",
                   help="board service address; classify and watch take several (repeat "
                        "--board or a comma list) and balance and fail over between them")
    p.add_argument("--model", required=model_required, metavar="DIR",
                   help="export folder (model.json, weights.bin) the board must run")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for one reply (a batch of maps)")
    p.add_argument("--probe-timeout", type=float, default=5.0,
                   help="seconds the board has to answer the HELLO probe (and SESSION) after "
                        "connecting: a board that accepts but answers nothing fails fast")
    p.add_argument("--retries", type=int, default=5,
                   help="tries per batch after the first, and reconnects per board (backoff "
                        "0.25 s doubling to 4 s) before giving up")
    p.add_argument("--key-file", metavar="PATH",
                   help="pre-shared HMAC key file, mode 0600 (if not given: $WQ_KEY_FILE, then "
                        "$WQ_KEY)")
    p.add_argument("--insecure", action="store_true",
                   help="talk to the board without a key: frames are NOT authenticated "
                        "(bench use only; also $WQ_INSECURE=1)")
    _verbose(p)


def _verbose(p):
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug log on stderr (connections, retries, weights)")


def _input_opts(p):
    p.add_argument("--batch", type=int, default=None,
                   help="maps per request (default: the board core's max_batch from its "
                        "QUERY, at most 256; 64 for a core without INFER_BATCH)")
    p.add_argument("--db", metavar="URL",
                   help="results store and journal: a SQLite file path (or sqlite:///path) or "
                        "postgresql://user@host:port/db; a rerun sends only unanswered images")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read LSWMD .pkl files (unpickling runs code: trusted files only)")
    p.add_argument("--pass-bins", metavar="N,N,...",
                   help="STDF: hard bins that pass (if not given: PART_FLG, then the HBR pass flag)")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="STDF: classify a wafer with no WRR or a file with no MRR (a partial "
                        "file), with a warning, instead of an error record")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host_stm32mp1", epilog=EXIT_CODES,
                                description="waferq host: classify wafer maps on the Zybo accelerator")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("classify", help="classify wafer-map files", **HELP,
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
                       **HELP, description="Watch DIR (inotify where the kernel has it, else "
                       "polling) for map files. A file is taken once its writer has closed it "
                       "(inotify), or its size and mtime have not changed for --settle seconds, "
                       "and never while a process still has it open for writing (checked with a "
                       "read lease where the host may take one). Names ending .tmp .part "
                       ".partial .crdownload and hidden files are skipped, so a tester that "
                       "writes then renames is safe. Each file is read once; symbolic links are "
                       "not followed. After classifying, the file moves to DIR/done/ (every map "
                       "answered) or DIR/failed/ (unreadable, or error records). A partial STDF "
                       "(no MRR or WRR) stays in place until it is complete, or goes to failed/ "
                       "after --incomplete-after seconds unchanged. A file whose content was "
                       "classified before under the same model and settings is not sent again.")
    w.add_argument("dir", metavar="DIR", help="the drop folder the tester writes into")
    _board_opts(w)
    _input_opts(w)
    w.add_argument("--poll-interval", type=float, default=2.0,
                   help="seconds between scans (without inotify), and the wait between checks")
    w.add_argument("--settle", type=float, default=None,
                   help="seconds a file's size and mtime must stay unchanged (if not given: "
                        "one poll interval)")
    w.add_argument("--incomplete-after", type=float, default=600.0,
                   help="seconds a partial STDF may stay unchanged before it goes to failed/")
    w.add_argument("--no-inotify", action="store_true", help="poll even where inotify works")
    w.add_argument("--once", action="store_true", help="process the files there now, then exit")
    w.add_argument("--max-files", type=int, default=None, help="exit after this many files")

    g = sub.add_parser("configure", help="push the model's weights to the board", **HELP,
                       description="Load the model's weight blob into the board (only if it "
                       "runs other weights, unless --force).")
    _board_opts(g)
    g.add_argument("--force", action="store_true", help="send the weights even if already loaded")

    s = sub.add_parser("status", help="board info, model hash, counters", **HELP,
                       description="Show the board's core, loaded weights and counters; with "
                       "--model whether it runs that model; with --db the store's counters.")
    _board_opts(s, model_required=False)
    s.add_argument("--db", metavar="URL", help="also show this store's counters")
    s.add_argument("--json", action="store_true", help="print JSON")

    b = sub.add_parser("bench", help="throughput and latency over N maps", **HELP,
                       description="Classify N maps (random maps, or FILES) and report "
                       "throughput and batch/image latency p50/p99. Nothing is stored.")
    b.add_argument("files", nargs="*", metavar="FILE", help="maps to use (default: random maps)")
    _board_opts(b)
    b.add_argument("-n", "--n", type=int, default=1000, help="maps to classify (default 1000)")
    b.add_argument("--batch", type=int, default=None,
                   help="maps per request (default: the board core's max_batch from its "
                        "QUERY, at most 256; 64 for a core without INFER_BATCH)")
    b.add_argument("--seed", type=int, default=0, help="seed of the random maps")
    b.add_argument("--out", metavar="JSON", help="write the summary here")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("report", help="HTML report from a results store", **HELP,
                       description="Write a self-contained HTML page from a results store: "
                       "counters, a table per file and per wafer (lot, wafer, tester, class "
                       "mix, confidence, errors), class mix over time, confusion matrix "
                       "(labelled maps), latency per board, and the error records with their "
                       "files. Reads the store only; a store that does not exist is an error.")
    r.add_argument("--db", required=True, metavar="URL",
                   help="the results store: a SQLite file path (or sqlite:///path) or "
                        "postgresql://user@host:port/db")
    r.add_argument("--out", required=True, metavar="HTML", help="the HTML file to write")
    r.add_argument("--bins", type=int, default=12, help="time buckets for the class mix")
    _verbose(r)

    k = sub.add_parser("console", help="the board's serial console (zybo_z7.console)", epilog=EXIT_CODES,
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


def reader_options(args) -> dict:
    """What the readers are told; part of the store's settings key."""
    return dict(pass_bins=pass_bins(args.pass_bins), allow_incomplete=args.allow_incomplete,
                allow_pickle=args.allow_pickle)


def policy(args) -> RetryPolicy:
    if args.timeout <= 0 or args.probe_timeout <= 0 or args.retries < 0:
        raise ValueError("--timeout and --probe-timeout must be positive and --retries at least 0")
    return RetryPolicy(timeout=args.timeout, retries=args.retries,
                       probe_timeout=args.probe_timeout)


def classify(args) -> int:
    store = None
    try:
        model = engine.Model.load(args.model, args.size)
        labels = load_labels(args.labels, model.classes) if args.labels else None
        addresses = parse_boards(args.boards)
        opts = reader_options(args)
        retry = policy(args)
        if args.batch is not None and args.batch < 1:
            raise ValueError("--batch must be at least 1")
        for path, what in ((args.out, "--out"), (args.csv, "--csv")):
            if path:
                report.check_writable(path, what)
        settings, described = engine.settings_key(model, **opts)
        store = open_store(args.db) if args.db else None
        if store is not None:
            store.describe_settings(settings, described)
    except (OSError, ValueError, KeyError, StoreError) as e:
        if store is not None:
            store.close()
        return _usage(e)
    status = EXIT_OK
    try:
        items = readers.read_files(args.files, labels, **opts)
        run = engine.prepare(items, model, store, settings)
    except StoreError as e:
        store.close()
        return _usage(e)
    client = BoardPool(addresses, model, retry)
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
                               run.weights_sent if run.reached else None, run.board_info)
    summary["n_from_store"] = run.cached
    summary["boards"] = run.boards
    summary["settings"] = settings
    print(report.format_table(summary))
    try:
        if args.out:
            report.write_json(args.out, run.records, summary)
        if args.csv:
            report.write_csv(args.csv, run.records)
    except OSError as e:   # checked before sending; the disk may still fill up
        print(f"error: cannot write the results file: {e}"
              + (" (the results are in the store)" if args.db else ""), file=sys.stderr)
        return EXIT_USAGE
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
    if hasattr(args, "key_file"):
        # A key problem is one sentence and exit 2 in every subcommand, before anything runs.
        from protocol import auth

        try:
            auth.resolve()
        except (auth.KeyFileError, OSError, UnicodeDecodeError) as e:
            where = args.key_file or os.environ.get("WQ_KEY_FILE") or "$WQ_KEY"
            reason = (f"{where}: {e.strerror}" if isinstance(e, OSError) and e.strerror
                      else str(e))
            print(f"error: cannot use the key file: {reason}", file=sys.stderr)
            return EXIT_USAGE
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
