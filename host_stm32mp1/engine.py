"""One classification run: readers -> records -> journal -> board -> records.

Shared by ``classify``, ``watch`` and ``bench``. Every input becomes exactly
one record, in input order; a record's position is its wire id. With a
store, images are journaled before they are sent and results are written
per batch, so a rerun after a crash sends only what has no result yet.
The model it runs (``Model``: export, judging, settings digest) is in
``host_stm32mp1/model.py``.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field

import numpy as np

from host_stm32mp1 import readers
from contract import views
from host_stm32mp1.boards import BoardPool
from host_stm32mp1.client import DEFAULT_BATCH, BoardError
from host_stm32mp1.model import Model, ModelError, settings_key  # noqa: F401 (engine.Model is the callers' name)
from contract.preprocess import to_model_input
from protocol import wire as W
from protocol.results import ResultBatch

log = logging.getLogger("waferq.host")

# Host-side error records (never on the wire, so outside protocol.wire's codes):
# the file could not be read, or a map could not be turned into model input.
E_READ, E_INPUT = -1, -2
LOCAL_ERRORS = {E_READ: "READ_ERROR", E_INPUT: "INPUT_ERROR"}


def clean(text) -> str:
    """A text from a file or a peer, safe to print or store: no control characters."""
    return W.printable(text, 4096)


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
    batch: int | None = None                        # maps a request, as sent
    reached: bool = False                           # a board answered (weights_sent means something)


def error_record(base: dict, code: int, message: str) -> dict:
    # The message may quote a peer or a file: no control characters reach a
    # terminal, the CSV or the store.
    name = LOCAL_ERRORS.get(code) or W.STATUS_NAMES.get(code, str(code))
    return dict(base, status="error", error=dict(code=code, name=name,
                                                 message=W.printable(message, 1000)))


def _identity(meta: dict) -> dict:
    out = {k: (None if meta.get(k) is None else clean(meta[k])) for k in readers.IDENTITY}
    if meta.get("warnings"):
        out["warnings"] = [clean(w) for w in meta["warnings"]]
    return out


def _where(rec: dict) -> str:
    src = rec["source"]
    return src if rec.get("index") is None else f"{src}[{rec['index']}]"


def _looks_like_wafer(m: np.ndarray) -> str | None:
    """A warning for a grayscale image that is not a die-category picture. Wafer
    maps are 0/1/2 categories, or the gray codes 0/128/255 training sees; a photo
    or a gradient gets a class, but it says nothing."""
    a = np.asarray(m)
    if a.size == 0 or a.dtype.kind not in "iu" or a.max() <= 2:
        return None
    levels = np.unique(a)
    if not np.isin(levels, (0, 128, 255)).all():
        return (f"a grayscale image with {len(levels)} gray levels, not a wafer map's codes "
                "0/128/255 (or categories 0/1/2): its class may mean nothing")
    return None


def _label(item, classes):
    if item.label_name is not None:
        return classes.index(item.label_name) if item.label_name in classes else None
    return item.label


def prepare(items, model: Model, store=None, settings: str = "", quiet: bool = False) -> Run:
    """Records for all items; with a store, journal them (under ``settings``,
    see ``settings_key``) and fill in what is already answered. Local errors
    and warnings go to stderr too (unless ``quiet``), one line each."""
    run = Run()
    inputs = {}

    def say(kind, rec, text):
        if not quiet:
            print(f"{kind}: {clean(_where(rec))}: {clean(text)}", file=sys.stderr)

    for item in items:
        rid = len(run.records)
        if isinstance(item, readers.Failure):
            rec = error_record(dict(source=item.source, index=item.index, id=rid,
                                    file_sha256=item.file_sha256, **_identity(item.meta)),
                               E_READ, item.reason)
            run.records.append(rec)
            say("error", rec, item.reason)
            continue
        label = _label(item, model.classes)
        base = dict(source=item.source, index=item.index, id=rid, label=label,
                    label_name=clean(model.classes[label]) if label is not None
                    and 0 <= label < len(model.classes) else
                    (None if item.label_name is None else clean(item.label_name)),
                    file_sha256=item.file_sha256, **_identity(item.meta))
        if item.meta:
            base["meta"] = {k: v for k, v in item.meta.items() if k != "warnings"}
        try:
            x = to_model_input(item.map, model.size)
        except (ValueError, TypeError) as e:
            rec = error_record(base, E_INPUT, f"preprocessing: {e}")
            run.records.append(rec)
            say("error", rec, rec["error"]["message"])
            continue
        odd = _looks_like_wafer(item.map)
        if odd:
            base.setdefault("warnings", []).append(odd)
        for w in base.get("warnings", ()):
            say("warning", base, w)
        run.records.append(base)
        inputs[rid] = np.repeat(x, model.channels, axis=2) if model.channels > 1 else x
    if store is not None:
        _journal(run, store, inputs, settings)
    for rid in sorted(inputs):
        if "status" not in run.records[rid]:
            run.pending.append(rid)
            run.images.append(inputs[rid])
    return run


def _journal(run: Run, store, inputs, settings: str) -> None:
    keyed = [r for r in run.records if r.get("file_sha256")]
    keys = [(r["file_sha256"], -1 if r["index"] is None else r["index"], r["source"],
             r.get("label")) for r in keyed]
    info = [dict({k: r.get(k) for k in readers.IDENTITY},
                 warnings=json.dumps(r["warnings"]) if r.get("warnings") else None) for r in keyed]
    for rec, seq in zip(keyed, store.register(keys, settings, info)):
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
        rej = row.get("rejected")
        return dict(status="ok", class_index=row["class_index"], cls=row["class_name"],
                    logits=row["logits"], confidence=row.get("confidence"),
                    rejected=None if rej is None else bool(rej))
    return dict(status="error", error=dict(code=row["error_code"], name=row["error_name"],
                                           message=row["error_message"]))


def _store_row(rec: dict, board, checksum, latency) -> dict:
    err = rec.get("error") or {}
    return dict(seq=rec["seq"], status=rec["status"], class_index=rec.get("class_index"),
                class_name=rec.get("cls"), logits=rec.get("logits"), error_code=err.get("code"),
                error_name=err.get("name"), error_message=err.get("message"), board=board,
                weights_checksum=checksum, latency_s=latency, confidence=rec.get("confidence"),
                rejected=None if rec.get("rejected") is None else int(rec["rejected"]))


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
    # With views (contract.views) a map is n images on the wire, next to each
    # other in one request, with wire ids record id * n + view.
    n = model.views
    if batch is None:
        batch = max(1, _board_batch(pool) // n) if run.pending else DEFAULT_BATCH
    run.batch = batch
    where = {rid: i for i, rid in enumerate(run.pending)}
    batches = [[rid * n + v for rid in run.pending[s:s + batch] for v in range(n)]
               for s in range(0, len(run.pending), batch)]

    def images(wire_ids):
        return views.expand(np.stack([run.images[where[i // n]] for i in wire_ids[::n]]), n)

    def on_result(wire_ids, results, board, dt):
        name = board_name if single and board_name else board
        ids = wire_ids[::n]
        if n > 1:
            results = _per_map(results, n)
        run.latencies.append(dt)
        run.sizes.append(len(ids))
        rows = []
        # one numpy pass a batch for confidence and the reject rule
        ok = np.flatnonzero(results.ok)
        needs_inputs = len(ok) and (model.reject or {}).get("input") is not None
        conf, why = model.judge_batch(results.logits[ok], np.stack(
            [run.images[where[rid]] for rid in results.ids[ok].tolist()]) if needs_inputs else None)
        judged = dict(zip(ok.tolist(), zip(conf.tolist(), why)))
        rule = model.reject is not None
        # plain lists once a batch: no numpy scalar a field a map below
        columns = zip(results.ids.tolist(), results.status.tolist(), results.classes.tolist(),
                      results.logits.tolist())
        for i, (rid, status, k, logits) in enumerate(columns):
            rec = run.records[rid]
            if "status" in rec:        # already answered: never count an image twice
                continue
            if status == W.OK:
                c, reason = judged[i]
                rec.update(status="ok", class_index=k,
                           cls=model.classes[k] if k < len(model.classes) else None,
                           logits=logits, confidence=round(c, 6),
                           rejected=(reason is not None) if rule else None)
                if reason is not None:
                    rec["reject_reason"] = reason
            else:
                rec.update(error_record(rec, status, results.messages.get(i, "")))
            rec["board"] = name
            if store is not None and "seq" in rec:
                # The checksum the board says it ran, not the one we meant.
                rows.append(_store_row(rec, name, results.weights_checksum, dt / len(ids)))
        if rows:
            store.record_results(rows)
        if progress is not None:
            progress.update(len(ids))

    try:
        if not batches:    # nothing to send: still check the board and its weights
            if single:
                run.board_info, run.weights_sent = client.ensure_weights(model.folder)
                run.reached = True
            return
        pool.run(batches, images, on_result)
    finally:
        if pool.board_info is not None:
            run.board_info, run.weights_sent = pool.board_info, pool.weights_sent
            run.reached = True
        run.boards = {w.name: dict(batches=w.batches, weights_sent=w.weights_sent)
                      for w in pool.workers}
        if single:
            client.on_connect = None


def _per_map(results, n: int) -> ResultBatch:
    """A batch's per-view records -> one record per map (``views.combine_records``)."""
    status, classes, logits, messages = views.combine_records(
        results.status, results.logits, results.messages, n, W.OK)
    return ResultBatch(results.ids[::n] // np.uint64(n), status, classes.astype(np.uint16), logits, messages,
                       results.weights_checksum)


def _board_batch(pool: BoardPool) -> int:
    """Maps a request, sized by the first board that answers HELLO (its core's
    max_batch); DEFAULT_BATCH when none answers now: the pool's retry policy
    then deals with the boards."""
    for w in pool.workers:
        try:
            return w.client.batch_size()
        except (BoardError, OSError) as e:
            log.info("board %s: no batch size (%s)", w.name, e)
    return DEFAULT_BATCH


def fail_unsent(run: Run, message: str) -> None:
    for rec in run.records:
        if "status" not in rec:
            rec.update(error_record(rec, W.E_INTERNAL, f"not classified: {message}"))
            rec["unsent"] = True


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
