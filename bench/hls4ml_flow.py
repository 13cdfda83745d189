"""The second flow: Brevitas -> QONNX -> hls4ml (Vitis backend, io_stream), as a peer of ours.

    python -m bench.hls4ml_flow --family wmcnn --out build/hls4ml [--n 64]

Follows /work/shared/TOOLCHAIN.md: ``export_qonnx(dynamo=False)``,
``cleanup_model``, ``ConvertToChannelsLastAndClean(make_input_channels_last=True)``,
``GemmToMatMul``, ``cleanup_model``; power-of-two scales (our quantizers are the
``*FixedPoint`` ones); the input result type is widened to ``fixed<24,4>``.
``hls_model.compile()`` needs only g++. Inputs are NHWC floats ``q / 256`` of
uint8 codes ``q``, already on the input quantizer's grid.

The result is compared with the integer reference (``contract.intmodel``): logits
times ``2**logit_scale_log2`` must be equal, bit for bit. A model that a stage
cannot take is reported with the stage and the exception text, not hidden.

Differences from our core, for the report: hls4ml bakes the weights into the
bitstream as constants (a new model means a new synthesis); ours loads them at
run time (LOAD_WEIGHTS) into on-chip memories of a fixed topology.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

INPUT_PRECISION = "fixed<24,4>"
DEFAULT_PRECISION = "fixed<32,16>"


class FlowError(RuntimeError):
    def __init__(self, stage: str, exc: BaseException):
        super().__init__(f"{stage}: {type(exc).__name__}: {exc}")
        self.stage = stage


def make_spec(family: str, w_bits: int = 4, a_bits: int = 4):
    from contract import zoo
    from contract.spec import CNNSpec

    if family == "wmcnn":
        return CNNSpec.uniform(w_bits, a_bits)
    return zoo.ZooSpec(family, w_bits=w_bits, a_bits=a_bits, width=8)


def make_model(spec, n: int = 128, epochs: int = 1, seed: int = 0):
    """A briefly trained GraphNet, its calibration inputs and its integer twin."""
    import torch

    from quant.export import to_intmodel
    from quant.train import train
    from quant.traindata import make_inputs

    x, y = make_inputs(n, seed=seed + 1, size=spec.in_size)
    torch.manual_seed(seed)
    model = train(spec, x, y % spec.n_classes, epochs=epochs, seed=seed, batch=32)
    return model, x, to_intmodel(model, x)


def to_qonnx(model, path: Path):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    from quant.export import export_qonnx

    export_qonnx(model, path)
    q = cleanup_model(ModelWrapper(str(path)))
    q = q.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
    q = cleanup_model(q.transform(GemmToMatMul()))
    return q


def to_hls4ml(qmodel, out_dir: Path):
    import hls4ml

    cfg = hls4ml.utils.config.config_from_onnx_model(qmodel, granularity="name", backend="Vitis",
                                                     default_precision=DEFAULT_PRECISION)
    cfg["LayerName"]["global_in"]["Precision"]["result"] = INPUT_PRECISION
    return hls4ml.converters.convert_from_onnx_model(qmodel, output_dir=str(out_dir), backend="Vitis",
                                                     io_type="io_stream", hls_config=cfg)


def _stage(name: str, fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # every failure becomes a reported row
        raise FlowError(name, e) from e


def run(spec, out_dir: Path, n: int = 64, seed: int = 0, train_n: int = 128, made=None) -> dict:
    """One model through the flow; a dict for the report, never an exception.
    ``made``: ``make_model``'s (model, x, IntModel), to share one model with another flow."""
    out_dir = Path(out_dir) / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    row = {"model": spec.name, "family": getattr(spec, "family", "wmcnn"), "status": "ok",
           "stage": None, "error": None, "n": n}
    try:
        model, x, im = made or _stage("train", make_model, spec, train_n, 1, seed)
        q = _stage("qonnx", to_qonnx, model, out_dir / "model.qonnx.onnx")
        hm = _stage("convert", to_hls4ml, q, out_dir / "prj")
        t0 = time.perf_counter()
        _stage("compile", hm.compile)
        row["compile_s"] = time.perf_counter() - t0
        x = x[:n]
        xin = np.ascontiguousarray(x.astype(np.float32) / 256.0)
        t0 = time.perf_counter()
        out = np.asarray(_stage("predict", hm.predict, xin), dtype=np.float64)
        row["predict_images_per_s"] = len(x) / (time.perf_counter() - t0)
        ref = im.forward(x).astype(np.float64) * 2.0 ** im.logit_scale_log2
        out = out.reshape(ref.shape)
        row["bit_exact"] = int(np.all(out == ref, axis=1).sum())
        row["same_class"] = int((out.argmax(1) == ref.argmax(1)).sum())
        row["max_abs_diff"] = float(np.abs(out - ref).max())
        row["logit_scale"] = 2.0 ** im.logit_scale_log2
        if row["bit_exact"] != len(x):
            row["status"] = "mismatch"
    except FlowError as e:
        row.update(status="unsupported" if e.stage in ("qonnx", "convert", "compile") else "failed",
                   stage=e.stage, error=str(e),
                   traceback="".join(traceback.format_exception(e.__cause__))[-3000:])
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", default="wmcnn", help="wmcnn or a contract.zoo family")
    ap.add_argument("--w-bits", type=int, default=4)
    ap.add_argument("--a-bits", type=int, default=4)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("build/hls4ml"))
    args = ap.parse_args(argv)
    row = run(make_spec(args.family, args.w_bits, args.a_bits), args.out, args.n)
    row.pop("traceback", None)
    print(json.dumps(row, indent=1))
    return 0 if row["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
