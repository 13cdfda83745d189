"""The CAM defect-size section of a buffer-zone training report (``quant.train``).

Class activation maps come from the integer model (what the accelerator's
feature-map reply carries), so the sizes reported are those the board path
would measure; ``quant.cam`` holds the maths.

Run on its own, it measures again from a finished training folder (same
synthetic images, regenerated from the run's seed) and rewrites the report::

    python -m quant.cam_report --train build/xception_fpn_4w4a/train
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from quant import cam, metrics
from quant.fit import predict_logits
from quant.model import GraphNet


def _int_logits_and_cams(im, x: np.ndarray, batch: int = 100):
    cams, logits = [], []
    for i in range(0, len(x), batch):
        c, lg = cam.int_cams(im, x[i:i + batch])
        cams.append(cam.upsample(c, x.shape[1:3]).astype(np.float32))
        logits.append(lg)
    return np.concatenate(cams), np.concatenate(logits)


def cam_report(q: GraphNet, x_val, y_val, t_val, x_test, y_test, t_test, spec, args):
    """Integer-model accuracy, CAM size MAPE (calibrated on validation) and overlay PNGs."""
    from quant.export import to_intmodel  # export imports torch and Brevitas: only when asked

    im = to_intmodel(q, x_val[:2])
    cams_val, _ = _int_logits_and_cams(im, x_val)
    cams_test, int_logits = _int_logits_and_cams(im, x_test)
    pred = int_logits.argmax(1)
    int_res = metrics.summary(y_test, pred, spec.classes)
    int_res["equals_brevitas"] = bool(np.array_equal(
        int_logits.astype(np.float64) * 2.0 ** im.logit_scale_log2,
        predict_logits(q, x_test).astype(np.float64)))
    # Three measurements, each calibrated on the validation split: the
    # binarized CAM alone (the paper's), the CAM-guided image measurement
    # (the headline, ``res["guided"]``), and the image alone (no CAM), which
    # shows what the CAM's choice of region adds.
    cal = cam.calibrate(cams_val, x_val, y_val, t_val, spec.classes)
    res = cam.evaluate(cams_test, x_test, y_test, pred, t_test, spec.classes, cal)
    res["calibration"] = cal.to_dict()
    res["n_val"] = int(len(x_val))
    for method in ("guided", "image"):
        cal_m = cam.calibrate(cams_val, x_val, y_val, t_val, spec.classes, method=method)
        res[method] = cam.evaluate(cams_test, x_test, y_test, pred, t_test, spec.classes, cal_m)
        res[method]["calibration"] = cal_m.to_dict()
    figs = []
    cal_g = cam.Calibration(**res["guided"]["calibration"])
    for kind in (cam.CRACK, cam.EMC):
        k = spec.classes.index(kind)
        for j, i in enumerate(np.nonzero(y_test == k)[0][:3]):
            est = cal_g.correct(cam.measure(cams_test[i][k], x_test[i], kind, cal_g.frac[kind], "guided"))
            raw = cal.correct(cam.measure(cams_test[i][k], x_test[i], kind, cal.frac[kind]))
            tru = {qn: float(t_test[qn][i]) for qn in est}
            title = f"{kind} (pred {spec.classes[pred[i]]}), px guided/CAM/true: " + ", ".join(
                f"{qn.split('_')[-1]} {est[qn]:.1f}/{raw[qn]:.1f}/{tru[qn]:.1f}" for qn in est)
            name = f"cam_{kind.lower()}_{j}.png"
            cam.overlay(x_test[i], cams_test[i][k], cam.binarize(cams_test[i][k], cal_g.frac[kind]),
                        args.out / name, title, truth_mask=t_test["mask"][i])
            figs.append(name)
    return int_res, res, figs


_METHOD_NAMES = (("guided", "CAM-guided (headline)"), ("cam", "binarized CAM alone"),
                 ("image", "image alone, no CAM"))


def _methods(res: dict) -> list[tuple[str, dict]]:
    """(label, results) of each method present: the CAM-only results are ``res`` itself."""
    found = [(label, res if key == "cam" else res.get(key, {})) for key, label in _METHOD_NAMES]
    return [(label, d) for label, d in found if d]


def cam_html(res: dict) -> str:
    methods = _methods(res)
    head = "".join(f"<th>{label}</th>" for label, _ in methods)
    rows = ""
    for q in cam.QUANTITIES:
        if q not in res:
            continue
        cells = "".join(f"<td>{d[q]['mape']:.1f}% ({d[q]['mape_ge4']:.1f}%)</td>" for _, d in methods)
        rows += f"<tr><td>{q}</td><td>{res[q]['n']}</td><td>{res[q]['mean_true']:.1f}</td>{cells}</tr>"
    return (f"<h2>CAM defect size (integer model)</h2><p>MAPE on the test split's true defects "
            f"(in brackets: over truths of at least {cam.MIN_TRUE:g} px); threshold and linear "
            f"correction of each method fitted on {res['n_val']} validation images. CAM-guided: the "
            f"binarized CAM picks the defect, its pixels in the image give the size "
            f"(<code>quant.defect_size.guided</code>); the image-alone column measures every defect-like "
            f"pixel in the band, to show what the CAM's choice adds.</p>"
            f"<table><tr><th>quantity</th><th>n</th><th>mean true (px)</th>{head}</tr>{rows}</table>")


def cam_lines(res: dict) -> list[str]:
    """One console line a method: MAPE per quantity (and over truths >= MIN_TRUE px)."""
    return [f"{label}: " + ", ".join(f"{q} {d[q]['mape']:.1f}% ({d[q]['mape_ge4']:.1f}% >=4px)"
                                     for q in cam.QUANTITIES if q in d)
            for label, d in _methods(res)]


def main(argv=None) -> int:
    from quant.traindata import load_buffer
    from quant.train import load_checkpoint, validation_rows

    ap = argparse.ArgumentParser(description="Measure CAM defect sizes again from a buffer-zone training run.")
    ap.add_argument("--train", type=Path, required=True, help="the quant.train output folder")
    args = ap.parse_args(argv)
    results = json.loads((args.train / "metrics.json").read_text())
    cfg = results.get("config", {})
    if cfg.get("family") != "xception_fpn" or cfg.get("data"):
        raise SystemExit(f"{args.train}: CAM sizes need a buffer-zone run on generated images "
                         "(their truth comes from the generator)")
    data = argparse.Namespace(**{k: cfg[k] for k in ("seed", "n_train", "n_test", "size")})
    x, y, x_test, y_test, t, t_test = load_buffer(data)
    val, _ = validation_rows(y, cfg)      # quant.train's validation split
    q = load_checkpoint(args.train / "checkpoint.pt")
    results["int"], results["cam"], cam_figs = cam_report(
        q, x[val], y[val], {k: v[val] for k, v in t.items()}, x_test, y_test, t_test, q.spec,
        argparse.Namespace(out=args.train))
    figures = [f"confusion_{k}.png" for k in ("fp32", "qat", "ptq8") if (args.train / f"confusion_{k}.png").exists()]
    figures += ["coverage.png"] * (args.train / "coverage.png").exists() + cam_figs
    metrics.write_report(args.train, q.spec.name, q.spec.classes, results, figures,
                         extra_html=cam_html(results["cam"]))
    (args.train / "metrics.json").write_text(json.dumps(results, indent=1))
    print(f"{q.spec.name}: integer model {100 * results['int']['accuracy']:.2f}%")
    print("\n".join(cam_lines(results["cam"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
