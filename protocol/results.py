"""The RESULTS payload of ``protocol.wire`` as arrays: one batch's records
without a Python object a map.

The layout is wire's (its docstring has it too): u32 n, u32
weights checksum, then n records ``u64 id, u16 status, u16 class_index, u16
count`` followed by ``count`` int32 logits (status OK) or ``count`` bytes of
UTF-8 message. A batch whose records are all OK with the same number of
logits packs and parses as one numpy structured array; error records (rare)
are spliced in one at a time. Numpy only: the host runs this on the STM32MP1.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from protocol import wire as W


def record_dtype(n_classes: int) -> np.dtype:
    """An OK record as a packed structured dtype (wire's record header + logits)."""
    return np.dtype([("id", "<u8"), ("status", "<u2"), ("class_index", "<u2"), ("count", "<u2"),
                     ("logits", "<i4", (n_classes,))])


@dataclass
class ResultBatch:
    """One record per image, in request order: ``status`` is a wire status
    code (OK or E_*), ``classes`` NO_CLASS and ``logits`` zero where it is not
    OK, ``messages`` the text of each error record by index."""
    ids: np.ndarray                 # uint64 [n]
    status: np.ndarray              # uint16 [n]
    classes: np.ndarray             # uint16 [n]
    logits: np.ndarray              # int32 [n][n_classes]
    messages: dict = field(default_factory=dict)
    weights_checksum: int = 0

    @classmethod
    def empty(cls, ids, n_classes: int) -> "ResultBatch":
        ids = np.asarray(ids, dtype=np.uint64).ravel()
        n = ids.size
        return cls(ids, np.zeros(n, np.uint16), np.zeros(n, np.uint16),
                   np.zeros((n, n_classes), np.int32))

    def fail(self, where, code: int, message: str) -> None:
        """Turn the records at ``where`` (index, slice, mask or index array) into errors."""
        idx = np.arange(self.ids.size)[where]
        self.status[idx] = code
        self.classes[idx] = W.NO_CLASS
        self.logits[idx] = 0
        text = str(message)
        self.messages.update(dict.fromkeys(np.atleast_1d(idx).tolist(), text))

    def __len__(self) -> int:
        return int(self.ids.size)

    def __getitem__(self, i: int) -> dict:
        """Record ``i`` as a dict: id, status, class_index and logits (OK) or
        message, and the batch's weights_checksum."""
        base = dict(id=int(self.ids[i]), status=int(self.status[i]))
        if base["status"] == W.OK:
            base.update(class_index=int(self.classes[i]), logits=self.logits[i].tolist())
        else:
            base.update(class_index=None, message=self.messages.get(i, ""))
        base["weights_checksum"] = self.weights_checksum
        return base

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def ok(self) -> np.ndarray:
        return self.status == W.OK


def from_records(records, weights_checksum: int = 0) -> ResultBatch:
    """Wire's list-of-dicts form -> a ResultBatch (the logits count of the
    first OK record; every OK record must have it)."""
    k = next((len(np.ravel(r["logits"])) for r in records if int(r["status"]) == W.OK), 0)
    out = ResultBatch.empty([int(r["id"]) for r in records], k)
    out.weights_checksum = weights_checksum
    for i, r in enumerate(records):
        if int(r["status"]) == W.OK:
            lg = np.asarray(r["logits"], dtype=np.int64).ravel()
            if lg.size != k:
                raise ValueError(f"record {i} has {lg.size} logits, the batch {k}")
            out.classes[i], out.logits[i] = int(r["class_index"]), lg
        else:
            out.fail(i, int(r["status"]), r.get("message", ""))
    return out


def encode(batch, weights_checksum: int | None = None) -> bytes:
    """A ResultBatch, or a list of record dicts (``from_records``), as a
    RESULTS payload; ``weights_checksum``: the weights the board ran the batch
    with (default: the batch's own)."""
    if not isinstance(batch, ResultBatch):
        batch = from_records(batch)
    checksum = batch.weights_checksum if weights_checksum is None else weights_checksum
    n, k = batch.logits.shape
    recs = np.zeros(n, dtype=record_dtype(k))
    recs["id"], recs["status"] = batch.ids, batch.status
    recs["class_index"], recs["count"], recs["logits"] = batch.classes, k, batch.logits
    out = [W.RESULTS_HEAD.pack(n, int(checksum) & 0xFFFFFFFF)]
    prev = 0
    for i in np.flatnonzero(batch.status != W.OK).tolist():   # the error records only
        out.append(recs[prev:i].tobytes())
        msg = W.text_bytes(batch.messages.get(i, ""))
        out.append(W.RECORD_HEAD.pack(int(batch.ids[i]), int(batch.status[i]), W.NO_CLASS,
                                       len(msg)) + msg)
        prev = i + 1
    out.append(recs[prev:].tobytes())
    return b"".join(out)


def decode(payload: bytes) -> ResultBatch:
    """RESULTS payload -> ResultBatch; WireError (E_BAD_REQUEST) when malformed."""
    try:
        n, wsum = W.RESULTS_HEAD.unpack_from(payload)
        if n > W.MAX_BATCH_IMAGES:
            raise struct.error(f"{n} records, at most {W.MAX_BATCH_IMAGES}")
        fast = _decode_all_ok(payload, n)
        if fast is not None:
            fast.weights_checksum = wsum
            return fast
        return _decode_walk(payload, n, wsum)
    except struct.error as e:
        raise W.WireError(f"malformed RESULTS payload: {e}", W.E_BAD_REQUEST) from e


def _decode_all_ok(payload: bytes, n: int) -> ResultBatch | None:
    """Every record OK with the first record's logit count: one array view."""
    pos = W.RESULTS_HEAD.size
    if n == 0 or len(payload) < pos + W.RECORD_HEAD.size:
        return None
    _, status, _, k = W.RECORD_HEAD.unpack_from(payload, pos)
    dt = record_dtype(k)
    if status != W.OK or len(payload) != pos + n * dt.itemsize:
        return None
    recs = np.frombuffer(payload, dtype=dt, count=n, offset=pos)
    if (recs["status"] != W.OK).any() or (recs["count"] != k).any():
        return None
    return ResultBatch(recs["id"].astype(np.uint64), recs["status"].astype(np.uint16),
                       recs["class_index"].astype(np.uint16), recs["logits"].astype(np.int32))


def _decode_walk(payload: bytes, n: int, wsum: int) -> ResultBatch:
    """A batch with error records (or mixed logit counts): record by record."""
    pos, rows = W.RESULTS_HEAD.size, []
    for _ in range(n):
        rid, status, cls, count = W.RECORD_HEAD.unpack_from(payload, pos)
        pos += W.RECORD_HEAD.size
        if status == W.OK:
            if pos + 4 * count > len(payload):
                raise struct.error("logits run past the payload")
            logits = np.frombuffer(payload, dtype="<i4", count=count, offset=pos)
            rows.append((rid, status, cls, logits, None))
            pos += 4 * count
        else:
            if pos + count > len(payload):
                raise struct.error("message runs past the payload")
            msg = W.printable(payload[pos:pos + count].decode("utf-8", "replace"))
            rows.append((rid, status, cls, None, msg))
            pos += count
    if pos != len(payload):
        raise W.WireError(f"RESULTS payload has {len(payload) - pos} trailing bytes", W.E_BAD_REQUEST)
    counts = {r[3].size for r in rows if r[3] is not None}
    if len(counts) > 1:
        raise W.WireError(f"RESULTS records carry {sorted(counts)} logits: one count a batch",
                          W.E_BAD_REQUEST)
    out = ResultBatch.empty([r[0] for r in rows], counts.pop() if counts else 0)
    out.weights_checksum = wsum
    for i, (_, status, cls, logits, msg) in enumerate(rows):
        if logits is not None:
            out.classes[i], out.logits[i] = cls, logits
        else:
            out.fail(i, status, msg)
    return out
