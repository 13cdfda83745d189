"""Accelerator backends for the board service, chosen by name.

Every backend moves whole ``protocol.stream`` messages: ``transact(words)``
sends one request and returns one reply (uint32 words).

- ``chardev``: the waferq driver's device node on the Zybo (one message per
  write(), one reply per read()), or its user-space stand-in when the path is
  a Unix socket (tests; ``zybo_z7.devnode``, drivers/README.md).
- ``csim``: the generated HLS core compiled as a C simulation (``hls.csim``).
- ``reference``: the Python golden model ``hls.refcore.RefCore``.

The core's topology is fixed at synthesis, so csim and reference take it from
the model dir's ``model.json``; the weights arrive later by LOAD_WEIGHTS.
Torch-free: this runs on the board.
"""
from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
from pathlib import Path

import numpy as np

from protocol import ioctl as IOC
from protocol import pixels as PX
from protocol import stream as S
from protocol import wire as W
from zybo_z7.devnode import DevNodeFile, SeqpacketFile

DEFAULT_DEVICE = "/dev/waferq0"


def load_spec(model_dir):
    from contract import export_dir

    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --model must be an export folder "
                                "(build/<model>/export)")
    return export_dir.read(model_dir).spec()


class ReferenceBackend:
    name = "reference"

    def __init__(self, model_dir):
        from hls.refcore import RefCore

        self.core = RefCore(load_spec(model_dir))

    def transact(self, words) -> np.ndarray:
        return self.core.handle(words)

    def close(self) -> None:
        pass


class CSimBackend:
    name = W.BACKEND_CSIM

    def __init__(self, model_dir, work_dir=None):
        try:
            from hls.csim import CSimCore
        except ImportError as e:
            raise RuntimeError(f"the csim backend needs hls.csim ({e}); "
                               "choose --backend reference") from e
        # Default next to the export so the compiled simulator is reused across runs.
        work_dir = Path(work_dir) if work_dir else Path(model_dir).resolve().parent / "csim"
        self.core = CSimCore.for_model(model_dir, work_dir)

    def transact(self, words) -> np.ndarray:
        return np.asarray(self.core.transact(np.asarray(words, dtype=np.uint32)), dtype=np.uint32)

    def close(self) -> None:
        close = getattr(self.core, "close", None)
        if close:
            close()


class CharDevBackend:
    """The waferq driver: one write() per request, poll(), one read() per reply.

    A request with no reply within ``timeout`` raises TimeoutError after a
    WAFERQ_IOC_RESET, so the next request starts on an idle device and a late
    reply cannot be taken for its answer. The driver's own timeout is set to
    the same value. Errors of the driver arrive as OSError with its errno.
    """

    name = "chardev"
    # The driver moves a write() as one scatter-gather transfer of the caller's
    # pinned pages, at most 255 descriptors (xilinx_dma before 6.6; 512 after):
    # past that it answers EMSGSIZE (drivers/README.md). A request of 254
    # pages fits however the pages lie (one more for a buffer that does not
    # start on a page), so the service cuts its INFER_BATCH messages to it.
    max_request_bytes = 254 * 4096

    def __init__(self, device: str = DEFAULT_DEVICE, timeout: float = 5.0):
        self.device, self.timeout = device, timeout
        try:
            is_socket = stat.S_ISSOCK(os.stat(device).st_mode)
            self.file = SeqpacketFile(device, timeout) if is_socket else DevNodeFile(device)
        except FileNotFoundError:
            raise FileNotFoundError(f"no {device}: load the waferq driver or choose "
                                    "--backend csim") from None
        except PermissionError:
            raise PermissionError(f"{device}: permission denied (run as a member of the "
                                  "device's group, or as root)") from None
        except OSError as e:
            if e.errno == errno.EBUSY:
                raise OSError(e.errno, f"{device} is open in another process (the driver "
                              "takes one opener; is another board service running?)") from None
            raise
        ms = min(max(int(timeout * 1000), IOC.TIMEOUT_MIN_MS), IOC.TIMEOUT_MAX_MS)
        try:
            self._check_api_version()
            IOC.set_timeout(self.file, ms)
        except BaseException:
            self.file.close()
            raise

    def _check_api_version(self):
        """A driver of another interface version (older ones have another ioctl type)
        would take these ioctls for unknown ones: say so at open."""
        try:
            version = IOC.get_api_version(self.file)
        except OSError as e:
            if e.errno != errno.ENOTTY:
                raise
            version = None
        if version != IOC.WAFERQ_API_VERSION:
            raise OSError(errno.EPROTO, f"{self.device}: the waferq driver speaks interface "
                          f"version {version or '1 (ioctl type 0xB7)'}, this service "
                          f"{IOC.WAFERQ_API_VERSION}: load the matching waferq.ko")

    def _fail(self, call: str, e: OSError):
        return OSError(e.errno, f"{self.device}: {call}: {e.strerror}")

    def _timed_out(self, what: str):
        try:
            IOC.reset(self.file)
            after = "the device was reset and takes the next request"
        except OSError as e:
            after = f"resetting the device failed too ({e.strerror})"
        return TimeoutError(f"{self.device}: {what} within {self.timeout} s; {after}")

    def transact(self, words) -> np.ndarray:
        data = S.to_bytes(np.asarray(words, dtype=np.uint32))
        try:
            n = self.file.write(data)
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                raise self._timed_out("the core did not take the request") from None
            raise self._fail("write", e) from None
        # The driver takes a message in one write(); a short count is a driver fault.
        if n != len(data):
            raise OSError(errno.EIO, f"{self.device}: short write ({n} of {len(data)} bytes)")
        if not self.file.poll(self.timeout):
            raise self._timed_out("no reply")
        try:
            reply = self.file.read(4 * S.MAX_MESSAGE_WORDS)
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                raise self._timed_out("no reply") from None
            raise self._fail("read", e) from None
        return S.from_bytes(reply)

    def stats(self) -> dict[str, int]:
        """The driver's counters (WAFERQ_IOC_GET_STATS)."""
        return IOC.get_stats(self.file)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


# Where the PYNQ image keeps the overlay (waferq.hwh beside it); see zybo_z7/README.md.
DEFAULT_BITSTREAM = "/home/xilinx/waferq/waferq.bit"


def make_backend(name: str | None, model_dir=None, **opts):
    """Backend by name; ``None`` picks chardev when the device node exists, else csim."""
    device = opts.pop("device", DEFAULT_DEVICE)
    if name in (None, "", "auto"):
        name = "chardev" if os.path.exists(device) else "csim"
    if name == "chardev":
        return CharDevBackend(device, timeout=opts.get("timeout", 5.0))
    if name == "pynq":
        from zybo_z7.pynq_backend import PynqBackend

        return PynqBackend(opts.get("bitstream") or DEFAULT_BITSTREAM, timeout=opts.get("timeout", 5.0))
    if model_dir is None:
        raise ValueError(f"the {name} backend needs the model dir (its model.json has the topology)")
    if name == "csim":
        return CSimBackend(model_dir, opts.get("work_dir"))
    if name == "reference":
        return ReferenceBackend(model_dir)
    raise ValueError(f"unknown backend {name!r}: choose chardev, pynq, csim or reference")


class Accelerator:
    """Request/reply client over a backend; raises StreamError on an ERROR reply."""

    def __init__(self, backend):
        self.backend = backend
        self._tags = itertools.count(1)
        self._lock = threading.Lock()
        self._n_classes = None

    @property
    def name(self) -> str:
        return getattr(self.backend, "name", type(self.backend).__name__)

    def _call(self, opcode: int, payload=(), request=None) -> S.Message:
        """One request -> its reply; ``request(tag)`` builds the words when given."""
        tag = next(self._tags) & S.MASK32
        words = S.encode(opcode, payload, tag) if request is None else request(tag)
        with self._lock:
            reply = self.backend.transact(words)
        msg = S.raise_if_error(S.decode(reply))
        if msg.tag != tag:
            raise S.StreamError(f"reply tag {msg.tag} does not match request tag {tag}")
        return msg

    def query(self) -> dict:
        info = S.parse_query(self._call(S.OP_QUERY))
        self._n_classes = info["n_classes"]
        return info

    def load_weights(self, blob_words) -> int:
        msg = self._call(S.OP_LOAD_WEIGHTS, np.asarray(blob_words, dtype=np.uint32))
        if msg.opcode != (S.OP_LOAD_WEIGHTS | S.REPLY_BIT) or msg.payload.size != 1:
            raise S.StreamError(f"not a LOAD_WEIGHTS reply: opcode 0x{msg.opcode:02x}")
        return int(msg.payload[0])

    def infer(self, image: np.ndarray) -> tuple[int, np.ndarray]:
        """uint8 HWC image -> (class index, int32 logits)."""
        if self._n_classes is None:
            self.query()
        msg = self._call(S.OP_INFER, PX.pack_pixels(image))
        return S.parse_result(msg, self._n_classes)

    def infer_batch(self, words: np.ndarray, packing: int = S.PACK_U8):
        """One INFER_BATCH message of N images already packed as the stream
        carries them (uint32 [N][image_words]: ``PX.pack_u8``, ``PX.pack_die2``)
        -> (status [N], class [N], int32 logits [N][n_classes]); status != 0
        is that image's ERR_* code."""
        if self._n_classes is None:
            self.query()
        n = len(words)

        def request(tag):
            return S.encode_parts(S.OP_INFER_BATCH, ([S.batch_word(n, packing)], words), tag)

        msg = self._call(S.OP_INFER_BATCH, request=request)
        # A CAP_FEATURES core appends its feature words to every record; the
        # service forwards no features, so they are parsed as opaque words.
        extra = msg.payload.size // n - S.record_words(self._n_classes) if n else 0
        shape = (4 * extra, 1, 1) if extra > 0 else None
        return S.parse_batch_reply(msg, n, self._n_classes, shape)[:3]

    def close(self) -> None:
        self.backend.close()
