"""Host CLI: classify wafer maps on the board.

    python -m host_stm32mp1 classify FILES... --board HOST:PORT --model build/X/export \
        [--labels labels.json] [--batch 64] [--out results.json]

Exit status: 0 every image classified, 1 some images have error records,
2 usage, model or connection errors. Numpy only (no torch): runs on the STM32MP1.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from host_stm32mp1 import readers, report
from host_stm32mp1.client import BoardClient, BoardError, parse_address
from host_stm32mp1.preprocess import to_model_input
from protocol import wire as W

log = logging.getLogger("waferq.host")

EXIT_OK, EXIT_IMAGE_ERRORS, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m host_stm32mp1",
                                description="waferq host: classify wafer maps on the Zybo accelerator")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="classify wafer-map files (NPY, NPZ, PNG)",
                       description="Send wafer maps to the board and report their classes.")
    c.add_argument("files", nargs="+", metavar="FILE",
                   help="NPY (HxW or NxHxW), NPZ (keys 'x' and optional int labels 'y', or "
                        "'arr_0'), or grayscale PNG; category maps use 0=no die, 1=pass, 2=fail")
    c.add_argument("--board", required=True, metavar="HOST:PORT", help="board service address")
    c.add_argument("--model", required=True, metavar="DIR",
                   help="export folder (model.json, weights.bin) the board must run")
    c.add_argument("--labels", metavar="JSON",
                   help="JSON object: file path or name -> label or list of labels (class "
                        "index or name); overrides an NPZ's 'y'")
    c.add_argument("--batch", type=int, default=64, help="maps per request (default 64)")
    c.add_argument("--out", metavar="JSON", help="write per-image results and the summary here")
    c.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a reply")
    c.add_argument("--size", type=int, default=None,
                   help="resize maps to this size instead of the model's (testing the board's checks)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("-v", "--verbose", action="store_true")
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


def _error_record(base: dict, code: int, message: str) -> dict:
    return dict(base, status="error", error=dict(code=code, name=W.STATUS_NAMES.get(code, str(code)),
                                                 message=message))


def classify(args) -> int:
    model_dir = Path(args.model)
    try:
        meta = json.loads((model_dir / "model.json").read_text())
        classes = list(meta["spec"]["classes"])
        size = args.size or int(meta["spec"]["in_size"])
        channels = int(meta["spec"].get("in_channels", 1))
        labels = load_labels(args.labels, classes) if args.labels else None
        host, port = parse_address(args.board)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.batch < 1:
        print("error: --batch must be at least 1", file=sys.stderr)
        return EXIT_USAGE

    # Every input becomes exactly one record, in input order; ids index records.
    records, pending, images = [], [], []
    for item in readers.read_files(args.files, labels):
        rid = len(records)
        if isinstance(item, readers.Failure):
            records.append(_error_record(dict(source=item.source, index=item.index, id=rid),
                                         W.E_BAD_REQUEST, item.reason))
            log.warning("%s: %s", item.source, item.reason)
            continue
        base = dict(source=item.source, index=item.index, id=rid, label=item.label,
                    label_name=classes[item.label] if item.label is not None
                    and 0 <= item.label < len(classes) else None)
        try:
            x = to_model_input(item.map, size)
        except ValueError as e:
            records.append(_error_record(base, W.E_BAD_REQUEST, f"preprocessing: {e}"))
            continue
        records.append(base)
        pending.append(rid)
        images.append(np.repeat(x, channels, axis=2) if channels > 1 else x)

    t0 = time.perf_counter()
    latencies, sizes, board_info, weights_sent, status = [], [], None, False, EXIT_OK
    client = BoardClient(host, port, timeout=args.timeout)
    try:
        board_info, weights_sent = client.ensure_weights(model_dir)
        log.info("board %s: backend %s, weights %s", args.board, board_info["backend"],
                 "sent" if weights_sent else "already loaded")
        bar = _progress(len(pending), args.no_progress)
        for start in range(0, len(pending), args.batch):
            ids = pending[start:start + args.batch]
            batch = np.stack(images[start:start + len(ids)])
            tb = time.perf_counter()
            results = client.infer_batch(batch, ids)
            latencies.append(time.perf_counter() - tb)
            sizes.append(len(ids))
            for res in results:
                rec = records[res["id"]]
                if res["status"] == W.OK:
                    k = res["class_index"]
                    rec.update(status="ok", class_index=k,
                               cls=classes[k] if k < len(classes) else None, logits=res["logits"])
                else:
                    records[res["id"]] = _error_record(rec, res["status"], res["message"])
            bar.update(len(ids))
        bar.close()
    except (BoardError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        status = EXIT_USAGE
        for rec in records:
            if "status" not in rec:
                rec.update(_error_record(rec, W.E_INTERNAL, f"not classified: {e}"))
    finally:
        client.close()
    wall = time.perf_counter() - t0

    summary = report.summarize(records, classes, latencies, sizes, wall, weights_sent, board_info)
    print(report.format_table(summary))
    if args.out:
        report.write_json(args.out, records, summary)
    if status == EXIT_OK and summary["n_errors"]:
        status = EXIT_IMAGE_ERRORS
    return status


def _progress(total: int, disabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional on a minimal host image
        disabled = True
    if disabled:
        class _Null:
            def update(self, n): pass
            def close(self): pass
        return _Null()
    return tqdm(total=total, unit="map", file=sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "classify":
        return classify(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
