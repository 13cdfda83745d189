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

from protocol import pixels as PX
from protocol import stream as S

# Bounds a reply: the largest INFER_BATCH reply is far below the stream's limit.
_MAX_REPLY_WORDS = S.MAX_MESSAGE_WORDS


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
        self.lib.wq_reset.argtypes = []
        self.lib.wq_reset.restype = None
        self.lib.wq_run_partial.argtypes = []
        self.lib.wq_run_partial.restype = ctypes.c_int
        self.lib.wq_soft_reset.argtypes = [ctypes.c_int]
        self.lib.wq_soft_reset.restype = None
        self.lib.wq_push_message.argtypes = [ctypes.POINTER(ctypes.c_uint32), ctypes.c_int]
        self.lib.wq_push_message.restype = None
        self.lib.wq_pop_message.argtypes = [ctypes.POINTER(ctypes.c_uint32), ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_int)]
        self.lib.wq_pop_message.restype = ctypes.c_int
        self._reply_buf = np.zeros(_MAX_REPLY_WORDS, dtype=np.uint32)
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
        """One request (TLAST on its last word) -> its reply words; the words
        cross into the library in one call each way."""
        words = np.ascontiguousarray(words, dtype=np.uint32).ravel()
        if words.size == 0:
            raise ValueError("a request needs at least one word")
        ptr = words.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32))
        with self._lock:
            self.lib.wq_push_message(ptr, int(words.size))
            if self.lib.wq_run() != 0:
                raise CSimError("the core did not run on a complete request")
            reply = self._pop_reply()
            if self.lib.wq_run() == 0:
                raise CSimError("expected one reply, the core ran twice")
        return reply

    def infer_batch(self, images: np.ndarray, n_classes: int, packing: int = S.PACK_U8, tag: int = 0,
                    feature_shape: tuple[int, int, int] | None = None, signed: bool = False):
        """One INFER_BATCH message for a whole batch: ``images`` as
        ``protocol.pixels.encode_infer_batch`` takes them ([N][H][W][C] uint8
        pixel codes for PACK_U8, die states for PACK_DIE2). Returns
        ``parse_batch_reply``'s arrays (status, class, int32 logits [,
        features]); an ERROR reply raises ``protocol.stream.StreamError``."""
        images = np.asarray(images)
        reply = self.transact(PX.encode_infer_batch(images, packing, tag))
        msg = S.decode(reply)
        if msg.tag != (tag & S.MASK32):
            raise CSimError(f"reply tag {msg.tag} is not the request's {tag}")
        return S.parse_batch_reply(msg, images.shape[0], n_classes, feature_shape, signed)

    def _pop_reply(self) -> np.ndarray:
        buf, bad = self._reply_buf, ctypes.c_int(0)
        n = self.lib.wq_pop_message(buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), buf.size,
                                    ctypes.byref(bad))
        if n == -1:
            raise CSimError("the core produced no reply to a complete request")
        if n == -2:  # TKEEP and TSTRB: every byte of every word is valid
            raise CSimError(f"reply word {bad.value} has TKEEP/TSTRB not all ones")
        if n == -3:
            raise CSimError(f"the core's reply exceeded {buf.size} words without TLAST")
        if n == -4:
            raise CSimError(f"the core's reply stopped after {bad.value} words without TLAST")
        return buf[:n].copy()
