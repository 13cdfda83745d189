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

from protocol import stream as S
from contract import blob
from contract.intmodel import IntModel
from contract.spec import CNNSpec, input_shape
from hls.gen_config import CORE_VERSION
from hls.inputs import first_bad_code


class RefCore:
    def __init__(self, spec: CNNSpec):
        self.spec = spec
        self.layers = spec.layers()
        self.model = IntModel(spec, {})
        self.blob_words = blob.blob_words(self.layers)
        h, w, c = input_shape(spec)
        self.in_shape = (h, w, c)
        self.infer_words = S.infer_words(h * w * c)
        self.weights_loaded = False
        self.weights_checksum = 0

    def _error(self, tag: int, code: int, detail: int) -> np.ndarray:
        return S.encode(S.OP_ERROR, [code, detail & S.MASK32], tag)

    def query_payload(self) -> list[int]:
        h, w, c = self.in_shape
        values = dict(topology_hash=self.model.topology_hash, core_version=CORE_VERSION,
                      capabilities=S.CAP_RUNTIME_WEIGHTS | S.CAP_LOGITS,
                      weights_loaded=int(self.weights_loaded), in_height=h, in_width=w,
                      in_channels=c, n_classes=self.spec.n_classes, blob_words=self.blob_words,
                      weights_checksum=self.weights_checksum)
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
        need = {S.OP_QUERY: 0, S.OP_LOAD_WEIGHTS: self.blob_words, S.OP_INFER: self.infer_words}
        if op not in need:
            return self._error(tag, S.ERR_UNKNOWN_OPCODE, op)
        payload = words[S.HEADER_WORDS:-1]
        writes_weights = op == S.OP_LOAD_WEIGHTS and length == need[op]
        if payload.size != length:
            if writes_weights:
                self._invalidate()
            return self._error(tag, S.ERR_BAD_LENGTH, n)
        if length != need[op]:
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
        n_pix = int(np.prod(self.in_shape))
        pixels = payload.astype("<u4").view(np.uint8)[:n_pix].reshape(self.in_shape)
        bad = first_bad_code(pixels, self.spec)
        if bad is not None:
            return self._error(tag, S.ERR_BAD_INPUT, bad)
        cls, logits = self.model.classify(pixels[None])
        out = [int(cls[0])] + [int(v) & S.MASK32 for v in logits[0]]
        return S.encode(S.OP_INFER | S.REPLY_BIT, out, tag)

    def _invalidate(self) -> None:
        self.weights_loaded = False
        self.weights_checksum = 0
        self.model.weights = {}
