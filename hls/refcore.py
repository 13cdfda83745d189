"""Golden model of the accelerator core's message handling, in Python.

The generated C++ core must give the same reply words for every input,
malformed ones included; ``tests/test_hls_csim.py`` checks that. The board
service's ``reference`` backend is this class.

Checks, in the order a streaming core can make them (the first that fails
decides the error reply):

1. fewer than 4 words before TLAST            -> BAD_LENGTH, detail = words seen
2. magic                                       -> BAD_MAGIC, detail = magic seen
3. version                                     -> BAD_VERSION, detail = version seen
4. opcode is a request (QUERY/LOAD/INFER)      -> UNKNOWN_OPCODE, detail = opcode
5. payload words seen == length field          -> BAD_LENGTH, detail = words seen
6. length field == what the opcode needs       -> BAD_LENGTH, detail = length field
7. checksum                                    -> BAD_CHECKSUM, detail = 0
8. INFER with no weights loaded                -> NO_WEIGHTS, detail = 0
9. INFER image code above 2**in_bits - 1       -> BAD_INPUT, detail = its HWC index
   (``hls.inputs``; only an imported model's in_bits < 8 can fail it)

INFER_BATCH puts its own checks in place of 6 (``protocol/stream.py``):
length 0 -> BAD_LENGTH (detail 0); packing unknown or not taken (bits
[31:16] of word 0 not a packing of ``packings``) -> BAD_PACKING (detail word0
>> 16); n == 0 or n > max_batch -> BAD_BATCH (detail n); length != 1 + n *
image_words -> BAD_LENGTH (detail length). After 7 and 8 every image gets a
record: a PACK_DIE2 image with a die state of 3 (padding excluded) gets
BAD_PIXEL, the others their class and logits.

Side effect: a LOAD_WEIGHTS whose header passes 2-4 and whose length field is
right is written into the weight memory as it streams in. If it then fails 5
or 7, the core is left with no weights (``weights_loaded = 0``), since a
half-written memory must never be used. Every other failure leaves the loaded
weights as they were. (The C++ core clears ``weights_loaded`` as soon as such a
load's length word is in, so a load cut by an abort, which never reaches TLAST,
leaves no weights either; the CSR soft reset also clears it, ``#pragma HLS
reset``. Neither is visible to whole messages, which are all this model sees.)
"""
from __future__ import annotations

import numpy as np

from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import IntModel
from contract.spec import CNNSpec, input_bits, input_shape
from hls import batch
from hls.gen_config import CORE_VERSION
from hls.inputs import code_max, first_bad_code


class RefCore:
    def __init__(self, spec: CNNSpec):
        self.spec = spec
        self.layers = spec.layers()
        self.model = IntModel(spec, {})
        self.blob_words = blob.blob_words(self.layers)
        h, w, c = input_shape(spec)
        self.in_shape = (h, w, c)
        self.infer_words = S.infer_words(h * w * c)
        self.n_pixels = h * w * c
        self.max_batch = batch.max_batch(spec.n_classes, 0, self.n_pixels)
        self.packings = batch.packings(c, input_bits(spec))
        self.weights_loaded = False
        self.weights_checksum = 0

    def _error(self, tag: int, code: int, detail: int) -> np.ndarray:
        return S.encode(S.OP_ERROR, [code, detail & S.MASK32], tag)

    def query_payload(self) -> list[int]:
        h, w, c = self.in_shape
        values = dict(topology_hash=self.model.topology_hash, core_version=CORE_VERSION,
                      capabilities=S.CAP_RUNTIME_WEIGHTS | S.CAP_LOGITS | S.CAP_BATCH,
                      weights_loaded=int(self.weights_loaded), in_height=h, in_width=w,
                      in_channels=c, n_classes=self.spec.n_classes, blob_words=self.blob_words,
                      weights_checksum=self.weights_checksum, packings=self.packings,
                      max_batch=self.max_batch)
        return [values[f] for f in S.QUERY_FIELDS]

    def handle(self, words) -> np.ndarray:
        """One request (every word up to and including TLAST) -> one reply."""
        words = np.asarray(words, dtype=np.uint32).ravel()
        n = int(words.size)
        tag = int(words[2]) if n > 2 else 0
        if n < S.HEADER_WORDS + S.TRAILER_WORDS:
            return self._error(tag, S.ERR_BAD_LENGTH, n)
        head, length = int(words[0]), int(words[1])
        if head >> 16 != S.MAGIC:
            return self._error(tag, S.ERR_BAD_MAGIC, head >> 16)
        if (head >> 8) & 0xFF != S.VERSION:
            return self._error(tag, S.ERR_BAD_VERSION, (head >> 8) & 0xFF)
        op = head & 0xFF
        need = {S.OP_QUERY: 0, S.OP_LOAD_WEIGHTS: self.blob_words, S.OP_INFER: self.infer_words,
                S.OP_INFER_BATCH: None}
        if op not in need:
            return self._error(tag, S.ERR_UNKNOWN_OPCODE, op)
        payload = words[S.HEADER_WORDS:-1]
        writes_weights = op == S.OP_LOAD_WEIGHTS and length == need[op]
        if payload.size != length:
            if writes_weights:
                self._invalidate()
            return self._error(tag, S.ERR_BAD_LENGTH, n)
        if op == S.OP_INFER_BATCH:
            bad = self._batch_header_error(payload, length)
            if bad is not None:
                return self._error(tag, *bad)
        elif length != need[op]:
            return self._error(tag, S.ERR_BAD_LENGTH, length)
        if S.checksum(words[:-1]) != int(words[-1]):
            if writes_weights:
                self._invalidate()
            return self._error(tag, S.ERR_BAD_CHECKSUM, 0)
        if op == S.OP_QUERY:
            return S.encode(S.OP_QUERY | S.REPLY_BIT, self.query_payload(), tag)
        if op == S.OP_LOAD_WEIGHTS:
            self.model.weights = blob.unpack(self.layers, payload)
            self.weights_loaded = True
            self.weights_checksum = S.checksum(payload)
            return S.encode(S.OP_LOAD_WEIGHTS | S.REPLY_BIT, [self.weights_checksum], tag)
        if not self.weights_loaded:
            return self._error(tag, S.ERR_NO_WEIGHTS, 0)
        if op == S.OP_INFER_BATCH:
            return S.encode(S.OP_INFER_BATCH | S.REPLY_BIT, self._batch_records(payload), tag)
        n_pix = int(np.prod(self.in_shape))
        pixels = payload.astype("<u4").view(np.uint8)[:n_pix].reshape(self.in_shape)
        bad = first_bad_code(pixels, self.spec)
        if bad is not None:
            return self._error(tag, S.ERR_BAD_INPUT, bad)
        cls, logits = self.model.classify(pixels[None])
        out = [int(cls[0])] + [int(v) & S.MASK32 for v in logits[0]]
        return S.encode(S.OP_INFER | S.REPLY_BIT, out, tag)

    def _batch_header_error(self, payload: np.ndarray, length: int) -> tuple[int, int] | None:
        """The INFER_BATCH checks that replace check 6: (code, detail) or None."""
        if length == 0:
            return S.ERR_BAD_LENGTH, 0
        word0 = int(payload[0])
        packing, n = word0 >> 16, word0 & 0xFFFF
        if packing >= 32 or not (self.packings >> packing) & 1:
            return S.ERR_BAD_PACKING, packing
        if n == 0 or n > self.max_batch:
            return S.ERR_BAD_BATCH, n
        if length != 1 + n * S.image_words(self.n_pixels, packing):
            return S.ERR_BAD_LENGTH, length
        return None

    def _batch_records(self, payload: np.ndarray) -> np.ndarray:
        """A checked INFER_BATCH payload -> the reply's records, flat."""
        word0 = int(payload[0])
        packing, n = word0 >> 16, word0 & 0xFFFF
        images = payload[1:].reshape(n, S.image_words(self.n_pixels, packing))
        if packing == S.PACK_DIE2:
            states = PX.unpack_die2(images, self.n_pixels)
            bad = (states == 3).any(axis=1)
            pixels = PX.pixels_from_die_states(states)
        else:
            pixels = np.ascontiguousarray(images, dtype="<u4").view(np.uint8)[:, :self.n_pixels]
            bad = np.zeros(n, dtype=bool)
        # A code above the model's input range (an imported graph's in_bits < 8)
        bad_input = ~bad & (pixels > code_max(self.spec)).any(axis=1)
        records = np.zeros((n, S.record_words(self.spec.n_classes)), dtype=np.uint32)
        good = ~bad & ~bad_input
        if good.any():
            cls, logits = self.model.classify(pixels[good].reshape(-1, *self.in_shape))
            records[good, 1] = cls
            records[good, 2:] = (logits.astype(np.int64) & S.MASK32).astype(np.uint32)
        records[bad, 0] = S.ERR_BAD_PIXEL
        records[bad_input, 0] = S.ERR_BAD_INPUT
        return records.ravel()

    def _invalidate(self) -> None:
        self.weights_loaded = False
        self.weights_checksum = 0
        self.model.weights = {}
