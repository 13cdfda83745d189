"""Blob shifts and biases (issue 21, item 5): range-checked at load with a
named error, and the C++ requantization and the numpy reference give the
exact answer, hence the same one, for any int32 shift a blob may carry."""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from protocol import auth as A
from protocol import pixels as PX
from protocol import stream as S
from contract import blob
from contract.intmodel import _clamp, random_model, rshift_rhe
from contract.spec import CNNSpec

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "hls" / "templates"
INT_MIN, INT_MAX = -2**31, 2**31 - 1
SHIFTS = [INT_MIN, INT_MIN + 1, -2**20, -64, -60, -33, -32, -18, -17, -5, -1, 0, 1, 2, 3, 30,
          61, 62, 63, 64, 100, 2**20, INT_MAX]
ACCS = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 7, -8, 12345, -12345, 2**40 + 2**39,
        2**49 - 1, -2**49, 2**61 - 1, -2**61]
FORMATS = [(4, False), (8, True), (16, False), (2, True)]     # (OUT_BITS, UNSIGNED_OUT)


def exact(acc: int, shift: int, bits: int, unsigned: bool) -> int:
    """acc / 2**shift, rounded half to even, clamped: Python integers, no widths.
    (|shift| past 100 changes nothing for |acc| < 2**98, and 2**(2**31) would
    take gigabytes, so it stops there.)"""
    shift = max(-100, min(shift, 100))
    if shift <= 0:
        y = acc * 2 ** -shift
    else:
        q, r = divmod(acc, 2 ** shift)          # floor division, 0 <= r < 2**shift
        half = 2 ** (shift - 1)
        y = q + (r > half or (r == half and q % 2 == 1))
    lo, hi = (0, 2**bits - 1) if unsigned else (-2**(bits - 1), 2**(bits - 1) - 1)
    return min(max(y, lo), hi)


def test_reference_requant_is_exact_for_any_shift():
    """The numpy reference wrapped int64 on large left shifts (-60 and lower)."""
    for bits, unsigned in FORMATS:
        got = [[int(_clamp(rshift_rhe(np.array([a]), s, bits), bits, unsigned)[0]) for s in SHIFTS]
               for a in ACCS]
        want = [[exact(a, s, bits, unsigned) for s in SHIFTS] for a in ACCS]
        assert got == want, (bits, unsigned)


def _ap_types() -> Path:
    from hls.csim_build import BuildError, ap_types_dir
    try:
        return ap_types_dir()
    except BuildError as e:
        pytest.skip(str(e))


def test_cpp_requant_is_exact_for_any_shift(tmp_path):
    """wq_requant.h at -O0 under AddressSanitizer: a shift of -2**31 overflowed
    ``-shift`` and the ap_int shift operators recursed (stack overflow)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    arr = lambda xs: "{" + ", ".join(f"{x}LL" for x in xs) + "}"
    loops = "\n".join(
        f"    for (int i = 0; i < NA; i++) for (int j = 0; j < NS; j++)\n"
        f"        P(wq::requant<{bits}, {str(unsigned).lower()}>(wq::wide_t(A[i]), wq::shift_t(S[j])));"
        for bits, unsigned in FORMATS)
    src = tmp_path / "requant.cpp"
    src.write_text('#include <cstdio>\n#include "wq_requant.h"\n'
                   '#define P(...) std::printf("%lld\\n", (long long)(__VA_ARGS__).to_int64())\n'
                   f"static const long long A[] = {arr(ACCS)};\n"
                   f"static const long long S[] = {arr(SHIFTS)};\n"
                   f"static const int NA = {len(ACCS)}, NS = {len(SHIFTS)};\n"
                   "int main() {\n" + loops + "\n    return 0;\n}\n")
    exe = tmp_path / "requant"
    subprocess.run([gxx, "-O0", "-g", "-std=c++14", "-w", "-fsanitize=address",
                    f"-I{_ap_types()}", f"-I{TEMPLATES}", str(src), "-o", str(exe)],
                   check=True, capture_output=True, timeout=600)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    got = [int(v) for v in run.stdout.split()]
    want = [exact(a, s, bits, unsigned) for bits, unsigned in FORMATS for a in ACCS for s in SHIFTS]
    assert got == want


def test_core_and_blob_agree_on_the_shift_limit():
    """blob.SHIFT_MAX is the core's MAX_RSHIFT (one value, two languages)."""
    text = (TEMPLATES / "wq_requant.h").read_text()
    assert int(re.search(r"MAX_RSHIFT = (\d+);", text).group(1)) == blob.SHIFT_MAX
    from contract.intmodel import MAX_RSHIFT
    assert MAX_RSHIFT == blob.SHIFT_MAX


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("ranges")
    m = random_model(CNNSpec.uniform(4, 4), seed=11)
    m.save(d / "export")
    return m, d


def _set(words: np.ndarray, layers, key: str, value: int) -> np.ndarray:
    """The blob with one named parameter (``layer.shift``, ``layer.b[i]``) replaced."""
    w = words.copy()
    pos = 0
    for layer in blob.section_layers(layers):
        for k in blob.shift_names(layer):
            if key == f"{layer['name']}.{k}":
                w[pos] = np.uint32(value & 0xFFFFFFFF)
                return w
            pos += 1
        if layer["type"] in blob.WEIGHTED:
            m = re.fullmatch(rf"{layer['name']}\.b\[(\d+)\]", key)
            if m:
                w[pos + int(m.group(1))] = np.uint32(value & 0xFFFFFFFF)
                return w
            pos += blob.section_words(layer) - len(blob.shift_names(layer))
    raise KeyError(key)


def test_check_params_names_the_bad_value(model):
    m, _ = model
    words = blob.pack(m)
    blob.check_params(m.layers, words)                      # an export passes
    for key, value, sentence in [
        ("conv0.shift", INT_MIN, "layer conv0: shift -2147483648 outside -32..62"),
        ("conv1.shift", 63, "layer conv1: shift 63 outside -32..62"),
        ("conv2.shift", -33, "outside -32..62"),
        ("fc.shift", 1, "layer fc: shift 1 outside 0..0"),
        ("fc.b[2]", INT_MAX, "layer fc: bias[2] 2147483647 outside"),
    ]:
        with pytest.raises(blob.BlobError, match=re.escape(sentence)):
            blob.check_params(m.layers, _set(words, m.layers, key, value))
    blob.check_params(m.layers, _set(words, m.layers, "conv0.shift", blob.SHIFT_MIN))
    blob.check_params(m.layers, _set(words, m.layers, "conv0.shift", blob.SHIFT_MAX))


def test_service_refuses_out_of_range_blob_and_keeps_its_weights(model):
    from host_stm32mp1.client import BoardClient, BoardError
    from zybo_z7.backends import Accelerator, load_spec, make_backend
    from zybo_z7.service import Board, Service, _classes

    m, d = model
    ring = A.Keyring({1: b"k" * 32}, 1)
    board = Board(Accelerator(make_backend("reference", str(d / "export"))),
                  _classes(d / "export"), load_spec(d / "export").layers())
    srv = Service(("127.0.0.1", 0), board, ring)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with BoardClient("127.0.0.1", srv.server_address[1], timeout=60, key=ring) as c:
            info, _ = c.ensure_weights(d / "export")
            bad = _set(blob.pack(m), m.layers, "conv0.shift", INT_MIN)
            with pytest.raises(BoardError, match="BAD_WEIGHTS: layer conv0: shift -2147483648"):
                c.load_weights(bad.astype("<u4").tobytes())
            after = c.query()
            assert after["weights_checksum"] == info["weights_checksum"]
            assert after["weight_loads"] == info["weight_loads"]
    finally:
        srv.shutdown()
        srv.server_close()


N_BLOBS, N_IMAGES = 30, 2


def test_random_blobs_csim_matches_reference(model, tmp_path_factory):
    """Random blobs (every word random, or random weights with shifts and
    biases at and past the limits) and random images: the C-sim core and the
    reference core answer the same, class and logits. Before: 15 of 60 pairs
    differed, and a shift of -2**31 crashed the -O0 C-sim."""
    pytest.importorskip("hls4ml", reason="hls4ml provides the ap_types headers")
    from hls.csim import CSimCore
    from hls.refcore import RefCore

    m, d = model
    csim = CSimCore.for_model(d / "export", tmp_path_factory.mktemp("csim"))
    ref = RefCore(m.spec)
    rng = np.random.default_rng(2021)
    n_words = blob.blob_words(m.layers)
    base = blob.pack(m)
    extremes = [INT_MIN, INT_MAX, -60, -33, -32, 62, 63, 0]
    mismatches = []
    for k in range(N_BLOBS):
        if k % 3 == 0:
            words = rng.integers(0, 2**32, n_words, dtype=np.uint64).astype(np.uint32)
        else:
            words = base.copy()
            for key in _shift_keys(m.layers):
                v = int(rng.choice(extremes)) if k % 3 == 1 else int(rng.integers(-70, 70))
                words = _set(words, m.layers, key, v)
        for core in (csim, ref):
            r = S.raise_if_error(S.decode(xfer(core, S.encode(S.OP_LOAD_WEIGHTS, words, k))))
            assert int(r.payload[0]) == blob.checksum(words)
        for i in range(N_IMAGES):
            img = rng.integers(0, 256, m.input_shape, dtype=np.uint8)
            req = S.encode(S.OP_INFER, PX.pack_pixels(img), 1000 + k * N_IMAGES + i)
            got = [S.parse_result(S.raise_if_error(S.decode(xfer(c, req))), m.spec.n_classes)
                   for c in (csim, ref)]
            if got[0][0] != got[1][0] or not np.array_equal(got[0][1], got[1][1]):
                mismatches.append((k, i, got))
    assert not mismatches, f"{len(mismatches)} of {N_BLOBS * N_IMAGES} differ: {mismatches[:2]}"


def _shift_keys(layers):
    return [f"{layer['name']}.{k}" for layer in blob.section_layers(layers)
            for k in blob.shift_names(layer)]


def xfer(core, words):
    """One request to the C-sim (transact) or the reference core (handle)."""
    return core.transact(words) if hasattr(core, "transact") else core.handle(words)
