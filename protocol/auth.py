"""Frame authentication between host and board service: HMAC-SHA256 with a
pre-shared key, per-connection session nonces and strictly increasing counters.

Why HMAC and not mutual TLS: the host is an STM32MP1 running numpy and the
standard library only, the board side may be reimplemented in C next to the
driver (``wq_wire.h``), and a fab line has no PKI to issue, renew and revoke
certificates for a dozen boards. A pre-shared key in a 0600 file gives both
sides authenticity and integrity of every frame (weights, images, results)
with ``hmac``/``hashlib`` alone, costs one SHA-256 pass over each payload, and
does not depend on clocks (certificate validity does). What it does NOT give
is confidentiality: wafer maps and weights travel in clear, so the link must
stay on the tool's isolated segment; if the maps themselves become secret,
wrap the TCP stream in TLS in addition.

Protocol (all little-endian; sizes in ``protocol.wire``):

1. Right after connecting the client sends SESSION (unauthenticated) with
   ``client_nonce[16] || u32 key_id``.
2. The service answers SESSION_ACK with ``server_nonce[16]``, sealed with
   key ``key_id``. Both nonces form the session id, so a frame captured on
   one connection never verifies on another, and the client knows it talks
   to a board that holds the key (a fake board cannot forge results).
3. Every later frame carries the F_AUTH flag and a trailer after the payload
   ``u32 key_id, u64 counter, mac[32]`` where
   ``mac = HMAC-SHA256(key, DOMAIN || direction || session_id || header ||
   payload || key_id || counter)``. The counter of each direction must
   strictly increase, so a frame replayed on the same connection is refused.
   ``direction`` (b"C" host->board, b"S" board->host) stops a reply being
   reflected back as a request.

ERROR replies are sealed like every other frame once a session exists, so
a device on the path cannot replace results with an error of its choosing;
only a refusal of the SESSION itself (or of a frame before it) goes
unsealed, and it carries nothing but ``E_AUTH`` and a generic text: the
reason (unknown key id, bad MAC, replay) stays in the board's log, so a
prober learns nothing about the keys a board holds.

Keys: a file (or the ``WQ_KEY`` variable) with lines ``KEY_ID:HEX`` (a bare
``HEX`` is key id 1); the service accepts every listed key, the host signs
with the last one, which is how keys rotate (add the new key to the
services, then to the hosts, then drop the old one).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from protocol import wire as W

DOMAIN = b"WQAUTH1"
MIN_KEY_BYTES = 16
ENV_KEY, ENV_KEY_FILE = "WQ_KEY", "WQ_KEY_FILE"
_SESSION_REQ = struct.Struct(f"<{W.SESSION_NONCE_SIZE}sI")


class AuthError(W.WireError):
    def __init__(self, message: str):
        super().__init__(message, W.E_AUTH)


class KeyFileError(ValueError):
    """A key file or variable that cannot be used (permissions, format)."""


@dataclass
class Keyring:
    keys: dict = field(default_factory=dict)   # key id -> key bytes
    current: int = 0                           # the id this side signs with

    @classmethod
    def parse(cls, text: str, where: str) -> "Keyring":
        ring = cls()
        for n, line in enumerate(text.replace(",", "\n").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            kid, sep, hexkey = line.rpartition(":")
            try:
                kid = int(kid) if sep else 1
                key = bytes.fromhex(hexkey.strip())
            except ValueError:
                raise KeyFileError(f"{where} line {n}: expected KEY_ID:HEX or HEX") from None
            if len(key) < MIN_KEY_BYTES or not 0 <= kid <= 0xFFFFFFFF:
                raise KeyFileError(f"{where} line {n}: key must be at least {MIN_KEY_BYTES} "
                                "bytes (hex) with a 32-bit key id")
            ring.keys[kid], ring.current = key, kid
        if not ring.keys:
            raise KeyFileError(f"{where} holds no key")
        return ring

    @classmethod
    def from_file(cls, path) -> "Keyring":
        path = Path(path)
        mode = path.stat().st_mode
        # Group/other access means the key may already be known to someone else.
        if stat.S_IMODE(mode) & 0o077:
            raise KeyFileError(f"key file {path} has mode {stat.S_IMODE(mode):04o}: it must be "
                            f"readable by its owner only (chmod 600 {path})")
        return cls.parse(path.read_text(), str(path))


def resolve(key_file=None, env=None) -> Keyring | None:
    """The key to use: ``key_file``, else $WQ_KEY_FILE, else $WQ_KEY, else None (no auth)."""
    env = os.environ if env is None else env
    if key_file:
        return Keyring.from_file(key_file)
    if env.get(ENV_KEY_FILE):
        return Keyring.from_file(env[ENV_KEY_FILE])
    if env.get(ENV_KEY):
        return Keyring.parse(env[ENV_KEY], f"${ENV_KEY}")
    return None


def compute_mac(key: bytes, direction: bytes, session_id: bytes, header: bytes, payload: bytes,
                key_id: int, counter: int) -> bytes:
    h = hmac.new(key, DOMAIN + direction + session_id, hashlib.sha256)
    h.update(header)
    h.update(payload)
    h.update(struct.pack("<IQ", key_id, counter))
    return h.digest()


class Session:
    """One connection's authentication state (one per side)."""

    def __init__(self, key: bytes, key_id: int, session_id: bytes, outgoing: bytes):
        self.key, self.key_id, self.session_id = key, key_id, session_id
        self.out_dir = outgoing
        self.in_dir = b"S" if outgoing == b"C" else b"C"
        self.sent = 0       # last counter sent
        self.received = 0   # last counter accepted

    def seal(self, ftype: int, payload: bytes = b"", request_id: int = 0) -> bytes:
        self.sent += 1
        data = W.encode_frame(ftype, payload, request_id, W.F_AUTH)
        mac = compute_mac(self.key, self.out_dir, self.session_id, data[:W.HEADER_SIZE],
                          data[W.HEADER_SIZE:], self.key_id, self.sent)
        return data + W.AUTH_TRAILER.pack(self.key_id, self.sent, mac)

    def open(self, frame: W.Frame) -> W.Frame:
        """Check a received frame; raises AuthError (unsigned, wrong key, replay)."""
        if frame.auth is None:
            raise AuthError(f"unauthenticated {frame.type_name} frame: this connection "
                            "requires HMAC authentication")
        key_id, counter, mac = W.AUTH_TRAILER.unpack(frame.auth)
        if key_id != self.key_id:
            raise AuthError(f"frame signed with key id {key_id}, the session uses {self.key_id}")
        want = compute_mac(self.key, self.in_dir, self.session_id, frame.header, frame.payload,
                           key_id, counter)
        # Constant-time: a byte-by-byte compare would let a peer guess the MAC byte by byte.
        if not hmac.compare_digest(want, mac):
            raise AuthError(f"bad HMAC on {frame.type_name} frame (wrong key or altered frame)")
        if counter <= self.received:
            raise AuthError(f"replayed {frame.type_name} frame: counter {counter}, last "
                            f"accepted {self.received}")
        self.received = counter
        return frame


def session_request(key_id: int) -> tuple[bytes, bytes]:
    """(client nonce, SESSION payload)."""
    nonce = os.urandom(W.SESSION_NONCE_SIZE)
    return nonce, _SESSION_REQ.pack(nonce, key_id)


def accept_session(ring: Keyring, payload: bytes) -> tuple[Session, bytes]:
    """Service side of SESSION: (session, server nonce for the SESSION_ACK)."""
    if len(payload) != _SESSION_REQ.size:
        raise AuthError(f"SESSION payload of {len(payload)} bytes, expected {_SESSION_REQ.size}")
    client_nonce, key_id = _SESSION_REQ.unpack(payload)
    if key_id not in ring.keys:   # the service logs this; the peer gets a generic refusal
        raise AuthError(f"unknown key id {key_id}: this service holds key ids "
                        f"{sorted(ring.keys)}")
    server_nonce = os.urandom(W.SESSION_NONCE_SIZE)
    return Session(ring.keys[key_id], key_id, client_nonce + server_nonce, b"S"), server_nonce


def client_session(ring: Keyring, client_nonce: bytes, ack: W.Frame) -> Session:
    """Client side: check the SESSION_ACK and return the session."""
    if ack.type != W.T_SESSION_ACK or len(ack.payload) != W.SESSION_NONCE_SIZE:
        raise AuthError(f"expected a SESSION_ACK of {W.SESSION_NONCE_SIZE} bytes, got "
                        f"{ack.type_name} of {len(ack.payload)}")
    s = Session(ring.keys[ring.current], ring.current, client_nonce + ack.payload, b"C")
    s.open(ack)
    return s
