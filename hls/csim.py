"""Drive the C-simulated core (``libwaferq_csim.so``) from Python via ctypes.

Each ``CSimCore`` loads its own private copy of the library, so every instance
starts as a freshly reset core (no weights loaded) and instances never share
the core's static state.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

# A reply is at most a QUERY or an INFER result; this bounds the pop loop.
_MAX_REPLY_WORDS = 1 << 16


class CSimError(RuntimeError):
    pass


class CSimCore:
    def __init__(self, lib_path: str | Path):
        lib_path = Path(lib_path)
        if not lib_path.is_file():
            raise CSimError(f"{lib_path} does not exist: build it with hls.csim_build first.")
        # dlopen returns the already-loaded handle for a path it has seen, so a
        # private copy is the only way to get a core with fresh static state.
        fd, tmp = tempfile.mkstemp(prefix="wq_csim_", suffix=".so", dir=lib_path.parent)
        os.close(fd)
        shutil.copyfile(lib_path, tmp)
        self._copy = Path(tmp)
        self.lib = ctypes.CDLL(str(self._copy))
        self._copy.unlink()  # the mapping stays valid; nothing is left behind
        self.lib.wq_push.argtypes = [ctypes.c_uint32, ctypes.c_int]
        self.lib.wq_push.restype = None
        self.lib.wq_run.argtypes = []
        self.lib.wq_run.restype = ctypes.c_int
        self.lib.wq_pop.argtypes = [ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_int),
                                    ctypes.POINTER(ctypes.c_int)]
        self.lib.wq_pop.restype = ctypes.c_int
        self.lib.wq_reset.argtypes = []
        self.lib.wq_reset.restype = None
        self.lib.wq_run_partial.argtypes = []
        self.lib.wq_run_partial.restype = ctypes.c_int
        self.lib.wq_soft_reset.argtypes = [ctypes.c_int]
        self.lib.wq_soft_reset.restype = None
        # The core and its streams are one piece of state; a server thread per
        # client must not interleave words of two messages.
        self._lock = threading.Lock()

    @classmethod
    def for_model(cls, model_dir: str | Path, work_dir: str | Path,
                  features: bool = False) -> "CSimCore":
        """Generate the HLS sources for ``model_dir`` into ``work_dir`` (folding from
        ``work_dir/parallel.json`` when present), build, load. ``features``: see
        ``hls.generate``; parse such replies with ``protocol.stream.parse_result_with_features``."""
        from hls.csim_build import build
        from hls.generate import generate

        generate(model_dir, work_dir, features=features)
        return cls(build(work_dir))

    def reset(self) -> None:
        """Empty both streams (the core's weights stay as they are)."""
        with self._lock:
            self.lib.wq_reset()

    def cut(self, words) -> None:
        """Send the first words of a message (no TLAST) and run the core until it
        waits for the next word, as the RTL core does when a transfer is aborted.
        Follow with ``soft_reset``."""
        words = np.asarray(words, dtype=np.uint32).ravel()
        with self._lock:
            for w in words:
                self.lib.wq_push(int(w), 0)
            if self.lib.wq_run_partial() != 1:
                raise CSimError("the core finished a message it should still be waiting on")

    def soft_reset(self, reset_state: bool = True) -> None:
        """The CSR soft reset as the block design wires it: RX and TX FIFOs
        emptied, and (``reset_state``) the variables with ``#pragma HLS reset``
        back to zero. ``reset_state=False`` models a core whose statics keep
        their value through ap_rst_n, the tool's default for unnamed ones."""
        with self._lock:
            self.lib.wq_soft_reset(int(reset_state))

    def close(self) -> None:
        """Empty the streams so the library's exit handlers find nothing queued."""
        self.reset()

    def send_raw(self, words, last_flags) -> list[np.ndarray]:
        """Push words with explicit TLAST flags, run the core once per complete
        message, and return every reply, in order. Words after the last TLAST
        stay queued in the RX stream."""
        words = np.asarray(words, dtype=np.uint32).ravel()
        flags = np.asarray(last_flags, dtype=bool).ravel()
        if words.size != flags.size:
            raise ValueError(f"{words.size} words but {flags.size} TLAST flags")
        with self._lock:
            for w, last in zip(words, flags):
                self.lib.wq_push(int(w), int(last))
            replies = []
            while self.lib.wq_run() == 0:
                replies.append(self._pop_reply())
        return replies

    def transact(self, words) -> np.ndarray:
        """One request (TLAST on its last word) -> its reply words."""
        words = np.asarray(words, dtype=np.uint32).ravel()
        if words.size == 0:
            raise ValueError("a request needs at least one word")
        flags = np.zeros(words.size, dtype=bool)
        flags[-1] = True
        replies = self.send_raw(words, flags)
        if len(replies) != 1:
            raise CSimError(f"expected one reply, the core ran {len(replies)} times")
        return replies[0]

    def _pop_reply(self) -> np.ndarray:
        data, last, keep = ctypes.c_uint32(), ctypes.c_int(), ctypes.c_int()
        out = []
        while len(out) < _MAX_REPLY_WORDS:
            if self.lib.wq_pop(ctypes.byref(data), ctypes.byref(last), ctypes.byref(keep)) != 0:
                if not out:
                    raise CSimError("the core produced no reply to a complete request")
                raise CSimError(f"the core's reply stopped after {len(out)} words without TLAST")
            if keep.value != 0xFF:  # TKEEP and TSTRB: every byte of every word is valid
                raise CSimError(f"reply word {len(out)} has TKEEP/TSTRB 0x{keep.value:02x}, "
                                "not all ones")
            out.append(data.value)
            if last.value:
                return np.array(out, dtype=np.uint32)
        raise CSimError(f"the core's reply exceeded {_MAX_REPLY_WORDS} words without TLAST")
