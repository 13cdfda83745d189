"""Board-side TCP service: speaks ``protocol.wire`` to hosts, ``protocol.stream``
to the accelerator.

    python -m zybo_z7.service --model build/X/export [--backend csim] \
        [--listen ADDR] [--port 5150] [--port-file PATH] (--key-file PATH | --insecure)

One thread per client; the accelerator is a single device, so every exchange
with it holds one lock (a batch is never interleaved with another client's
LOAD_WEIGHTS). Every image of an INFER_BATCH gets exactly one result record.
The weights checksum in RESULTS comes from the core's QUERY reply or the
service's own LOAD_WEIGHTS reply, kept between batches while nothing could
have changed the core's weights (``Board.infer_batch``).
A malformed frame gets an ERROR frame and the connection is closed, since the
byte stream can no longer be trusted to be at a frame boundary.

With a key (``--key-file``, mode 0600, or $WQ_KEY_FILE / $WQ_KEY) every
connection must open with SESSION and every later frame must carry a valid,
fresh HMAC (``protocol.auth``); anything else is logged at ERROR, answered
with ERROR E_AUTH and a generic text (the detail stays in this log) and the
connection closed. Without a key the service runs only with --insecure, and
then listens on 127.0.0.1 unless told otherwise: for a bench, never for
production.

The network side (connection caps, deadlines, authentication) is in
``zybo_z7.server``.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from protocol import auth as A
from protocol import pixels as PX
from protocol import results as R
from protocol import stream as S
from contract import export_dir
from protocol import wire as W
from contract import blob
from zybo_z7.backends import Accelerator, load_spec, make_backend
from zybo_z7.server import INTERNAL, Handler, Limits, Service  # noqa: F401 (re-exported)

log = logging.getLogger("waferq.service")


class Board:
    """The accelerator plus what the service knows about it."""

    def __init__(self, accel: Accelerator, classes=(), layers=None):
        self.accel = accel
        self.classes = tuple(classes)
        self.layers = layers            # for the blob's range checks (contract.blob)
        self.lock = threading.Lock()
        self.weight_loads = 0
        self.info = accel.query()
        # The core's state as the service last read it (a batch's QUERY, or its
        # own LOAD_WEIGHTS reply), None when it must be read again; under lock.
        # The service is the device's only opener (the driver takes one; the
        # PYNQ, C-sim and reference cores are the service's own), so the
        # weights change only through this object: its LOAD_WEIGHTS, or a loss
        # (soft reset, the driver's or the PYNQ backend's recovery after a
        # timeout or a DMA error, a reopen), which every backend reports as an
        # exception or an ERROR reply, or which the next INFER's NO_WEIGHTS
        # reply shows. Each of those sets it to None. A QUERY every batch
        # instead is a second driver write a batch: about 1 of 3.9 us a map,
        # host and service, at batch 256 (README, end-to-end CPU per map).
        self._core: dict | None = None

    @property
    def image_bytes(self) -> int:
        return self.info["in_height"] * self.info["in_width"] * self.info["in_channels"]

    def request_limits(self) -> dict:
        """wire.FRAME_LIMITS narrowed to this model: the requests only, and an
        INFER_BATCH of at most MAX_BATCH_IMAGES of the model's images."""
        batch = 12 + W.MAX_BATCH_IMAGES * (8 + self.image_bytes)
        return {W.T_HELLO: W.FRAME_LIMITS[W.T_HELLO], W.T_SESSION: W.FRAME_LIMITS[W.T_SESSION],
                W.T_LOAD_WEIGHTS: W.FRAME_LIMITS[W.T_LOAD_WEIGHTS],
                W.T_INFER_BATCH: (12, min(batch, W.MAX_PAYLOAD))}

    def hello(self) -> dict:
        with self.lock:
            try:
                info = self.accel.query()
            except BaseException:
                self._core = None   # a failed exchange may have reset the core
                raise
        self.info = info
        return dict(info, backend=self.accel.name, classes=self.classes,
                    weight_loads=self.weight_loads)

    def check_blob(self, data: bytes) -> np.ndarray:
        """The blob's length and parameter ranges, before the board is locked."""
        need = int(self.info["blob_words"]) * 4
        if len(data) != need:
            raise W.WireError(f"weight blob of {len(data)} bytes, the core takes {need}",
                              W.E_BAD_WEIGHTS)
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        if self.layers is not None:
            try:
                blob.check_params(self.layers, words)
            except blob.BlobError as e:
                raise W.WireError(str(e), W.E_BAD_WEIGHTS) from e
        return words

    def load_weights(self, data: bytes) -> int:
        words = self.check_blob(data)
        with self.lock:
            # A load that fails can leave the core with none (a blob cut short,
            # a bad checksum, a reset after a timeout): read it again.
            self._core = None
            try:
                checksum = self.accel.load_weights(words)
            except S.StreamError as e:
                raise W.WireError(f"accelerator rejected the weights: {e}", W.E_BAD_WEIGHTS) from e
            # The reply's checksum is the one QUERY reports from now on; the
            # other fields are fixed at synthesis.
            self._core = dict(self.info, weights_loaded=1, weights_checksum=checksum)
            self.weight_loads += 1
        log.info("loaded weights: %d words, checksum 0x%08x", words.size, checksum)
        return checksum

    def infer_batch(self, ids: np.ndarray, images: np.ndarray, packing: int = S.PACK_U8,
                    shape=None) -> tuple[R.ResultBatch, int]:
        """(one record per image, the weights checksum the batch ran with).

        ``images``: uint8 pixels [N][H][W][C] (PACK_U8), or the stream's words
        of die states [N][image_words] (PACK_DIE2, as the wire brings them;
        ``shape`` says H, W, C). A core with CAP_BATCH gets INFER_BATCH
        messages of at most its max_batch, one backend transaction (one driver
        write, one DMA transfer) each, packed and unpacked in numpy; U8 maps
        whose pixels are all die categories are packed to die states here. An
        older core gets one INFER an image. A failed message turns exactly its
        own images into error records; the other messages still run."""
        res = R.ResultBatch.empty(ids, self.info["n_classes"])
        shape = tuple(images.shape[1:]) if shape is None else tuple(shape)
        want = (self.info["in_height"], self.info["in_width"], self.info["in_channels"])
        if shape != want:   # once per batch: every image has the batch's shape
            res.fail(slice(None), W.E_BAD_SHAPE, f"image is {'x'.join(map(str, shape))}, the "
                     f"model takes {'x'.join(map(str, want))}")
            return res, 0
        # Packed before the lock (the core's packings are fixed at synthesis):
        # another client's batch can use the core meanwhile.
        words, packing = self._words(images, packing)
        with self.lock:
            # Under the lock: no LOAD_WEIGHTS of another client can come between
            # this checksum and the images. A QUERY only when the state is not
            # known (start-up, or trouble since the last read: see __init__).
            info = self._core
            if info is None:
                info = self._core = self.accel.query()
            checksum = info["weights_checksum"] if info["weights_loaded"] else 0
            if info["capabilities"] & S.CAP_BATCH and (info["packings"] >> packing) & 1 \
                    and info["max_batch"] > 0:
                step = self._message_images(info, words.shape[1])
                for s in range(0, len(res), step):
                    self._infer_part(slice(s, min(s + step, len(res))), words, packing, res)
            else:
                self._infer_each(words, packing, shape, res)
        if (res.status == W.E_NO_WEIGHTS).any() and not (res.status == W.OK).any():
            # The core lost its weights since the state was read and ran none
            # of the batch: say what a QUERY now would, not the lost checksum.
            checksum = 0
        res.weights_checksum = checksum
        return res, checksum

    def _words(self, images: np.ndarray, packing: int) -> tuple[np.ndarray, int]:
        """The images as stream words [N][image_words] and their packing: die
        states (PACK_DIE2) when the core takes them and every pixel of a U8
        batch is a die category code."""
        if packing != S.PACK_U8:
            return images, packing
        if self.info["in_channels"] == 1 and (self.info.get("packings", 0) >> S.PACK_DIE2) & 1:
            words = PX.die2_words_from_pixels(images)
            if words is not None:
                return words, S.PACK_DIE2
        return PX.pack_u8(images), S.PACK_U8

    def _message_images(self, info: dict, image_words: int) -> int:
        """Images in one INFER_BATCH message: the core's max_batch, fewer when
        the backend bounds a request's bytes (``max_request_bytes``)."""
        limit = getattr(self.accel.backend, "max_request_bytes", None)
        if not limit:
            return info["max_batch"]
        frame = 4 * (S.HEADER_WORDS + S.TRAILER_WORDS + 1)
        return max(1, min(info["max_batch"], (limit - frame) // (4 * image_words)))

    def _infer_part(self, part: slice, words: np.ndarray, packing: int, res: R.ResultBatch) -> None:
        """One INFER_BATCH message for the images ``part``."""
        try:
            status, classes, logits = self.accel.infer_batch(words[part], packing)
        except Exception as e:  # every image of this message still gets its record
            res.fail(part, *self._failure(e, f"images {part.start}..{part.stop - 1}"))
            return
        res.classes[part], res.logits[part] = classes, logits
        bad = np.flatnonzero(status)
        for code in np.unique(status[bad]).tolist():   # per-image errors: rare
            # a die state of 3, or a code above the model's input range, is the
            # sender's fault; anything else the core's
            wire = W.E_BAD_REQUEST if code in (S.ERR_BAD_PIXEL, S.ERR_BAD_INPUT) else W.E_ACCELERATOR
            res.fail(part.start + bad[status[bad] == code], wire,
                     f"the accelerator refused the image: {S.ERRORS.get(code, code)}")

    def _infer_each(self, words: np.ndarray, packing: int, shape, res: R.ResultBatch) -> None:
        """A core without INFER_BATCH (or without this packing): one INFER an image."""
        n_pix = int(np.prod(shape))
        if packing == S.PACK_U8:
            flat = np.ascontiguousarray(words, dtype="<u4").view(np.uint8)[:, :n_pix]
            pixels, bad = flat.reshape(len(res), *shape), np.zeros(len(res), dtype=bool)
        else:
            states = PX.unpack_die2(words, n_pix)
            bad = (states == 3).any(axis=1)
            pixels = PX.pixels_from_die_states(states).reshape(len(res), *shape)
        for i in np.flatnonzero(~bad).tolist():
            self._infer_one(i, pixels[i], res)
        if bad.any():
            res.fail(bad, W.E_BAD_REQUEST,
                     f"the accelerator refused the image: {S.ERRORS[S.ERR_BAD_PIXEL]}")

    def _infer_one(self, i: int, image: np.ndarray, res: R.ResultBatch) -> None:
        try:
            res.classes[i], res.logits[i] = self.accel.infer(image)
        except Exception as e:
            res.fail(i, *self._failure(e, f"image {int(res.ids[i])}"))

    def _failure(self, e: Exception, what: str) -> tuple[int, str]:
        """(wire status, text) for the images of a failed accelerator exchange.
        An ERROR reply or a backend failure may have reset the core: its state
        is read again before the next batch."""
        self._core = None
        if isinstance(e, S.StreamError):
            if e.code == S.ERR_NO_WEIGHTS:
                return W.E_NO_WEIGHTS, "no weights loaded: send LOAD_WEIGHTS first"
            if e.code == S.ERR_BAD_INPUT:
                return W.E_BAD_REQUEST, f"the accelerator refused the image: {S.ERRORS[e.code]}"
            log.error("accelerator error on %s: %s", what, e)
            return W.E_ACCELERATOR, "the accelerator refused the image"
        log.error("backend failed on %s", what, exc_info=e)
        return W.E_INTERNAL, INTERNAL


def _classes(model_dir) -> tuple[str, ...]:
    return tuple(export_dir.read(model_dir).spec_dict.get("classes", ()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m zybo_z7.service",
                                description="waferq board service: TCP front end of the accelerator")
    p.add_argument("--model", required=True, help="export folder with model.json (topology, class names)")
    p.add_argument("--backend", default=None, choices=("chardev", "pynq", "csim", "reference"),
                   help="accelerator backend (default: chardev if /dev/waferq0 exists, else csim)")
    p.add_argument("--device", default="/dev/waferq0", help="device node for --backend chardev")
    p.add_argument("--bitstream", default=None,
                   help="overlay .bit (with its .hwh beside it) for --backend pynq")
    p.add_argument("--work-dir", default=None, help="csim build folder (default: next to --model)")
    p.add_argument("--host", "--listen", dest="host", default=None, metavar="ADDR",
                   help="address to listen on (default: 0.0.0.0 with a key, 127.0.0.1 "
                        "without one)")
    p.add_argument("--port", type=int, default=5150, help="TCP port, 0 picks a free one")
    p.add_argument("--port-file", default=None, help="write the chosen port here once listening")
    p.add_argument("--key-file", default=None,
                   help="pre-shared HMAC key(s), mode 0600, lines KEY_ID:HEX (default: "
                        "$WQ_KEY_FILE, then $WQ_KEY)")
    p.add_argument("--insecure", action="store_true",
                   help="run without a key: frames are NOT authenticated, and the service "
                        "listens on 127.0.0.1 unless --listen says otherwise (bench use only; "
                        "also $WQ_INSECURE=1)")
    d = Limits()
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="connections served at once (default %(default)s)")
    p.add_argument("--max-per-peer", type=int, default=d.max_per_peer,
                   help="connections from one address (default %(default)s)")
    p.add_argument("--handshake-timeout", type=float, default=d.handshake_timeout,
                   help="seconds from connect to SESSION (default %(default)s)")
    p.add_argument("--frame-timeout", type=float, default=d.frame_timeout,
                   help="seconds from a frame's first byte to its last (default %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout,
                   help="seconds a connection may wait between frames (default %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("max_connections", "max_per_peer", "handshake_timeout", "frame_timeout",
                 "idle_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        keyring = A.resolve(args.key_file)
    except (OSError, A.KeyFileError) as e:
        log.error("key: %s", e)
        return 2
    if keyring is None:
        if not (args.insecure or os.environ.get("WQ_INSECURE") == "1"):
            log.error("no key: give --key-file (or $WQ_KEY_FILE / $WQ_KEY), or --insecure to "
                      "run unauthenticated on a bench")
            return 2
        log.warning("--insecure: frames are NOT authenticated (never on a production line)")
    host = args.host or ("0.0.0.0" if keyring is not None else "127.0.0.1")
    limits = Limits(args.max_connections, args.max_per_peer, args.handshake_timeout,
                    args.frame_timeout, args.idle_timeout)
    try:
        backend = make_backend(args.backend, args.model, device=args.device, work_dir=args.work_dir,
                               bitstream=args.bitstream)
        board = Board(Accelerator(backend), _classes(args.model), load_spec(args.model).layers())
        server = Service((host, args.port), board, keyring, limits)
    except (OSError, RuntimeError, ValueError, KeyError, S.StreamError) as e:
        log.error("%s", e)
        return 2
    host, port = server.server_address[:2]
    log.info("listening on %s:%d, backend %s, topology 0x%08x", host, port, board.accel.name,
             board.info["topology_hash"])
    if args.port_file:
        # Rename so a watcher never reads a half-written port number.
        tmp = Path(args.port_file + ".tmp")
        tmp.write_text(f"{port}\n")
        os.replace(tmp, args.port_file)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    while not stop.wait(0.5):
        pass
    server.stopping.set()
    server.shutdown()
    server.server_close()
    board.accel.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
