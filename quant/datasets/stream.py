"""The full WM-811K (``LSWMD.pkl``, about 2 GB, 811k rows) in bounded memory.

``build_cache(pkl, cache_dir, sizes)`` unpickles the file once with an
unpickler that hands every wafer map, as it is rebuilt, to a sink: the sink
preprocesses it (the host's ``to_model_input``) at every input size and
appends it to ``maps_<size>.u8`` (raw uint8, one map after the other, in row
order), and the unpickler puts only the row number back into the frame. A
first pass over the file's opcodes (``memo_reads``) finds the memo entries
some GET reads back, and the memo keeps only those: none of the raw bytes,
arrays and tuples that every row memoizes. So no full copy of the maps is
ever held, let alone a second one, and the unpickler's bookkeeping stays the
same size however long the file: peak memory is the frame's small cells
(label cells as interned strings, lot names one object per distinct name,
row numbers) plus one map. ``bench/wm811k_stream.py`` measures 164 bytes a
row (25k and 100k generated rows: 80 and 92 MiB peak, against 212 and 623
MiB for pandas' reader), so the 811k-row original needs about 0.2 GB.

Maps arrive in row order because pandas stores ``waferMap`` as the first row
of the object block, pickled in C order.

The cache (``meta.json``, ``labels.npy``, ``split.npy``, ``maps_<S>.u8``) is
read back by ``quant.datasets.cache`` (``open_cache``, also importable from
here): training reads it batch by batch from the memory map.

Both numpy-1 (``numpy.core``) and numpy-2 (``numpy._core``) pickles, protocol
2 to 5, are read (see ``quant.datasets.wm811k``).
"""
from __future__ import annotations

import json
import pickle
import resource
import sys
from pathlib import Path

import numpy as np

from quant.datasets import wm811k
from quant.datasets.cache import Cache, Rows, open_cache  # noqa: F401 (the cache's reader, by its old names)

_BIG = 256  # raw buffers larger than this (a 16x16 map) are not kept in the unpickler's memo
_MAX_SHARED = 1 << 17   # distinct short strings made one object each (WM-811K: about 46k lot names)


def _big(v) -> bool:
    return isinstance(v, (bytes, bytearray, pickle.PickleBuffer)) and len(memoryview(v)) > _BIG


def memo_reads(f) -> set[int] | None:
    """The memo keys that some GET of the pickle ``f`` reads (a first pass over
    its opcodes, nothing built; about a minute for the 2 GB original), or None
    when the opcodes cannot be scanned. An LSWMD pickle memoizes some twenty
    objects a row and reads back about fifteen in all (the classes and
    functions it calls), so knowing them beats guessing what to keep."""
    import pickletools

    keys = set()
    try:
        for op, arg, _ in pickletools.genops(f):
            if op.name in ("GET", "BINGET", "LONG_BINGET"):
                keys.add(arg)
    except (ValueError, UnicodeDecodeError, EOFError):
        return None
    finally:
        f.seek(0)
    return keys


class _Memo(dict):
    """The unpickler's memo without what would make it grow with the file.

    With ``reads`` (``memo_reads``) it keeps exactly the entries a later GET
    reads and nothing else: the bookkeeping then stays the same size however
    many rows the file has (not even a placeholder is kept: a dict entry a
    row is memory that grows with the file). Without, it keeps all but what
    would be a copy of the maps: a map's raw bytes (memoized on their own and
    inside the array's state tuple, protocols 2-4), arrays and their shape
    and state tuples, which an LSWMD pickle never reads back; should a file
    read one back, ``_get`` stops with a clear error rather than build a
    wrong frame."""

    n = 0   # the next MEMOIZE index: len(self) would count only what is kept

    def __init__(self, reads: set[int] | None = None):
        super().__init__()
        self.reads = reads
        self.unbuilt: dict[int, int] = {}

    def __setitem__(self, key, value):
        self.n = max(self.n, key + 1)
        if self.reads is not None and key not in self.reads:
            return
        if isinstance(value, np.ndarray):
            # Protocols 2-4 memoize an array before BUILD fills it in.
            self.unbuilt[id(value)] = key
            if len(self.unbuilt) > 64:
                self.unbuilt.clear()
        if self.reads is None and (_big(value) or isinstance(value, (np.ndarray, tuple))):
            return
        super().__setitem__(key, value)

    def keep_compacted(self, inst, value) -> None:
        # Once BUILD has made the array a label string, keep that under its key.
        key = self.unbuilt.pop(id(inst), None)
        if key is not None and value is not inst:
            super().__setitem__(key, value)


def _compact(a):
    """A label cell ([['Center']] or an empty array) as the one string it holds,
    or None: an ndarray object a row costs about 1 KB the frame keeps."""
    if type(a) is not np.ndarray:
        return a
    if a.shape == (0, 0):           # WM-811K's "no label" cell
        return None
    if a.dtype.kind in "US" and a.size == 1:
        v = a.reshape(-1)[0]
        # interned: nine class names and two split names, not one string a row
        return sys.intern(v.decode("latin1") if isinstance(v, bytes) else str(v))
    return a


class MapSink:
    """Preprocesses each map at every size and appends it to its cache file."""

    def __init__(self, folder: Path, sizes):
        from contract.preprocess import to_model_input

        self.prep = to_model_input
        self.sizes = tuple(sizes)
        self.files = {s: open(Path(folder) / f"maps_{s}.u8", "wb") for s in self.sizes}
        self.n = 0

    def __call__(self, m: np.ndarray) -> int:
        if m.size and m.max() > 2:
            raise ValueError(f"map {self.n}: die codes must be 0..2, got up to {m.max()}")
        for s, f in self.files.items():
            f.write(np.ascontiguousarray(self.prep(m, s)).tobytes())
        self.n += 1
        if self.n % 2000 == 0:
            _trim()
        return self.n - 1

    def close(self):
        for f in self.files.values():
            f.close()


def _trim() -> None:
    # Each map's buffers are freed at once, but between long-lived small
    # objects (labels, lot names); glibc keeps such freed pages unless asked,
    # and the peak RSS would grow with the file after all.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Row(int):
    """A map's row number: what the frame holds in the map's place."""


def _is_map(shape, dtype) -> bool:
    return len(shape) == 2 and np.dtype(dtype) == np.uint8 and min(shape) > 0


def _stream_unpickler_class():
    base = wm811k._legacy_unpickler_class()

    class StreamUnpickler(base):
        sink = None

        def __init__(self, *a, reads: set[int] | None = None, **kw):
            super().__init__(*a, **kw)
            self.memo = _Memo(reads)
            self._strings: dict[str, str] = {}

        def _frombuffer(self, buf, dtype, shape, order):
            # protocol 5: numpy pickles contiguous arrays as _frombuffer(buffer, ...)
            if _is_map(shape, dtype):
                m = np.frombuffer(buf, dtype=np.uint8).reshape(shape, order=order)
                return _Row(self.sink(m))
            return _compact(np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy())

        def find_class(self, module, name):
            if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
                return self._frombuffer
            return super().find_class(module, name)

        def load_build(self):
            # protocols 2-4: _reconstruct(ndarray, ...) then BUILD with
            # (version, shape, dtype, fortran, raw bytes)
            state, inst = self.stack[-1], self.stack[-2]
            if (type(inst) is np.ndarray and isinstance(state, tuple) and len(state) == 5
                    and isinstance(state[2], np.dtype) and _is_map(state[1], state[2])):
                raw = state[4].encode("latin1") if isinstance(state[4], str) else state[4]
                m = np.frombuffer(raw, dtype=np.uint8).reshape(state[1], order="F" if state[3] else "C")
                self.stack.pop()
                self.stack[-1] = _Row(self.sink(m))    # the cell holds the row number
                if self.memo.reads is not None:        # a GET of it then says what it is
                    self.memo.keep_compacted(inst, self.stack[-1])
                return
            super().load_build()
            inst = self.stack[-1]
            self.stack[-1] = _compact(inst)
            self.memo.keep_compacted(inst, self.stack[-1])

        def _shared(self):
            # A short string (a lot name) is pickled again in every row it
            # holds: 811k lot names for some 46k lots. Equal strings become
            # one object, as the label strings do.
            v = self.stack[-1]
            if type(v) is str and len(v) <= 64:
                if len(self._strings) < _MAX_SHARED:
                    self.stack[-1] = self._strings.setdefault(v, v)
                else:
                    self.stack[-1] = self._strings.get(v, v)

        def load_memoize(self):
            # protocol 4+: the index is the memo's length, counting dropped entries
            self._shared()
            self.memo[self.memo.n] = self.stack[-1]

        def load_put(self):
            self._shared()
            base.load_put(self)

        def load_binput(self):
            self._shared()
            base.load_binput(self)

        def load_long_binput(self):
            self._shared()
            base.load_long_binput(self)

        def _get(self, load):
            try:
                load(self)
            except (KeyError, pickle.UnpicklingError):     # 3.11 words a missing memo key so
                raise ValueError("this pickle refers back to an array or buffer that the streaming "
                                 "loader does not keep; load it with quant.datasets.wm811k instead") from None
            if type(self.stack[-1]) is _Row:
                raise ValueError("this pickle refers back to a wafer map (one map in two cells), which the "
                                 "streaming loader hands on rather than keeps; load it with "
                                 "quant.datasets.wm811k instead")

        def load_get(self):
            self._get(base.load_get)

        def load_binget(self):
            self._get(base.load_binget)

        def load_long_binget(self):
            self._get(base.load_long_binget)

        dispatch = base.dispatch.copy()
        dispatch[pickle.BUILD[0]] = load_build
        dispatch[pickle.MEMOIZE[0]] = load_memoize
        dispatch[pickle.PUT[0]] = load_put
        dispatch[pickle.BINPUT[0]] = load_binput
        dispatch[pickle.LONG_BINPUT[0]] = load_long_binput
        dispatch[pickle.GET[0]] = load_get
        dispatch[pickle.BINGET[0]] = load_binget
        dispatch[pickle.LONG_BINGET[0]] = load_long_binget

    return StreamUnpickler


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far: VmHWM, which starts anew
    at exec (ru_maxrss keeps the parent's peak across fork and exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_cache(pkl: Path, folder: Path, sizes=(48,)) -> dict:
    """Stream ``pkl`` into ``folder`` (see module doc); returns the meta dict."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sink = MapSink(folder, sizes)
    cls = _stream_unpickler_class()
    try:
        with open(pkl, "rb") as f:
            reads = memo_reads(f)
            up = cls(f, reads=reads)
            up.sink = sink
            try:
                df = up.load()
            except UnicodeDecodeError:
                f.seek(0)
                sink.close()
                sink = MapSink(folder, sizes)
                up = cls(f, encoding="latin1", reads=reads)
                up.sink = sink
                df = up.load()
    finally:
        sink.close()
    if "waferMap" not in df.columns or "failureType" not in df.columns:
        raise ValueError(f"{pkl}: not an LSWMD DataFrame (needs waferMap and failureType)")
    rows = np.array([int(np.asarray(v).ravel()[0]) for v in df["waferMap"]], dtype=np.int64)
    if len(rows) != sink.n or not np.array_equal(rows, np.arange(sink.n)):
        raise ValueError(f"{pkl}: {sink.n} maps streamed for {len(df)} rows, not in row order")
    labels = np.full(len(df), -1, dtype=np.int8)
    split = np.full(len(df), -1, dtype=np.int8)
    unknown = 0
    tt = df["trianTestLabel"].to_numpy() if "trianTestLabel" in df.columns else [None] * len(df)
    for i, (f_, t) in enumerate(zip(df["failureType"].to_numpy(), tt)):
        name = wm811k._cell(f_)
        k = wm811k.class_index(name)
        if name is not None and k is None:
            unknown += 1
        labels[i] = -1 if k is None else k
        s = wm811k._cell(t)
        split[i] = wm811k._SPLIT_NAMES.get(s.lower(), -1) if s else -1
    np.save(folder / "labels.npy", labels)
    np.save(folder / "split.npy", split)
    meta = {"source": str(pkl), "rows": int(len(df)), "sizes": list(sizes),
            "labelled": int((labels >= 0).sum()), "unlabelled": int(len(df) - (labels >= 0).sum() - unknown),
            "unknown_class": unknown, "class_counts": np.bincount(labels[labels >= 0], minlength=9).tolist(),
            "peak_rss_mib": peak_rss_mib()}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Stream LSWMD.pkl into memory-mapped uint8 caches, one per size.")
    ap.add_argument("pkl", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="cache folder (train with --data FOLDER)")
    ap.add_argument("--sizes", default="48", help="input sizes, comma separated")
    args = ap.parse_args(argv)
    if not args.pkl.exists():
        raise SystemExit(f"{args.pkl}: no such file")
    meta = build_cache(args.pkl, args.out, tuple(int(s) for s in args.sizes.split(",")))
    print(f"{args.pkl}: {meta['rows']} rows, {meta['labelled']} labelled, {meta['unlabelled']} unlabelled, "
          f"{meta['unknown_class']} of unknown class; peak RSS {meta['peak_rss_mib']:.0f} MiB; cache in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
