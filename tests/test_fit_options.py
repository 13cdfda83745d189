"""Options of the real-map recipe in quant.fit.

Tail averaging (--average-last): the weights a run ends with are the mean of
its last K epochs' weights, survive a resume, and a QAT net so averaged still
exports integer-exact. Pretraining on generated maps (--pretrain-maps): the
FP32 stage runs on them first, resumes past them, and the CLI refuses it
without a real file. The FP32 stage's optimizer (--optimizer, --weight-decay):
SGD there, Adam in QAT. Sharpness-aware steps (--sam): the gradient is the
one at the weights moved rho along the normalized gradient (Foret et al.),
in the FP32 stage's real-map epochs only. Weight averaging at the end of the
FP32 stage (--swa-epochs): constant-rate epochs, their mean, batch norms
recomputed to torch's definition of the statistics."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from contract.spec import CNNSpec  # noqa: E402
from quant import fit as fitmod  # noqa: E402
from quant.export import to_intmodel  # noqa: E402
from quant.floatnet import FloatNet  # noqa: E402
from quant.model import to_input  # noqa: E402
from quant import train as tr  # noqa: E402
from quant.traindata import generated, make_inputs  # noqa: E402

SMALL = CNNSpec.uniform(4, 4, channels=(4, 8, 8))


@pytest.fixture(scope="module")
def data():
    return make_inputs(300, seed=4, size=42)


def _net():
    torch.manual_seed(0)
    return FloatNet(SMALL)


def _epoch_weights(monkeypatch, x, y, tmp_path, **kw):
    """Run fit, keeping a copy of the weights after every epoch."""
    seen = []
    save = fitmod._save_state

    def keep(path, stage, epoch, model, *a, **k):
        seen.append({n: t.detach().clone() for n, t in model.state_dict().items()})
        save(path, stage, epoch, model, *a, **k)

    monkeypatch.setattr(fitmod, "_save_state", keep)
    out = fitmod.fit(_net(), x, y, 3, seed=2, state_path=tmp_path / "s.pt", desc="fp32", **kw)
    monkeypatch.setattr(fitmod, "_save_state", save)
    return out, seen


def test_the_run_ends_with_the_mean_of_its_last_epochs(data, tmp_path, monkeypatch):
    x, y = data
    out, seen = _epoch_weights(monkeypatch, x, y, tmp_path, average_last=2)
    assert len(seen) == 3
    got = out.state_dict()
    for name, t in got.items():
        if t.is_floating_point():
            mean = (seen[1][name].double() + seen[2][name].double()) / 2
            torch.testing.assert_close(t, mean.to(t.dtype))
    # and it is not simply the last epoch's net
    assert any(not torch.equal(got[n], seen[2][n]) for n in got if got[n].is_floating_point())


def test_average_last_zero_keeps_the_last_epoch(data, tmp_path, monkeypatch):
    x, y = data
    out, seen = _epoch_weights(monkeypatch, x, y, tmp_path)
    assert all(torch.equal(t, seen[-1][n]) for n, t in out.state_dict().items())


def test_resume_inside_the_averaged_tail_matches_an_uninterrupted_run(data, tmp_path, monkeypatch):
    x, y = data
    ref = fitmod.fit(_net(), x, y, 3, seed=2, state_path=tmp_path / "a.pt", desc="fp32", average_last=2)
    save = fitmod._save_state
    calls = []

    def crash(*a, **k):       # dies after epoch 2, the first epoch of the tail
        save(*a, **k)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(fitmod, "_save_state", crash)
    with pytest.raises(KeyboardInterrupt):
        fitmod.fit(_net(), x, y, 3, seed=2, state_path=tmp_path / "b.pt", desc="fp32", average_last=2)
    monkeypatch.setattr(fitmod, "_save_state", save)
    resumed = fitmod.fit(FloatNet(SMALL), x, y, 3, seed=2, state_path=tmp_path / "b.pt", desc="fp32",
                         resume=True, average_last=2)
    a, b = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_more_epochs_averaged_than_run_is_refused(data):
    x, y = data
    with pytest.raises(ValueError, match="average_last must be 0..2"):
        fitmod.fit(_net(), x, y, 2, seed=2, average_last=3)


def test_an_averaged_qat_net_still_exports_integer_exact(data):
    x, y = data
    spec = CNNSpec.uniform(2, 2, channels=(4, 8, 8))
    fp = fitmod.fit(_net(), x, y, 1, seed=1)
    q = fitmod.qat_from(spec, fp, x, y, 2, seed=1, average_last=2)
    im = to_intmodel(q, x[:2])
    with torch.no_grad():
        ref = q(to_input(x[:64])).numpy().astype(np.float64)
    np.testing.assert_array_equal(im.forward(x[:64]).astype(np.float64) * 2.0 ** im.logit_scale_log2, ref)


def test_pretraining_runs_first_and_a_resume_skips_it(data, tmp_path, monkeypatch):
    x, y = data
    xg, yg = generated(120, 42, seed=3)
    assert xg.shape == (120, 42, 42, 1) and xg.dtype == np.uint8 and set(yg) <= set(range(9))
    stages = []
    fit = fitmod.fit

    def spy(model, xx, yy, epochs, seed, desc="train", **kw):
        stages.append((desc, len(xx), kw.get("balanced"), kw.get("state_path")))
        return fit(model, xx, yy, epochs, seed, desc=desc, **kw)

    monkeypatch.setattr(fitmod, "fit", spy)
    kw = dict(balanced="sqrt", state_path=tmp_path / "fp32.state.pt")
    one = fitmod.float_twin(SMALL, x, y, 1, seed=1, pretrain=(xg, yg, 1), **kw)
    assert [s[:3] for s in stages] == [("pretrain", 120, "none"), ("fp32", 300, "sqrt")]
    assert stages[0][3] == tmp_path / "pretrain.state.pt" and stages[0][3].exists()
    plain = fitmod.float_twin(SMALL, x, y, 1, seed=1, balanced="sqrt")
    assert any(not torch.equal(a, b) for a, b in zip(one.state_dict().values(), plain.state_dict().values()))
    # a finished run resumed: both stages load their last state and train no more
    again = fitmod.float_twin(SMALL, x, y, 1, seed=1, pretrain=(xg, yg, 1), resume=True, **kw)
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), again.state_dict().values()))


def test_the_cli_refuses_pretraining_without_a_real_file(tmp_path):
    with pytest.raises(SystemExit, match="--pretrain-maps .* give --data"):
        tr.main(["--pretrain-maps", "100", "--n-train", "40", "--n-test", "20", "--fp-epochs", "0",
                 "--qat-epochs", "0", "--out", str(tmp_path)])


def test_sgd_trains_the_fp32_stages_and_qat_keeps_adam(data, monkeypatch):
    """--optimizer sgd --weight-decay W: pretraining and the FP32 stage run
    Nesterov SGD with that decay, QAT runs Adam without decay, and an SGD run
    ends with other weights than an Adam one."""
    x, y = data
    xg, yg = generated(64, 42, seed=3)
    made = []
    make = fitmod.make_optimizer

    def spy(name, params, lr, weight_decay=0.0):
        opt = make(name, params, lr, weight_decay)
        made.append((type(opt).__name__, opt.defaults["lr"], opt.defaults["weight_decay"],
                     opt.defaults.get("nesterov")))
        return opt

    monkeypatch.setattr(fitmod, "make_optimizer", spy)
    kw = dict(lr=0.05, optimizer="sgd", weight_decay=1e-3)
    fp, q = fitmod.train_qat(SMALL, x, y, 1, 1, seed=1, qat_lr=5e-4, pretrain=(xg, yg, 1), **kw)
    assert made == [("SGD", 0.05, 1e-3, True), ("SGD", 0.05, 1e-3, True), ("Adam", 5e-4, 0.0, None)]
    adam = fitmod.float_twin(SMALL, x, y, 1, seed=1, lr=0.05)
    assert any(not torch.equal(a, b) for a, b in zip(fp.state_dict().values(), adam.state_dict().values()))
    with pytest.raises(ValueError, match="unknown optimizer"):
        fitmod.make_optimizer("lamb", list(fp.parameters()), 1e-3)


def test_the_cli_refuses_sgd_without_a_qat_rate(tmp_path):
    """Half an SGD rate would be QAT's Adam rate: the CLI asks for --qat-lr."""
    with pytest.raises(SystemExit, match="--optimizer sgd needs --qat-lr"):
        tr.main(["--optimizer", "sgd", "--lr", "0.1", "--n-train", "40", "--n-test", "20",
                 "--fp-epochs", "0", "--qat-epochs", "0", "--out", str(tmp_path)])


def _bn_net():
    torch.manual_seed(0)
    return FloatNet(SMALL, bn=True).train()


def _grads(net, xb, yb):
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(xb), yb).backward()
    return [p.grad.detach().clone() for p in net.parameters()]


def test_a_sam_step_takes_the_gradient_at_the_shifted_weights(data):
    """The definition, computed apart on a copy of the net: e = rho * g / ||g||,
    gradient at w + e. The weights come back bit for bit
    and the perturbed pass leaves the batch-norm running statistics alone."""
    import copy

    x, y = data
    xb, yb = to_input(x[:32]), torch.as_tensor(y[:32])
    net = _bn_net()
    ref = copy.deepcopy(net)
    g = _grads(net, xb, yb)
    w0 = {n: t.detach().clone() for n, t in net.state_dict().items()}
    rho = 0.05
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    fitmod.sam_step(net, opt, lambda: torch.nn.functional.cross_entropy(net(xb), yb), rho)
    for n, t in net.state_dict().items():
        assert torch.equal(t, w0[n]), n     # weights and running statistics as they were
    norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(ref.parameters(), g):
            p.add_(rho * gi / norm)
    want = _grads(ref, xb, yb)
    for p, w in zip(net.parameters(), want):
        torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6)
    # and the SAM gradient is not the plain one, by far more than that tolerance
    assert max((p.grad - gi).abs().max().item() for p, gi in zip(net.parameters(), g)) > 1e-3


def test_sam_runs_in_the_fp32_stage_only(data, monkeypatch):
    """--sam RHO: the real-map FP32 epochs take SAM steps; generated-map
    pretraining and QAT do not; and a SAM run ends elsewhere than a plain one."""
    x, y = data
    xg, yg = generated(64, 42, seed=3)
    stages = []
    fit = fitmod.fit

    def spy(model, xx, yy, epochs, seed, desc="train", **kw):
        stages.append((desc, kw.get("sam", 0.0)))
        return fit(model, xx, yy, epochs, seed, desc=desc, **kw)

    monkeypatch.setattr(fitmod, "fit", spy)
    fp, _ = fitmod.train_qat(SMALL, x, y, 1, 1, seed=1, pretrain=(xg, yg, 1), sam=0.05)
    assert stages == [("pretrain", 0.0), ("fp32", 0.05), ("qat", 0.0)]
    plain = fitmod.float_twin(SMALL, x, y, 1, seed=1, pretrain=(xg, yg, 1))
    assert any(not torch.equal(a, b) for a, b in zip(fp.state_dict().values(), plain.state_dict().values()))
    with pytest.raises(ValueError, match="SAM radius"):
        fitmod.fit(_net(), x, y, 1, seed=1, sam=-0.1)


def test_a_constant_schedule_keeps_the_rate_and_an_unknown_one_is_refused(data, monkeypatch):
    """schedule="constant": every step runs at lr (one-cycle ends near 0)."""
    x, y = data
    rates = []
    step = torch.optim.SGD.step

    def spy(opt, *a, **k):
        rates.append(opt.param_groups[0]["lr"])
        return step(opt, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    fitmod.fit(_net(), x, y, 2, seed=1, lr=0.02, optimizer="sgd", schedule="constant")
    assert len(rates) == 2 * (len(x) // 64) and set(rates) == {0.02}
    rates.clear()
    fitmod.fit(_net(), x, y, 2, seed=1, lr=0.02, optimizer="sgd")
    assert rates[-1] < 0.001
    with pytest.raises(ValueError, match="unknown schedule"):
        fitmod.fit(_net(), x, y, 1, seed=1, schedule="cosine")


def test_update_bn_gives_the_statistics_of_the_maps_it_is_shown(data):
    """One batch of every map, no symmetry: each batch norm's running mean and
    variance become its input's mean and unbiased variance over those maps,
    as torch's batch_norm defines them, whatever they were before."""
    x, y = data
    net = _bn_net()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(7.0)
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.setdefault(mod, inp[0].detach().clone()))
             for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    fitmod.update_bn(net, x, y, seed=1, batch=len(x), augment="none")
    for h in hooks:
        h.remove()
    assert seen and not net.training
    for m, inp in seen.items():
        assert inp.shape[0] == len(x)
        torch.testing.assert_close(m.running_mean, inp.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m.running_var, inp.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-6)
        assert m.momentum == 0.1                 # put back for later training


def test_swa_ends_the_fp32_stage_with_the_mean_of_constant_rate_epochs(data, tmp_path, monkeypatch):
    """--swa-epochs N --swa-lr R: after the FP32 schedule, N epochs at the
    constant rate R with their mean taken (fit's own tail average, tested
    above), their own state file, batch norms recomputed; QAT is untouched."""
    x, y = data
    stages = []
    fit = fitmod.fit

    def spy(model, xx, yy, epochs, seed, desc="train", **kw):
        stages.append((desc, epochs, kw.get("lr"), kw.get("schedule", "onecycle"), kw.get("average_last", 0),
                       kw.get("state_path")))
        return fit(model, xx, yy, epochs, seed, desc=desc, **kw)

    redone = []
    update = fitmod.update_bn
    monkeypatch.setattr(fitmod, "fit", spy)
    monkeypatch.setattr(fitmod, "update_bn", lambda net, *a, **k: redone.append(1) or update(net, *a, **k))
    net, _ = fitmod.train_qat(SMALL, x, y, 1, 1, seed=1, lr=0.05, optimizer="sgd", qat_lr=5e-4, bn=True,
                              swa_epochs=2, swa_lr=0.01, state_dir=tmp_path)
    assert [s[:5] for s in stages] == [("fp32", 1, 0.05, "onecycle", 0), ("swa", 2, 0.01, "constant", 2),
                                       ("qat", 1, 5e-4, "onecycle", 0)]
    assert stages[1][5] == tmp_path / "swa.state.pt" and stages[1][5].exists()
    assert redone == [1]
    plain = fitmod.float_twin(SMALL, x, y, 1, seed=1, lr=0.05, optimizer="sgd", bn=True)
    assert any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(), plain.state_dict().values()))


def test_the_cli_refuses_a_negative_swa_length(tmp_path):
    with pytest.raises(SystemExit, match="--swa-epochs -1"):
        tr.main(["--swa-epochs", "-1", "--n-train", "40", "--n-test", "20", "--fp-epochs", "0",
                 "--qat-epochs", "0", "--out", str(tmp_path)])
