"""quant.sim2real trains as its --config does unless the command line says
otherwise, so its figures are the recipe's."""
import json
from pathlib import Path

from quant import sim2real
from shared_data import REAL_TRAIN, require

RECIPE = Path(__file__).resolve().parents[1] / "quant" / "configs" / "wmcnn_real_4w4a.json"


def test_trainings_take_the_config_and_the_overrides(tmp_path, monkeypatch):
    real = require(REAL_TRAIN)
    from quant.datasets import wm811k

    pkl = tmp_path / "slice.pkl"
    wm811k.read_frame(real).iloc[::12].to_pickle(pkl)                # 400 real maps
    seen = []

    def fake_train_eval(x, y, x_test, y_test, cfg, seed, fp_epochs, qat_epochs, opt):
        rest = {k: v for k, v in opt.items() if k != "init"}
        seen.append((cfg["block_convs"], opt["init"], rest, x.shape[1:], fp_epochs, qat_epochs))
        score = {"accuracy": 0.5, "macro_f1": 0.5}
        return {"n_train": int(len(y)), "fp32": score, "qat": score}

    monkeypatch.setattr(sim2real, "_train_eval", fake_train_eval)
    base = ["--data", str(pkl), "--runs", "synth_wm811k_only", "--n-synth", "40", "--fp-epochs", "2",
            "--qat-epochs", "1"]
    assert sim2real.main(base + ["--out", str(tmp_path / "a")]) == 0
    recipe = json.loads(RECIPE.read_text())
    want = {k: recipe[k] for k in ("optimizer", "lr", "qat_lr", "weight_decay")}
    assert seen[-1] == (recipe["block_convs"], recipe["init"], want, (48, 48, 1), 2, 1)
    assert want == {"optimizer": "sgd", "lr": 0.1, "qat_lr": 0.0005, "weight_decay": 0.001}

    old = ["--init", "he", "--optimizer", "adam", "--lr", "3e-3", "--qat-lr", "1e-3", "--weight-decay", "0",
           "--block-convs", "1,1,1,1"]
    assert sim2real.main(base + old + ["--out", str(tmp_path / "b")]) == 0
    assert seen[-1][:3] == ((1, 1, 1, 1), "he", {"optimizer": "adam", "lr": 3e-3, "qat_lr": 1e-3,
                                                 "weight_decay": 0.0})
    written = json.loads((tmp_path / "b" / "sim2real.json").read_text())
    assert (written["init"], written["optimizer"], written["block_convs"]) == ("he", "adam", [1, 1, 1, 1])

    # a config without the keys: this tool's earlier defaults
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({k: recipe[k] for k in ("family", "channels", "die_channels", "size")}))
    assert sim2real.main(base + ["--config", str(bare), "--out", str(tmp_path / "c")]) == 0
    assert seen[-1][:3] == (None, "he", {"optimizer": "adam", "lr": 3e-3, "qat_lr": 1e-3, "weight_decay": 0.0})
