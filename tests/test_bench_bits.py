"""bench.accuracy_vs_bits end to end on a tiny run: the table, JSON and plot it
writes, and the --bits selection."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("matplotlib")

from bench import accuracy_vs_bits as bench  # noqa: E402
from shared_data import REAL_TRAIN, require  # noqa: E402


def test_tiny_run_writes_json_and_plot(tmp_path, capsys):
    argv = ["--families", "wmcnn", "--width", "4", "--bits", "4,2", "--n-train", "192", "--n-test", "64",
            "--fp-epochs", "1", "--qat-epochs", "1", "--qat-low", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = json.loads((tmp_path / "accuracy_vs_bits.json").read_text())["rows"]
    assert [r["mode"] for r in rows] == ["fp32", "ptq8", "W4A4", "W2A2"]
    fp, w2 = rows[0], rows[-1]
    assert fp["weight_bits"] == 32 * fp["params"] and w2["weight_bits"] == 2 * w2["params"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert w2["delta_vs_fp32"] == pytest.approx(w2["accuracy"] - fp["accuracy"])
    assert (tmp_path / "accuracy_vs_bits.png").stat().st_size > 1000
    assert "W2A2" in capsys.readouterr().out


def test_edge_bits_adds_wider_edge_points(tmp_path):
    """--edge-bits 8 adds, below 8 bits, a point whose first conv and
    classifier keep 8-bit weights; its weight memory counts them at 8 bits."""
    argv = ["--families", "wmcnn", "--width", "4", "--bits", "8,2", "--edge-bits", "8", "--n-train", "128",
            "--n-test", "32", "--fp-epochs", "1", "--qat-epochs", "1", "--qat-low", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    rows = {r["mode"]: r for r in json.loads((tmp_path / "accuracy_vs_bits.json").read_text())["rows"]}
    assert list(rows) == ["fp32", "ptq8", "W8A8", "W2A2", "W2A2e8"]
    spec = bench.make_spec("wmcnn", 2, 42, 4, edge_bits=8)
    assert spec.w_bits == (8, 2, 2, 8) and spec.a_bits == (2, 2, 2)
    convs = [lay for lay in spec.layers() if lay["type"] in ("conv2d", "dense")]
    n = [int(np.prod(bench.weight_shape(lay))) for lay in convs]
    e8, w2 = rows["W2A2e8"], rows["W2A2"]
    assert e8["params"] == w2["params"] == sum(n)
    assert e8["weight_bits"] == w2["weight_bits"] + 6 * (n[0] + n[-1])
    assert e8["bits"] == 2 and e8["fits"] is True
    with pytest.raises(SystemExit):
        bench.main(["--edge-bits", "9", "--out", str(tmp_path)])
    with pytest.raises(ValueError):
        bench.make_spec("vgg_s", 2, 42, 4, edge_bits=8)


def test_label_keeps_a_second_width_apart_in_a_merge(tmp_path):
    """--label: a family at other channels carries its own name (the family
    kept as 'arch', the channels beside it), so a merge with the family's
    own run keeps two points where it would refuse the same (family, mode,
    seed) twice."""
    tiny = ["--families", "wmcnn", "--bits", "2", "--n-train", "96", "--n-test", "32",
            "--fp-epochs", "1", "--qat-epochs", "1", "--qat-low", "1"]
    assert bench.main(tiny + ["--channels", "4,8", "--out", str(tmp_path / "a")]) == 0
    assert bench.main(tiny + ["--channels", "6,12", "--label", "wmcnn-wide",
                              "--out", str(tmp_path / "b")]) == 0
    rows = json.loads((tmp_path / "b" / "accuracy_vs_bits.json").read_text())["rows"]
    assert {(r["family"], r["arch"], tuple(r["channels"])) for r in rows} == {("wmcnn-wide", "wmcnn", (6, 12))}
    assert bench.main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    agg = json.loads((tmp_path / "m" / "accuracy_vs_bits.json").read_text())["aggregate"]
    assert sorted((r["family"], r["mode"]) for r in agg if r["mode"] == "W2A2") == [
        ("wmcnn", "W2A2"), ("wmcnn-wide", "W2A2")]
    narrow, wide = sorted((r for r in agg if r["mode"] == "W2A2"), key=lambda r: r["family"])
    assert wide["params"] > narrow["params"]
    with pytest.raises(SystemExit):
        bench.main(["--families", "wmcnn,vgg_s", "--label", "x", "--out", str(tmp_path / "c")])


def test_bits_out_of_range_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--bits", "1", "--out", str(tmp_path)])


def test_real_data_seeds_and_estimates(tmp_path, capsys):
    from quant.datasets import wm811k

    real = require(REAL_TRAIN)
    pkl = tmp_path / "slice.pkl"
    wm811k.read_frame(real).iloc[::12].to_pickle(pkl)            # 400 real maps
    argv = ["--data", str(pkl), "--families", "wmcnn", "--size", "16", "--channels", "4,8", "--bits", "4",
            "--seeds", "0,1", "--fp-epochs", "1", "--qat-epochs", "1", "--qat-low", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    res = json.loads((tmp_path / "accuracy_vs_bits.json").read_text())
    assert res["seeds"] == [0, 1] and len(res["rows"]) == 6
    agg = {r["mode"]: r for r in res["aggregate"]}
    assert set(agg) == {"fp32", "ptq8", "W4A4"} and all(r["seeds"] == 2 for r in agg.values())
    w4 = agg["W4A4"]
    accs = [r["accuracy"] for r in res["rows"] if r["mode"] == "W4A4"]
    assert w4["accuracy_mean"] == pytest.approx(sum(accs) / 2)
    assert w4["lut"] > 0 and w4["bram36"] > 0 and w4["maps_per_s"] > 0 and w4["fits"] is True
    assert "lut" not in agg["fp32"]
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    assert "+-" in capsys.readouterr().out


def test_real_data_recipe_sets_the_wmcnn_options(tmp_path, monkeypatch):
    """--recipe takes a quant.train config: size, blocks, epochs, the die decoder,
    the class balance, the views, pretraining on generated maps and QAT's
    tail averaging reach the trained nets and their scores."""
    from quant.datasets import wm811k

    real = require(REAL_TRAIN)
    pkl = tmp_path / "slice.pkl"
    wm811k.read_frame(real).iloc[::24].to_pickle(pkl)            # 200 real maps
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"family": "wmcnn", "channels": [4, 8], "die_channels": True, "size": 16,
                                  "fp_epochs": 1, "qat_epochs": 1, "qat_lr": 0.001, "balanced": "sqrt",
                                  "bn": True, "views": 8, "average_last": 1, "pretrain_maps": 30,
                                  "pretrain_epochs": 1}))
    seen = []
    real_twin, real_qat = bench.float_twin, bench.qat_from

    def twin(spec, *a, **kw):
        xg, yg, pe = kw["pretrain"]
        seen.append(("fp", spec.in_size, spec.die_channels, kw["balanced"], xg.shape, len(yg), pe))
        return real_twin(spec, *a, **kw)

    def qat(spec, *a, **kw):
        seen.append(("qat", spec.layers()[0]["name"], kw["qat_lr"], kw["act_init"], kw["balanced"],
                     kw["average_last"]))
        return real_qat(spec, *a, **kw)

    monkeypatch.setattr(bench, "float_twin", twin)
    monkeypatch.setattr(bench, "qat_from", qat)
    argv = ["--data", str(pkl), "--families", "wmcnn", "--recipe", str(recipe), "--bits", "4,2",
            "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    assert seen == [("fp", 16, True, "sqrt", (30, 16, 16, 1), 30, 1), ("qat", "decode", 0.001, "stats", "sqrt", 1),
                    ("qat", "decode", 0.001, "mse", "sqrt", 1)]
    res = json.loads((tmp_path / "accuracy_vs_bits.json").read_text())
    assert res["recipe"]["die_channels"] is True and res["config"]["fp_epochs"] == 1
    # views 8: each row scores maps by their eight symmetries, one view's accuracy
    # beside it, and a map costs the core eight images
    assert all("accuracy_1view" in r for r in res["rows"])
    hw = [r for r in res["rows"] if "lut" in r]
    assert len(hw) == 3 and all(r["views"] == 8 and r["maps_per_s"] * 8 == r["images_per_s"] for r in hw)
    with pytest.raises(SystemExit, match="wmcnn config"):
        recipe.write_text(json.dumps({"family": "vgg_s"}))
        bench.main(argv)


def test_recipe_trains_another_family_the_same_way(tmp_path, monkeypatch):
    """Another family under --recipe gets the recipe's training (balance,
    init, optimizer, weight decay, pretraining, QAT rate and averaging,
    views) but keeps its own layers: no die decoder, no wmcnn blocks."""
    from quant.datasets import wm811k

    real = require(REAL_TRAIN)
    pkl = tmp_path / "slice.pkl"
    wm811k.read_frame(real).iloc[::24].to_pickle(pkl)
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"family": "wmcnn", "channels": [4, 8], "block_convs": [1, 2],
                                  "die_channels": True, "size": 16, "fp_epochs": 1, "qat_epochs": 1,
                                  "qat_lr": 0.002, "balanced": "sqrt", "init": "torch", "optimizer": "sgd",
                                  "lr": 0.05, "weight_decay": 0.001, "views": 8, "average_last": 1,
                                  "pretrain_maps": 30, "pretrain_epochs": 1}))
    seen = []
    real_twin, real_qat = bench.float_twin, bench.qat_from

    def twin(spec, *a, **kw):
        xg, _, _ = kw["pretrain"]
        seen.append(("fp", spec.family, spec.in_size, kw["balanced"], kw["init"], kw["optimizer"],
                     kw["weight_decay"], kw["lr"], xg.shape))
        return real_twin(spec, *a, **kw)

    def qat(spec, *a, **kw):
        seen.append(("qat", spec.layers()[0]["name"], kw["qat_lr"], kw["average_last"]))
        return real_qat(spec, *a, **kw)

    monkeypatch.setattr(bench, "float_twin", twin)
    monkeypatch.setattr(bench, "qat_from", qat)
    argv = ["--data", str(pkl), "--families", "vgg_s", "--width", "4", "--recipe", str(recipe), "--bits", "4",
            "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    assert seen == [("fp", "vgg_s", 16, "sqrt", "torch", "sgd", 0.001, 0.05, (30, 16, 16, 1)),
                    ("qat", "conv0_0", 0.002, 1)]
    rows = json.loads((tmp_path / "accuracy_vs_bits.json").read_text())["rows"]
    assert [r["mode"] for r in rows] == ["fp32", "ptq8", "W4A4"]
    assert all("accuracy_1view" in r and "block_convs" not in r for r in rows)
    assert all(r["views"] == 8 for r in rows if "lut" in r)


def _run_json(path, seed, acc, data="real.pkl"):
    rows = [dict(family="vgg_s", mode="fp32", bits=32, params=10, weight_bits=320, accuracy=acc, macro_f1=acc,
                 seed=seed),
            dict(family="vgg_s", mode="W4A4", bits=4, params=10, weight_bits=40, accuracy=acc - 0.1,
                 macro_f1=acc - 0.1, seed=seed, lut=1000, bram36=2.0, dsp=0, maps_per_s=50.0, fits=True)]
    path.mkdir()
    (path / "accuracy_vs_bits.json").write_text(json.dumps({"data": data, "seeds": [seed], "rows": rows}))
    return path


def test_merge_joins_seeds_run_apart(tmp_path, capsys):
    a, b = _run_json(tmp_path / "s0", 0, 0.8), _run_json(tmp_path / "s1", 1, 0.9)
    assert bench.main(["--merge", str(a), str(b), "--out", str(tmp_path / "all")]) == 0
    res = json.loads((tmp_path / "all" / "accuracy_vs_bits.json").read_text())
    agg = {r["mode"]: r for r in res["aggregate"]}
    assert res["seeds"] == [0, 1] and agg["W4A4"]["seeds"] == 2
    assert agg["fp32"]["accuracy_mean"] == pytest.approx(0.85)
    assert agg["W4A4"]["accuracy_std"] == pytest.approx(0.0707107, rel=1e-4)    # sample std of 0.7, 0.8
    assert (tmp_path / "all" / "pareto.png").stat().st_size > 1000
    assert "+-" in capsys.readouterr().out
    # the same seed twice would be counted twice: refused; so are runs on other data
    with pytest.raises(SystemExit, match="overlap"):
        bench.main(["--merge", str(a), str(a), "--out", str(tmp_path / "x")])
    c = _run_json(tmp_path / "s2", 2, 0.7, data="other.pkl")
    with pytest.raises(SystemExit, match="different data"):
        bench.main(["--merge", str(a), str(c), "--out", str(tmp_path / "y")])


def _drawn_labels(ax):
    """Window extents of the x tick labels the renderer actually draws."""
    fig = ax.figure
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    lo, hi = ax.get_xlim()
    ticks = ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks()
    return [(t.label1.get_text(), t.label1.get_window_extent(r)) for t in ticks
            if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi]


@pytest.mark.parametrize("span", [(19.0, 600.0), (300.0, 650.0), (2.0, 5000.0)])
def test_pareto_maps_per_s_labels_do_not_overprint(span):
    """Asks matplotlib's own renderer, not our formatter, where the maps/s
    labels land: under two decades the log axis labels every minor tick by
    default and they overprint (the bench's 19 to 600 maps/s did)."""
    from bench import bits_report

    import matplotlib.pyplot as plt

    lo, hi = span
    agg = [{"family": "wmcnn", "mode": m, "accuracy_mean": a, "accuracy_std": 0.002, "lut": 30000 + 1000 * i,
            "maps_per_s": v} for i, (m, a, v) in enumerate([("W8A8", 0.94, lo), ("W4A4", 0.942, (lo * hi) ** 0.5),
                                                            ("W2A2", 0.926, hi)])]
    fig = bits_report.pareto_figure(agg)
    try:
        labels = _drawn_labels(fig.axes[1])
        assert len(labels) >= 2, labels                 # the axis is still read by its numbers
        boxes = sorted((b for _, b in labels), key=lambda b: b.x0)
        for a, b in zip(boxes, boxes[1:]):
            assert a.x1 <= b.x0, f"tick labels overlap: {[t for t, _ in labels]}"
    finally:
        plt.close(fig)


def test_recipe_sets_every_familys_qat_epochs():
    """mobilenet_s's ten-fold QAT epochs belong to the short generated-map
    schedule; under a recipe it trains the recipe's epochs like the others."""
    from argparse import Namespace

    plain = bench._recipe("mobilenet_s", Namespace(data=None, recipe=None))
    assert plain["qat_scale"] == 10 and plain["equalize"]
    under = bench._recipe("mobilenet_s", Namespace(data="real.pkl", recipe={"qat_lr": 5e-4, "balanced": "sqrt"}))
    assert "qat_scale" not in under
    assert under["equalize"] and under["act_init"] == "mse" and under["qat_lr"] == 5e-4
