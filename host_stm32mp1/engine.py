"""One classification run: readers -> records -> journal -> board -> records.

Shared by ``classify``, ``watch`` and ``bench``. Every input becomes exactly
one record, in input order; a record's position is its wire id. With a
store, images are journaled before they are sent and results are written
per batch, so a rerun after a crash sends only what has no result yet.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from host_stm32mp1 import readers
from host_stm32mp1.boards import BoardPool
from host_stm32mp1.client import BoardError
from host_stm32mp1.preprocess import to_model_input
from protocol import wire as W

log = logging.getLogger("waferq.host")


@dataclass
class Model:
    folder: Path
    meta: dict
    classes: list
    size: int
    channels: int

    @classmethod
    def load(cls, folder, size: int | None = None) -> "Model":
        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        spec = meta["spec"]
        return cls(folder, meta, list(spec["classes"]), size or int(spec["in_size"]),
                   int(spec.get("in_channels", 1)))

    @property
    def checksum(self) -> int:
        return int(self.meta["weights_checksum"])


@dataclass
class Run:
    records: list = field(default_factory=list)
    images: list = field(default_factory=list)      # model inputs of records still to send
    pending: list = field(default_factory=list)     # record ids of those inputs
    seqs: dict = field(default_factory=dict)        # record id -> store seq
    latencies: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    board_info: dict | None = None
    weights_sent: bool = False
    cached: int = 0
    boards: dict = field(default_factory=dict)     # board -> batches served, weights pushed


def error_record(base: dict, code: int, message: str) -> dict:
    # The message may quote a peer or a file: no control characters reach a
    # terminal, the CSV or the store.
    return dict(base, status="error", error=dict(code=code, name=W.STATUS_NAMES.get(code, str(code)),
                                                 message=W.printable(message, 1000)))


def _label(item, classes):
    if item.label_name is not None:
        return classes.index(item.label_name) if item.label_name in classes else None
    return item.label


def prepare(items, model: Model, store=None) -> Run:
    """Records for all items; with a store, journal them and fill in what is already answered."""
    run = Run()
    inputs = {}
    for item in items:
        rid = len(run.records)
        if isinstance(item, readers.Failure):
            run.records.append(error_record(dict(source=item.source, index=item.index, id=rid,
                                                 file_sha256=item.file_sha256),
                                            W.E_BAD_REQUEST, item.reason))
            log.warning("%s: %s", item.source, item.reason)
            continue
        label = _label(item, model.classes)
        base = dict(source=item.source, index=item.index, id=rid, label=label,
                    label_name=model.classes[label] if label is not None
                    and 0 <= label < len(model.classes) else item.label_name,
                    file_sha256=item.file_sha256)
        if item.meta:
            base["meta"] = item.meta
        try:
            x = to_model_input(item.map, model.size)
        except ValueError as e:
            run.records.append(error_record(base, W.E_BAD_REQUEST, f"preprocessing: {e}"))
            continue
        run.records.append(base)
        inputs[rid] = np.repeat(x, model.channels, axis=2) if model.channels > 1 else x
    if store is not None:
        _journal(run, store, inputs)
    for rid in sorted(inputs):
        if "status" not in run.records[rid]:
            run.pending.append(rid)
            run.images.append(inputs[rid])
    return run


def _journal(run: Run, store, inputs) -> None:
    keyed = [r for r in run.records if r.get("file_sha256")]
    keys = [(r["file_sha256"], -1 if r["index"] is None else r["index"], r["source"],
             r.get("label")) for r in keyed]
    for rec, seq in zip(keyed, store.register(keys)):
        run.seqs[rec["id"]] = seq
        rec["seq"] = seq
    done = store.results(run.seqs.values())
    new_errors = []
    for rec in keyed:
        old = done.get(rec["seq"])
        if old is not None:
            rec.update(_from_store(old))
            rec["cached"] = True
            run.cached += 1
        elif rec.get("status") == "error":   # unreadable file: its error is its result
            new_errors.append(rec)
    store.record_results(_store_row(r, None, None, None) for r in new_errors)


def _from_store(row: dict) -> dict:
    if row["status"] == "ok":
        return dict(status="ok", class_index=row["class_index"], cls=row["class_name"],
                    logits=row["logits"])
    return dict(status="error", error=dict(code=row["error_code"], name=row["error_name"],
                                           message=row["error_message"]))


def _store_row(rec: dict, board, checksum, latency) -> dict:
    err = rec.get("error") or {}
    return dict(seq=rec["seq"], status=rec["status"], class_index=rec.get("class_index"),
                class_name=rec.get("cls"), logits=rec.get("logits"), error_code=err.get("code"),
                error_name=err.get("name"), error_message=err.get("message"), board=board,
                weights_checksum=checksum, latency_s=latency)


def send(run: Run, client, model: Model, batch: int, store=None, board_name="",
         progress=None) -> None:
    """Classify ``run.pending`` in batches on a ``BoardPool`` (several boards,
    failover) or one ``BoardClient``; each board gets the model's weights
    before any work, on every (re)connect.

    Raises BoardError/OSError with the records of unsent images left without
    a status (the caller marks them; the journal keeps them pending).
    """
    pool = client if isinstance(client, BoardPool) else BoardPool.of_client(client, model)
    single = not isinstance(client, BoardPool)
    where = {rid: i for i, rid in enumerate(run.pending)}
    batches = [run.pending[s:s + batch] for s in range(0, len(run.pending), batch)]

    def images(ids):
        return np.stack([run.images[where[i]] for i in ids])

    def on_result(ids, results, board, dt):
        name = board_name if single and board_name else board
        run.latencies.append(dt)
        run.sizes.append(len(ids))
        rows = []
        for res in results:
            rec = run.records[res["id"]]
            if "status" in rec:        # already answered: never count an image twice
                continue
            if res["status"] == W.OK:
                k = res["class_index"]
                rec.update(status="ok", class_index=k,
                           cls=model.classes[k] if k < len(model.classes) else None,
                           logits=res["logits"])
            else:
                rec.update(error_record(rec, res["status"], res["message"]))
            rec["board"] = name
            if store is not None and "seq" in rec:
                # The checksum the board says it ran, not the one we meant.
                rows.append(_store_row(rec, name, res.get("weights_checksum", model.checksum),
                                       dt / len(ids)))
        if rows:
            store.record_results(rows)
        if progress is not None:
            progress.update(len(ids))

    try:
        if not batches:    # nothing to send: still check the board and its weights
            if single:
                run.board_info, run.weights_sent = client.ensure_weights(model.folder)
            return
        pool.run(batches, images, on_result)
    finally:
        if pool.board_info is not None:
            run.board_info, run.weights_sent = pool.board_info, pool.weights_sent
        run.boards = {w.name: dict(batches=w.batches, weights_sent=w.weights_sent)
                      for w in pool.workers}
        if single:
            client.on_connect = None


def fail_unsent(run: Run, message: str) -> None:
    for rec in run.records:
        if "status" not in rec:
            rec.update(error_record(rec, W.E_INTERNAL, f"not classified: {message}"))


def progress_bar(total: int, disabled: bool, desc: str | None = None):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional on a minimal host image
        disabled = True
    if disabled:
        class _Null:
            def update(self, n): pass
            def close(self): pass
        return _Null()
    return tqdm(total=total, unit="map", file=sys.stderr, desc=desc)


def connect_error(e: Exception) -> bool:
    return isinstance(e, (BoardError, OSError))
