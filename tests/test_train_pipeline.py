"""quant.train / quant.fit: a tiny end-to-end CLI run, losses, sampling,
determinism and resume, PTQ exactness, distillation, multi-label (config
files: tests/test_train_configs.py)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from contract import export_dir
from quant import fit as fitmod  # noqa: E402
from quant import train as tr  # noqa: E402
from quant.export import to_intmodel  # noqa: E402
from quant.floatnet import FloatNet  # noqa: E402
from quant.model import GraphNet, to_input  # noqa: E402
from contract.spec import CNNSpec  # noqa: E402
from quant.traindata import make_inputs  # noqa: E402
from contract.zoo import ZooSpec, buffer_spec  # noqa: E402
from shared_data import REAL_NP2, require  # noqa: E402

SMALL = CNNSpec.uniform(4, 4, channels=(4, 8, 8))


@pytest.fixture(scope="module")
def data():
    x, y = make_inputs(400, seed=3, size=42)
    return x, y


def test_cli_tiny_run_writes_everything(tmp_path):
    out = tmp_path / "run"
    rc = tr.main(["--out", str(out), "--n-train", "128", "--n-test", "40", "--fp-epochs", "1",
                  "--qat-epochs", "1", "--ptq", "--width", "4", "--batch", "32"])
    assert rc == 0
    for name in ("checkpoint.pt", "fp32.pt", "metrics.json", "report.html", "fp32.state.pt",
                 "qat.state.pt", "confusion_qat.png", "coverage.png"):
        assert (out / name).exists(), name
    m = json.loads((out / "metrics.json").read_text())
    assert {"fp32", "qat", "ptq8", "reject", "coverage_curve", "ood"} <= set(m)
    for key in ("fp32", "qat", "ptq8"):
        assert {"accuracy", "macro_f1", "per_class"} <= set(m[key])
    assert set(m["ood"]) == {"noise", "gradient", "empty", "pattern"}
    # photos and gradients are never die codes: the input test turns them all away
    assert m["ood"]["noise"]["rejected"] == 1.0 and m["ood"]["gradient"]["rejected"] == 1.0
    q = tr.load_checkpoint(out / "checkpoint.pt")
    assert isinstance(q, GraphNet) and isinstance(tr.load_any(out / "fp32.pt"), FloatNet)
    # export carries the calibrated reject option into model.json, where the host reads it
    from quant import export, metrics
    from contract.intmodel import IntModel

    assert export.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "exp")]) == 0
    meta = export_dir.read(tmp_path / "exp").meta
    assert set(meta["reject"]) == set(export.REJECT_KEYS)
    assert meta["reject"]["input"] == m["reject"]["input"]
    im = IntModel.load(tmp_path / "exp")
    x, _ = make_inputs(20, seed=9, size=42)
    logits = im.forward(x) * 2.0 ** im.logit_scale_log2
    want = metrics.apply_reject(tr.predict_logits(q, x), m["reject"], x)
    np.testing.assert_array_equal(metrics.apply_reject(logits, meta["reject"], x), want)


def test_cli_views_are_evaluated_exported_and_judged_as_the_host_does(tmp_path):
    """--views 8: metrics.json's figures are the mean logits of each map's eight
    symmetries (checked against index maps, not numpy's rot90), model.json says
    views 8, and the host's rule on the summed integer logits of the views gives
    what training's rule gives on the mean Brevitas logits."""
    from dihedral import dihedral_by_index
    from host_stm32mp1.engine import Model
    from quant import export, metrics
    from contract.intmodel import IntModel

    out = tmp_path / "run"
    assert tr.main(["--out", str(out), "--n-train", "128", "--n-test", "40", "--fp-epochs", "1",
                    "--qat-epochs", "1", "--width", "4", "--batch", "32", "--views", "8"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["views"] == 8 and {"qat", "qat_1view", "fp32"} <= set(m)
    q = tr.load_checkpoint(out / "checkpoint.pt")
    x, _ = make_inputs(12, seed=9, size=42)
    mean = np.stack([tr.predict_logits(q, np.stack(dihedral_by_index(v))).mean(0) for v in x])
    np.testing.assert_allclose(tr.predict_logits(q, x, n_views=8), mean, rtol=0, atol=1e-5)
    assert export.main(["--checkpoint", str(out / "checkpoint.pt"), "--out", str(tmp_path / "exp")]) == 0
    assert export_dir.read(tmp_path / "exp").views == 8
    im = IntModel.load(tmp_path / "exp")
    summed = np.stack([im.forward(np.stack(dihedral_by_index(v))).astype(np.int64).sum(0) for v in x])
    conf, why = Model.load(tmp_path / "exp").judge_batch(summed, x)
    assert why == metrics.reject_reasons(mean, m["reject"], x)
    want = metrics.softmax(mean, m["reject"]["temperature"]).max(1)
    np.testing.assert_allclose(conf, want, rtol=1e-6)
    with pytest.raises(SystemExit, match="for wafer maps"):
        tr.main(["--out", str(tmp_path / "bz"), "--family", "xception_fpn", "--views", "8", "--n-train", "8"])


def test_focal_equals_ce_at_gamma_zero():
    lg = torch.randn(32, 9)
    t = torch.randint(0, 9, (32,))
    ce = torch.nn.functional.cross_entropy(lg, t)
    assert torch.allclose(fitmod.focal_loss(lg, t, gamma=0.0), ce, atol=1e-6)
    assert fitmod.focal_loss(lg, t, gamma=2.0) < ce


def test_balanced_sampling_draws_classes_evenly():
    y = np.array([0] * 900 + [1] * 90 + [2] * 10)
    gen = torch.Generator().manual_seed(0)
    counts = np.bincount(y[fitmod._order(y, True, gen).numpy()], minlength=3)
    assert counts.sum() == len(y)
    assert np.all(np.abs(counts / len(y) - 1 / 3) < 0.05), counts
    plain = np.bincount(y[fitmod._order(y, False, gen).numpy()], minlength=3)
    np.testing.assert_array_equal(plain, [900, 90, 10])


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights(data):
    x, y = data
    runs = []
    for _ in range(2):
        torch.manual_seed(123)       # a different global state must not matter
        fp, q = fitmod.train_qat(SMALL, x[:128], y[:128], 1, 1, seed=7, batch=32)
        runs.append(_weights(q))
        torch.manual_seed(999)
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_resume_matches_uninterrupted(data, tmp_path, monkeypatch):
    x, y = data
    def net():
        torch.manual_seed(0)      # the initial weights
        return FloatNet(SMALL)

    ref = fitmod.fit(net(), x, y, 2, seed=5, state_path=tmp_path / "a.pt", desc="fp32")
    save = fitmod._save_state

    def crash(*a, **k):       # the run dies right after the first epoch's state is saved
        save(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(fitmod, "_save_state", crash)
    with pytest.raises(KeyboardInterrupt):
        fitmod.fit(net(), x, y, 2, seed=5, state_path=tmp_path / "b.pt", desc="fp32")
    monkeypatch.setattr(fitmod, "_save_state", save)
    torch.manual_seed(42)     # whatever happened in between
    resumed = fitmod.fit(FloatNet(SMALL), x, y, 2, seed=5, state_path=tmp_path / "b.pt", desc="fp32",
                         resume=True)
    a, b = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ptq_is_integer_exact(data):
    x, y = data
    fp = fitmod.fit(FloatNet(SMALL), x, y, 1, seed=1)
    spec8 = CNNSpec.uniform(8, 8, channels=(4, 8, 8))
    q = fitmod.from_float(spec8, fp, x[:256])
    im = to_intmodel(q, x[:2])
    with torch.no_grad():
        ref = q(to_input(x[:64])).numpy().astype(np.float64)
    np.testing.assert_array_equal(im.forward(x[:64]).astype(np.float64) * 2.0 ** im.logit_scale_log2, ref)


def test_distill_uses_no_labels_and_beats_untrained(data):
    x, y = data
    xt, yt = make_inputs(200, seed=4, size=42)
    torch.manual_seed(0)
    teacher = fitmod.fit(FloatNet(CNNSpec.uniform(8, 8, channels=(8, 16, 16))), x[:256], y[:256], 5, seed=2,
                         lr=5e-3, batch=32)
    t_acc = (fitmod.predict_logits(teacher, xt).argmax(1) == yt).mean()
    torch.manual_seed(1)
    student = FloatNet(SMALL)
    before = (fitmod.predict_logits(student, xt).argmax(1) == yt).mean()
    with pytest.raises(ValueError):
        fitmod.distill(teacher, student, x, 1, seed=0, y=y)
    fitmod.distill(teacher, student, x[:256], 5, seed=0, y=None, lr=5e-3, batch=32)
    after = (fitmod.predict_logits(student, xt).argmax(1) == yt).mean()
    assert after > before + 0.1, (t_acc, before, after)


def test_cli_multilabel_tiny(tmp_path):
    out = tmp_path / "ml"
    assert tr.main(["--out", str(out), "--multilabel", "--n-train", "160", "--n-test", "40",
                    "--fp-epochs", "1", "--qat-epochs", "1", "--width", "4"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["qat"]["per_label"]) == set(tr.synth.MIXED_PATTERNS)
    assert 0 <= m["qat"]["hamming_loss"] <= 1 and m["int"]["equals_brevitas"]


def test_cli_buffer_zone_tiny_reports_cam_sizes(tmp_path):
    out = tmp_path / "bz"
    assert tr.main(["--out", str(out), "--family", "xception_fpn", "--size", "32", "--width", "4",
                    "--n-train", "120", "--n-test", "40", "--fp-epochs", "1", "--qat-epochs", "1"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["int"]["equals_brevitas"]
    assert {"crack_length", "crack_dx", "crack_dy", "emc_depth", "guided", "image", "calibration"} <= set(m["cam"])
    assert (out / "cam_crack_0.png").exists() and "CAM defect size" in (out / "report.html").read_text()
    # Measured again from the folder alone: the same images, so the same figures.
    from quant import cam_report

    (out / "cam_crack_0.png").unlink()
    assert cam_report.main(["--train", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["int"] == m["int"] and again["cam"] == m["cam"]
    assert (out / "cam_crack_0.png").exists() and "image alone" in (out / "report.html").read_text()


@pytest.mark.parametrize("spec", [ZooSpec("vgg_s", in_size=16, width=4),
                                  buffer_spec(4, 4, in_size=32, width=4)], ids=lambda s: s.family)
def test_batch_norm_folds_exactly(spec):
    """The BN-trained twin and its folded copy give the same logits (eval mode),
    and the folded one has GraphNet's parameter names only."""
    torch.manual_seed(0)
    net = FloatNet(spec, bn=True)
    assert len(net.bns) > 0
    x = torch.rand(8, 1, spec.in_size, spec.in_size)
    net.train()
    for _ in range(3):          # move the running statistics off their init
        net(x * 2)
    for bn in net.bns.values():  # and gamma/beta off 1/0
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    plain = net.folded()
    assert len(plain.bns) == 0
    torch.testing.assert_close(plain(x), net(x), rtol=1e-4, atol=1e-4)
    GraphNet(spec).load_state_dict(plain.state_dict(), strict=False)   # names line up


def test_train_qat_with_bn_returns_the_folded_twin(data):
    x, y = data
    fp, q = fitmod.train_qat(SMALL, x[:128], y[:128], 1, 1, seed=7, batch=32, bn=True)
    assert isinstance(fp, FloatNet) and len(fp.bns) == 0
    assert isinstance(q, GraphNet)


def test_cli_picks_the_family_augmentation():
    assert tr.parse_args(["--out", "x"]).augment == "dihedral"
    assert tr.parse_args(["--out", "x", "--family", "xception_fpn"]).augment == "hflip"
    assert tr.parse_args(["--out", "x", "--family", "xception_fpn", "--augment", "none"]).augment == "none"
    assert tr.parse_args(["--out", "x", "--augment", "dihedral-each"]).augment == "dihedral-each"


@torch.no_grad()
def test_weight_scale_starts_from_the_loaded_float_weights(data):
    """The learned power-of-two weight scale is initialized on the first forward
    pass after the float weights are in, at the MSE optimum: at 2 bits it clips
    the largest weights (a max-based scale would round almost all to zero), and
    a checkpoint keeps it."""
    x, _ = data
    spec2 = CNNSpec.uniform(2, 2, channels=(4, 8, 8))
    torch.manual_seed(0)
    fp = FloatNet(spec2)
    q = fitmod.from_float(spec2, fp, x[:64])
    for name in ("conv1", "fc"):
        w = q.ops[name].quant_weight()
        scale, wmax = float(w.scale), float(fp.ops[name].weight.abs().max())
        assert scale < wmax                               # codes -2..1: the scale clips the peak
        assert (w.int() != 0).float().mean() > 0.25       # and many weights stay non-zero
        assert int(w.int().min()) == -2                   # full range at 2 bits, not ternary
    again = GraphNet(spec2)
    again.load_state_dict(q.state_dict())
    for name in ("conv1", "fc"):
        assert torch.equal(again.ops[name].quant_weight().scale, q.ops[name].quant_weight().scale)
    im = to_intmodel(q, x[:2])
    np.testing.assert_array_equal(im.forward(x[:16]).astype(np.float64) * 2.0 ** im.logit_scale_log2,
                                  fitmod.predict_logits(q, x[:16]).astype(np.float64))


@torch.no_grad()
def test_weight_codes_are_narrow_from_three_bits(data):
    """From 3 bits up the weight grid is symmetric: a weight far below the
    scale's range clips to -(2**(b-1) - 1), never to -2**(b-1); at 2 bits it
    clips to -2. The export stays exact either way."""
    x, _ = data
    for bits, lowest in ((3, -3), (4, -7), (2, -2)):
        spec = CNNSpec.uniform(bits, 4, channels=(4, 8, 8))
        torch.manual_seed(0)
        q = fitmod.from_float(spec, FloatNet(spec), x[:64])   # the scale is set now
        q.ops["conv1"].weight[0, 0, 0, 0] = -1e3
        q.ops["conv1"].weight[1, 0, 0, 0] = 1e3
        codes = q.ops["conv1"].quant_weight().int()
        assert int(codes.min()) == lowest, bits
        assert int(codes.max()) == 2 ** (bits - 1) - 1, bits
        im = to_intmodel(q, x[:2])
        np.testing.assert_array_equal(im.forward(x[:16]).astype(np.float64) * 2.0 ** im.logit_scale_log2,
                                      fitmod.predict_logits(q, x[:16]).astype(np.float64))


@torch.no_grad()
def test_mse_activation_init_loads_as_a_plain_checkpoint(data):
    """act_init only changes where QAT's activation scales start: the state
    dict has the same entries, so the checkpoint loads into a default GraphNet
    with the same logits, and the export stays integer-exact."""
    x, _ = data
    spec2 = ZooSpec("mobilenet_s", in_size=42, w_bits=2, a_bits=2, width=4)
    torch.manual_seed(0)
    fp = FloatNet(spec2)
    plain = fitmod.from_float(spec2, fp, x[:128])
    mse = fitmod.from_float(spec2, fp, x[:128], act_init="mse")
    scales = lambda q: [float(t.scale) for k, t in q.trace(to_input(x[:4])).items()  # noqa: E731
                        if k in q.acts]
    assert scales(mse) != scales(plain)           # the two inits start elsewhere
    again = GraphNet(spec2)
    again.load_state_dict(mse.state_dict())
    np.testing.assert_array_equal(fitmod.predict_logits(again, x[:32]), fitmod.predict_logits(mse, x[:32]))
    im = to_intmodel(again, x[:2])
    np.testing.assert_array_equal(im.forward(x[:16]).astype(np.float64) * 2.0 ** im.logit_scale_log2,
                                  fitmod.predict_logits(mse, x[:16]).astype(np.float64))
    with pytest.raises(ValueError, match="unknown activation-scale init"):
        GraphNet(spec2, act_init="max")


def test_train_qat_equalizes_when_asked(data):
    """Same seed with and without ``equalize``: the returned float twins compute
    the same function, and the equalized one has the narrower channel spread
    in its depthwise layers."""
    x, y = data
    spec = ZooSpec("mobilenet_s", in_size=42, width=4)
    twins = [fitmod.train_qat(spec, x[:128], y[:128], 1, 0, seed=3, batch=32, bn=True, equalize=eq)[0]
             for eq in (False, True)]
    xb = to_input(x[:8])
    with torch.no_grad():
        want = twins[0](xb)
        torch.testing.assert_close(twins[1](xb), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))

    def spread(net, name):
        w = net.ops[name].weight.detach()
        r = w.reshape(w.shape[0], -1).abs().amax(1)
        return float(r.max() / r.min())

    for name in ("dw0", "dw1", "dw2"):
        assert spread(twins[1], name) < spread(twins[0], name)


def test_synth_maps_grow_only_the_training_rows(tmp_path, monkeypatch):
    from quant.traindata import add_generated

    x, y = make_inputs(30, seed=1, size=42)
    x2, y2 = add_generated(x, y, 18, 42, seed=5, classes=("Center", "Scratch"))
    assert x2.shape == (48, 42, 42, 1) and x2.dtype == np.uint8
    np.testing.assert_array_equal(x2[:30], x)
    assert sorted(np.bincount(y2[30:]).tolist()) == [9, 9]           # indices into the classes given

    sample = require(REAL_NP2)
    seen = {}
    real_train_qat = tr.train_qat

    def spy(spec, x, y, *a, **kw):
        seen["n"] = len(y)
        return real_train_qat(spec, x, y, *a, **kw)

    monkeypatch.setattr(tr, "train_qat", spy)
    args = ["--data", str(sample), "--size", "42", "--fp-epochs", "1", "--qat-epochs", "1", "--width", "4",
            "--batch", "32", "--no-compare"]
    assert tr.main(["--out", str(tmp_path / "a"), *args]) == 0
    n_real = seen["n"]
    assert tr.main(["--out", str(tmp_path / "b"), *args, "--synth-maps", "45"]) == 0
    assert seen["n"] == n_real + 45
    a, b = (json.loads((tmp_path / k / "metrics.json").read_text()) for k in "ab")
    assert a["qat"]["n"] == b["qat"]["n"]                             # the test rows stay the real ones
    with pytest.raises(SystemExit, match="give --data"):
        tr.main(["--out", str(tmp_path / "c"), "--synth-maps", "10", "--n-train", "64", "--n-test", "16"])
