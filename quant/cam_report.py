"""The CAM defect-size section of a buffer-zone training report (``quant.train``).

Class activation maps come from the integer model (what the accelerator's
feature-map reply carries), so the sizes reported are those the board path
would measure; ``quant.cam`` holds the maths.
"""
from __future__ import annotations

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
    # Both measurements (CAM alone, CAM-guided image), each calibrated on the
    # validation split; the report's headline is the CAM-only one, the other
    # is listed beside it under "guided".
    cal = cam.calibrate(cams_val, x_val, y_val, t_val, spec.classes)
    res = cam.evaluate(cams_test, x_test, y_test, pred, t_test, spec.classes, cal)
    res["calibration"] = cal.to_dict()
    res["n_val"] = int(len(x_val))
    cal_g = cam.calibrate(cams_val, x_val, y_val, t_val, spec.classes, method="guided")
    res["guided"] = cam.evaluate(cams_test, x_test, y_test, pred, t_test, spec.classes, cal_g)
    res["guided"]["calibration"] = cal_g.to_dict()
    figs = []
    for kind in (cam.CRACK, cam.EMC):
        k = spec.classes.index(kind)
        for j, i in enumerate(np.nonzero(y_test == k)[0][:3]):
            est = cal.correct(cam.measure(cams_test[i][k], x_test[i], kind, cal.frac[kind]))
            tru = {qn: float(t_test[qn][i]) for qn in est}
            title = f"{kind} (pred {spec.classes[pred[i]]}): " + ", ".join(
                f"{qn.split('_')[-1]} {est[qn]:.1f}/{tru[qn]:.1f}" for qn in est) + " (est/true px)"
            name = f"cam_{kind.lower()}_{j}.png"
            cam.overlay(x_test[i], cams_test[i][k], cam.binarize(cams_test[i][k], cal.frac[kind]),
                        args.out / name, title, truth_mask=t_test["mask"][i])
            figs.append(name)
    return int_res, res, figs


def cam_html(res: dict) -> str:
    rows = "".join(
        f"<tr><td>{q}</td><td>{res[q]['mape']:.1f}% ({res[q]['mape_ge4']:.1f}% on truth &ge; 4 px)</td><td>{res[q]['n']}</td>"
        f"<td>{res[q]['mean_true']:.1f}</td><td>{res[q]['frac']}</td>"
        f"<td>{res[q]['linear'][0]:.3f} x + {res[q]['linear'][1]:.2f}</td></tr>"
        for q in ("crack_length", "crack_dx", "crack_dy", "emc_depth") if q in res)
    g = res.get("guided", {})
    rows_g = "".join(f"<tr><td>{q}</td><td>{g[q]['mape']:.1f}%</td><td>{g[q]['mape_ge4']:.1f}%</td></tr>"
                     for q in ("crack_length", "crack_dx", "crack_dy", "emc_depth") if q in g)
    rows = rows.replace("</tr>", "</tr>", 1)
    return (f"<h2>CAM defect size (integer model)</h2><p>threshold and linear correction fitted on "
            f"{res['n_val']} validation images; MAPE on the test split's true defects.</p>"
            f"<table><tr><th>quantity</th><th>MAPE</th><th>n</th><th>mean true (px)</th>"
            f"<th>threshold (of max)</th><th>correction</th></tr>{rows}</table>"
            f"<p>mean MAPE {res['mean_mape']:.1f}%</p>"
            f"<h3>CAM-guided image measurement (quant.cam.guided)</h3><table><tr><th>quantity</th>"
            f"<th>MAPE</th><th>MAPE, truth &ge; 4 px</th></tr>{rows_g}</table>")
