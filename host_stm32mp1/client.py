"""TCP client of the board service (``protocol.wire``). Numpy only.

With a key (``key=`` or $WQ_KEY_FILE / $WQ_KEY, see ``protocol.auth``) every
connection starts with the SESSION handshake, every request is sealed with
an HMAC and every reply, ERROR included, must carry a valid one (only the
handshake's refusal comes unsealed). A client with a key never falls back to
unauthenticated frames (no downgrade). Every RESULTS carries the weights
checksum the board ran the batch with; after ``ensure_weights`` a batch run
with other weights (another host reloaded the board) is an error.
"""
from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path

import numpy as np

from contract import export_dir
from protocol import auth as A
from protocol import batch as WB
from protocol import pixels as PX
from protocol import results as R
from protocol import stream as S
from protocol import wire as W

FROM_ENV = "env"   # key=FROM_ENV: $WQ_KEY_FILE, then $WQ_KEY, else no authentication
DEFAULT_BATCH = 64      # maps a request to a board whose core has no INFER_BATCH
# Auto batches stop here even when the core takes more: past it the CPU cost a
# map hardly falls (bench/end_to_end), while a batch's latency and the time it
# holds the board's lock keep growing.
AUTO_BATCH_CAP = 256
# A board whose backend is the C simulation of the core (INFO backend "csim",
# the service's default where there is no FPGA) runs a few images a second:
# AUTO_BATCH_CAP images would take over a minute and outlast the default
# --timeout. Its auto batches hold CSIM_BATCH images, a few seconds each.
CSIM_BATCH = 8


def auto_batch(info: dict, cap: int = AUTO_BATCH_CAP) -> int:
    """Maps a request for a board with this INFO: whole core messages of its
    max_batch, up to ``cap`` (at least one message); at most CSIM_BATCH on
    the C simulation."""
    core = int(info.get("max_batch") or 0)
    if info.get("backend") == W.BACKEND_CSIM:
        cap = min(cap, CSIM_BATCH)
    if core <= 0:
        return min(DEFAULT_BATCH, cap, W.MAX_BATCH_IMAGES)
    cap = min(cap, W.MAX_BATCH_IMAGES)
    return cap if core >= cap else (cap // core) * core


class BoardError(Exception):
    """The board answered with an ERROR frame, or could not be reached."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code

    @property
    def retryable(self) -> bool:
        """Connection trouble (another try, maybe on another board, may work); a
        board that answered ERROR would answer the same again."""
        return self.code is None


class BoardTimeout(BoardError):
    """No whole reply within the request's timeout (retryable: another board,
    or the same one later, may answer)."""


def parse_address(text: str, default_port: int = 5150) -> tuple[str, int]:
    if "," in text:
        raise ValueError(f"{text!r}: this command drives one board (only classify takes several)")
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bad board address {text!r}: expected HOST:PORT") from None
    if not 1 <= number <= 65535 or not host.strip("[]"):
        raise ValueError(f"bad board address {text!r}: the port must be 1..65535 after a host name")
    return host.strip("[]"), number


def parse_boards(values, default_port: int = 5150) -> list[tuple[str, int]]:
    """``--board`` values, each one address or a comma list -> unique (host, port)s."""
    if isinstance(values, str):
        values = [values]
    out = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                addr = parse_address(part.strip(), default_port)
                if addr not in out:
                    out.append(addr)
    if not out:
        raise ValueError("no board address given")
    return out


def _keyring(key):
    if key == FROM_ENV:
        return A.resolve()
    if isinstance(key, (str, Path)):
        return A.Keyring.from_file(key)
    return key


class BoardClient:
    def __init__(self, host: str, port: int, timeout: float = 30.0, connect_timeout: float = 5.0,
                 key=FROM_ENV, on_connect=None, probe_timeout: float = 5.0):
        self.host, self.port = host, port
        self.timeout, self.connect_timeout = timeout, connect_timeout
        # SESSION and the first HELLO after a connect are tiny and answered at once by
        # a live service: waiting the batch timeout on them makes a hung board cost minutes.
        self.probe_timeout = min(probe_timeout, timeout)
        self.sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self.keyring: A.Keyring | None = _keyring(key)
        self.session: A.Session | None = None
        # Called after every (re)connect, before any request: a restarted board
        # must get its weights back before it is sent work.
        self.on_connect = on_connect
        self.connects = 0
        self._connecting = False
        self.expected_checksum: int | None = None   # set by ensure_weights
        self.info: dict | None = None               # the last INFO (HELLO) of the board

    @property
    def authenticated(self) -> bool:
        return self.keyring is not None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> None:
        self.close()
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            raise BoardError(f"cannot connect to the board at {self.host}:{self.port}: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1
        try:
            if self.keyring is not None:
                self._handshake()
            if self.on_connect is not None:
                # Requests made while connecting must not reconnect: a peer that
                # accepts and then drops every connection would recurse forever.
                self._connecting = True
                self.on_connect(self)
        except BaseException:
            self.close()
            raise
        finally:
            self._connecting = False

    def _handshake(self) -> None:
        nonce, payload = A.session_request(self.keyring.current)
        ack = self._exchange(W.T_SESSION, payload, raw=True, timeout=self.probe_timeout)
        if ack.type == W.T_ERROR:
            code, msg = W.decode_error(ack.payload)
            raise BoardError(f"board refused the session: {W.STATUS_NAMES.get(code, code)}: {msg}",
                             code)
        try:
            self.session = A.client_session(self.keyring, nonce, ack)
        except A.AuthError as e:
            raise BoardError(f"board at {self.name} failed authentication (wrong key?): {e}",
                             W.E_AUTH) from e

    def close(self) -> None:
        self.session = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _silent(self, what: str, e) -> str:
        return (f"board at {self.name} accepted the connection but did not answer {what} within "
                f"{self.probe_timeout:g} s (--probe-timeout): {e}")

    def _exchange(self, ftype: int, payload: bytes, raw: bool = False,
                  timeout: float | None = None) -> W.Frame:
        """``timeout``: a probe's (SESSION, the HELLO on a fresh connection); a
        probe that times out is a BoardError naming the silent board."""
        if self.sock is None:
            if self._connecting:
                raise BoardError(f"connection to {self.host}:{self.port} lost while connecting")
            self.connect()
            if timeout is None and ftype == W.T_HELLO:
                timeout = self.probe_timeout    # the first request of a new connection
        probe = timeout is not None
        rid = next(self._ids) & 0xFFFFFFFF
        if self.session is not None and not raw:
            self.sock.sendall(self.session.seal(ftype, payload, rid))
        else:
            self.sock.sendall(W.encode_frame(ftype, payload, rid))
        # One deadline for the whole reply: a trickling peer cannot stretch it.
        timeout = self.timeout if timeout is None else timeout
        try:
            reply = W.read_frame(self.sock, timeout=timeout, deadline=time.monotonic() + timeout)
        except W.WireTimeout as e:
            if not probe:
                raise
            self.close()
            raise BoardError(self._silent(W._TYPE_NAMES.get(ftype, "a probe"), e)) from e
        if reply.request_id != rid:
            raise W.WireError(f"reply to request {reply.request_id}, expected {rid}")
        if self.keyring is not None and not raw:
            try:
                self.session.open(reply)
            except A.AuthError as e:
                raise BoardError(f"reply from {self.name} failed authentication: {e}",
                                 W.E_AUTH) from e
        return reply

    def request(self, ftype: int, payload: bytes = b"", expect: int | None = None,
                timeout: float | None = None) -> W.Frame:
        """One request/reply; reconnects once if the connection broke (every
        request is idempotent, so resending is safe). ``timeout``: a probe's."""
        for attempt in (0, 1):
            try:
                reply = self._exchange(ftype, payload, timeout=timeout)
                break
            except (W.ConnectionClosed, ConnectionError, BrokenPipeError) as e:
                self.close()
                if self._connecting:
                    raise BoardError(f"connection to {self.host}:{self.port} lost while "
                                     f"connecting: {e}") from e
                if attempt:
                    raise BoardError(f"connection to {self.host}:{self.port} lost twice: {e}") from e
            except W.WireTimeout as e:
                self.close()
                raise BoardTimeout(f"board at {self.host}:{self.port} did not answer within "
                                   f"{self.timeout if timeout is None else timeout:g} s (--timeout): {e}") from e
            except W.WireError as e:
                self.close()
                raise BoardError(f"bad reply from the board: {e}") from e
            except OSError as e:
                self.close()
                raise BoardError(f"connection to {self.host}:{self.port} failed: {e}") from e
        if reply.type == W.T_ERROR:
            code, msg = W.decode_error(reply.payload)
            raise BoardError(f"board error {W.STATUS_NAMES.get(code, code)}: {msg}", code)
        if expect is not None and reply.type != expect:
            raise BoardError(f"expected a {W._TYPE_NAMES.get(expect)} reply, got {reply.type_name}")
        return reply

    # --- requests ---------------------------------------------------------
    def query(self, timeout: float | None = None) -> dict:
        self.info = W.decode_info(self.request(W.T_HELLO, b"", W.T_INFO, timeout).payload)
        return self.info

    def load_weights(self, blob: bytes) -> int:
        reply = self.request(W.T_LOAD_WEIGHTS, blob, W.T_WEIGHTS_ACK)
        if len(reply.payload) != 4:
            raise BoardError(f"WEIGHTS_ACK of {len(reply.payload)} bytes, expected 4")
        return int(np.frombuffer(reply.payload, "<u4")[0])

    def infer_batch(self, images: np.ndarray, ids):
        """One INFER_BATCH -> ``protocol.results.ResultBatch``: one record per
        image in request order, as arrays; its items are the record dicts."""
        try:
            reply = self.request(W.T_INFER_BATCH, self._batch_payload(images, ids), W.T_RESULTS)
        except BoardTimeout as e:
            # The board may simply be slower than the request is long: say so
            # and what to change, rather than leave a bare timeout.
            backend = (self.info or {}).get("backend", "unknown")
            slow = " (the C simulation of the core, a few images a second)" if backend == W.BACKEND_CSIM else ""
            raise BoardTimeout(f"{e}; the request held {len(images)} images and the board's backend is "
                               f"{backend}{slow}: a smaller --batch or a longer --timeout lets a slow "
                               "backend answer") from e
        res = R.decode(reply.payload)
        if not np.array_equal(res.ids, np.asarray(ids, dtype=np.uint64).ravel()):
            raise BoardError(f"board answered {len(res)} records that do not match the "
                             f"{len(ids)} images sent")
        ran, want = res.weights_checksum, self.expected_checksum
        if want is not None and len(res) and res.ok.any() and ran != want:
            raise BoardError(f"board {self.name} ran this batch with weights checksum "
                             f"0x{ran:08x}, not the model's 0x{want:08x}: another host loaded "
                             "other weights; its results are discarded", W.E_BAD_WEIGHTS)
        return res

    def _batch_payload(self, images: np.ndarray, ids) -> bytes:
        """Wafer maps as 2-bit die states (a quarter of the bytes, and the core
        takes them as they are) when the board's core takes PACK_DIE2 and every
        pixel is a die category code; else bytes."""
        images = np.asarray(images)
        info = self.info or {}
        if images.ndim == 4 and images.shape[3] == 1 and \
                (info.get("packings", 0) >> S.PACK_DIE2) & 1:
            words = PX.die2_words_from_pixels(images)
            if words is not None:
                return WB.encode_batch_words(words, ids, images.shape[1:], S.PACK_DIE2)
        return WB.encode_batch(images, ids)

    def batch_size(self, info: dict | None = None, cap: int = AUTO_BATCH_CAP) -> int:
        """Maps a request for this board: its core's max_batch (QUERY, via INFO),
        at most ``cap``; DEFAULT_BATCH for a core without INFER_BATCH."""
        info = self.query() if info is None else info
        return auto_batch(info, cap)

    def ensure_weights(self, model_dir) -> tuple[dict, bool]:
        """Make the board run this model's weights; returns (board info, sent?).

        The blob is sent only when the board has other weights (or none).
        """
        model_dir = Path(model_dir)
        ex = export_dir.read(model_dir)
        # A probe right after connecting; on a live connection HELLO may wait for
        # another host's batch (the board lock), so it gets the full timeout.
        info = self.query(self.probe_timeout if self._connecting else None)
        if info["topology_hash"] != ex.topology_hash:
            raise BoardError(
                f"the board's core is synthesized for topology 0x{info['topology_hash']:08x}, "
                f"{model_dir}/model.json is topology 0x{ex.topology_hash:08x}: the core "
                "cannot run another topology; use the matching model or rebuild the bitstream",
                W.E_TOPOLOGY)
        want = ex.weights_checksum
        self.expected_checksum = want
        if info["weights_loaded"] and info["weights_checksum"] == want:
            return info, False
        blob = ex.weights_bin()
        got = self.load_weights(blob)
        if got != want:
            raise BoardError(f"board reports weights checksum 0x{got:08x} after loading, "
                             f"model.json says 0x{want:08x}", W.E_BAD_WEIGHTS)
        return self.query(), True
