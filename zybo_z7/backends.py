"""Accelerator backends for the board service, chosen by name.

Every backend moves whole ``protocol.stream`` messages: ``transact(words)``
sends one request and returns one reply (uint32 words).

- ``chardev``: the waferq driver's device node on the Zybo (one message per
  write(), one reply per read()).
- ``csim``: the generated HLS core compiled as a C simulation (``hls.csim``).
- ``reference``: the Python golden model ``hls.refcore.RefCore``.

The core's topology is fixed at synthesis, so csim and reference take it from
the model dir's ``model.json``; the weights arrive later by LOAD_WEIGHTS.
Torch-free: this runs on the board.
"""
from __future__ import annotations

import errno
import itertools
import json
import os
import select
import threading
from pathlib import Path

import numpy as np

from protocol import stream as S

DEFAULT_DEVICE = "/dev/waferq0"


def load_spec(model_dir):
    from quant.spec import CNNSpec

    path = Path(model_dir) / "model.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: --model must be an export folder "
                                "(build/<model>/export)") from None
    return CNNSpec.from_dict(meta["spec"])


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
    name = "csim"

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
    name = "chardev"

    def __init__(self, device: str = DEFAULT_DEVICE, timeout: float = 5.0):
        self.device, self.timeout = device, timeout
        try:
            self.fd = os.open(device, os.O_RDWR)
        except FileNotFoundError:
            raise FileNotFoundError(f"no {device}: load the waferq driver or choose "
                                    "--backend csim") from None
        except PermissionError:
            raise PermissionError(f"{device}: permission denied (run as a member of the "
                                  "device's group, or as root)") from None

    def transact(self, words) -> np.ndarray:
        data = S.to_bytes(np.asarray(words, dtype=np.uint32))
        # The driver takes a message in one write(); a short count is a driver fault.
        n = os.write(self.fd, data)
        if n != len(data):
            raise OSError(errno.EIO, f"{self.device}: short write ({n} of {len(data)} bytes)")
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLERR)
        if not poller.poll(int(self.timeout * 1000)):
            raise TimeoutError(f"{self.device}: no reply within {self.timeout} s")
        reply = os.read(self.fd, 4 * S.MAX_MESSAGE_WORDS)
        return S.from_bytes(reply)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def make_backend(name: str | None, model_dir=None, **opts):
    """Backend by name; ``None`` picks chardev when the device node exists, else csim."""
    device = opts.pop("device", DEFAULT_DEVICE)
    if name in (None, "", "auto"):
        name = "chardev" if os.path.exists(device) else "csim"
    if name == "chardev":
        return CharDevBackend(device, timeout=opts.get("timeout", 5.0))
    if model_dir is None:
        raise ValueError(f"the {name} backend needs the model dir (its model.json has the topology)")
    if name == "csim":
        return CSimBackend(model_dir, opts.get("work_dir"))
    if name == "reference":
        return ReferenceBackend(model_dir)
    raise ValueError(f"unknown backend {name!r}: choose chardev, csim or reference")


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

    def _call(self, opcode: int, payload=()) -> S.Message:
        tag = next(self._tags) & S.MASK32
        with self._lock:
            reply = self.backend.transact(S.encode(opcode, payload, tag))
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
        msg = self._call(S.OP_INFER, S.pack_pixels(image))
        return S.parse_result(msg, self._n_classes)

    def close(self) -> None:
        self.backend.close()
