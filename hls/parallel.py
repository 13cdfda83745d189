"""Per-layer parallelism: the one place the generator and the estimator read it.

FINN's folding, per layer:

- ``pe``: output channels computed in parallel (divides ``out_c``);
- ``simd``: fan-in elements multiplied in parallel by each PE (divides the
  fan-in: kernel*kernel*in_c for a conv, kernel*kernel for a depthwise conv,
  in_features for a dense layer). Layers without weights use ``pe`` only:
  channels handled a cycle.

A layer then needs ``fold = (out_c / pe) * (fan_in / simd)`` cycles an output
pixel. The file ``build/<model>/hls/parallel.json`` holds
``{"layers": {name: {"pe": P, "simd": S}}}``; a layer it does not name gets
``pe = simd = 1``, the smallest core.
"""
from __future__ import annotations

import json
from pathlib import Path

from contract.graph import INPUT


# The widest ap_int/ap_uint without AP_INT_MAX_W (ap_int.h, UG1399).
AP_INT_MAX_W = 1024


def fan_in(layer: dict) -> int:
    if layer["type"] == "conv2d":
        k = layer["kernel"] ** 2
        return k if layer["groups"] > 1 else k * layer["in_c"]
    if layer["type"] == "dense":
        return layer["in_features"]
    return 1


def out_channels(layer: dict) -> int:
    return layer["out_features"] if layer["type"] == "dense" else layer["out_c"]


def check(layer: dict, pe: int, simd: int) -> None:
    name = layer["name"]
    if pe < 1 or out_channels(layer) % pe:
        raise ValueError(f"layer {name}: pe={pe} must divide its {out_channels(layer)} output channels")
    if simd < 1 or fan_in(layer) % simd:
        raise ValueError(f"layer {name}: simd={simd} must divide its fan-in of {fan_in(layer)}")
    if layer["type"] in ("conv2d", "dense"):
        # wq_loader.h keeps a weight word plus one blob word in an ap_uint; ap_int
        # types stop at AP_INT_MAX_W = 1,024 bits (g++ and Vitis alike), beyond
        # which the build aborts, so refuse the folding here with its reason.
        bits = simd * layer["w_bits"] + 32
        if bits > AP_INT_MAX_W:
            raise ValueError(f"layer {name}: simd={simd} x {layer['w_bits']}-bit weights + 32 = {bits} "
                             f"bits of loader buffer, over the {AP_INT_MAX_W:,}-bit ap_int limit; "
                             f"use simd <= {(AP_INT_MAX_W - 32) // layer['w_bits']}")


def load(layers: list[dict], path: str | Path | None = None) -> dict[str, dict]:
    """``{layer name: {"pe", "simd"}}`` for every layer, checked."""
    given = {}
    if path is not None and Path(path).exists():
        given = json.loads(Path(path).read_text()).get("layers", {})
    names = {layer["name"] for layer in layers}
    unknown = set(given) - names
    if unknown:
        raise ValueError(f"{path}: no layers named {sorted(unknown)} in this model")
    out = {}
    for layer in layers:
        p = given.get(layer["name"], {})
        pe, simd = int(p.get("pe", 1)), int(p.get("simd", 1))
        check(layer, pe, simd)
        out[layer["name"]] = {"pe": pe, "simd": simd}
    return out


def save(path: str | Path, parallelism: dict[str, dict]) -> None:
    Path(path).write_text(json.dumps({"layers": parallelism}, indent=1))


def line_banks(layer: dict, pe: int, simd: int) -> int:
    """Cyclic factor F of each line buffer of a conv2d / depthwise layer: the
    codes one MAC iteration takes from one window row must fall in distinct
    banks (hls/templates/wq_conv2d.h, wq_dwconv.h read it as CONFIG_T::line_banks).

    A dense conv word holds at most min(simd, kernel*in_c, in_w*in_c)
    consecutive codes of one row. A depthwise word holds ``pe`` channels of at
    most L = min(simd, kernel, in_w) columns: distinct modulo ``pe`` for one
    column, modulo ``in_c * L`` for several."""
    k, c, w = layer["kernel"], layer["in_c"], layer["in_w"]
    if layer["groups"] > 1:
        cols = min(simd, k, w)
        return pe if cols == 1 else c * cols
    return min(simd, k * c, w * c)


def line_rows(layer: dict) -> int:
    """Line buffers of a conv2d / depthwise layer (wq_swg.h): the ``kernel``
    rows an output row's windows read, plus the ``stride`` rows the next output
    row needs, which load while the current one computes."""
    return layer["kernel"] + layer["stride"]


# The DATAFLOW region's image channel (hls/gen_top.py) has at least 4 banks,
# which the source stage writes 4 codes a stream word: a layer that fills its
# line buffers from it reads up to 4 codes a cycle without widening it.
IMAGE_PORTS = 4


def fill_lanes(layer: dict, pe: int, simd: int) -> int:
    """Codes a cycle a conv2d / depthwise layer copies from its input array into
    its line buffers (wq_swg.h lb_fill): the largest divisor of a line-buffer
    row (in_w * in_c codes) that is at most the line banks F. A run of them
    starts at a multiple of itself, so it never crosses a row and lands in
    distinct banks of the line buffer (any <= F consecutive codes do) and of the
    input array (partitioned by at least this many, hls.gen_config.partition)."""
    row = layer["in_w"] * layer["in_c"]
    cap = line_banks(layer, pe, simd)
    if INPUT in layer["inputs"]:
        cap = min(cap, IMAGE_PORTS)
    return max(d for d in range(1, min(cap, row) + 1) if row % d == 0)
