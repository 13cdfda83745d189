"""quant.train's config files: loading and overriding, the shipped configs'
names against their bit widths, and the real-map recipe fitting the XC7Z020
at every width."""
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from quant import train as tr  # noqa: E402

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "quant" / "configs").glob("*.json"))


def test_config_loading_and_override(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"family": "vgg_s", "w_bits": [8, 4, 4, 4, 4, 4, 8], "a_bits": 4,
                               "width": 8, "qat_epochs": 9, "loss": "focal", "balanced": True}))
    args = tr.parse_args(["--config", str(cfg), "--out", str(tmp_path), "--qat-epochs", "2"])
    assert args.family == "vgg_s" and args.qat_epochs == 2 and args.loss == "focal" and args.balanced
    spec = tr.make_spec(args)
    assert [l["w_bits"] for l in spec.layers() if "w_bits" in l] == [8, 4, 4, 4, 4, 4, 8]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"familly": "vgg_s"}))
    with pytest.raises(SystemExit):
        tr.parse_args(["--config", str(bad), "--out", str(tmp_path)])


def test_name_tells_two_recipes_at_one_width_apart(tmp_path):
    """The wide W2A2 config is named apart from the narrow one, in the spec that
    metrics.json and model.json carry; a name that is no plain identifier, or a
    name for a family that names its models itself, is refused."""
    configs = Path(CONFIGS[0]).parent
    specs = {}
    for stem in ("wmcnn_real_2w2a", "wmcnn_real_2w2a_wide"):
        args = tr.parse_args(["--config", str(configs / f"{stem}.json"), "--out", str(tmp_path)])
        specs[stem] = tr.make_spec(args)
    assert specs["wmcnn_real_2w2a"].name == "wmcnn_2w2a"
    assert specs["wmcnn_real_2w2a_wide"].name == "wmcnn_wide_2w2a"
    assert specs["wmcnn_real_2w2a_wide"].channels == (24, 48, 96, 96)
    for bad in (["--name", "Wide net"], ["--name", "../x"], ["--family", "vgg_s", "--name", "v"]):
        with pytest.raises(SystemExit):
            tr.make_spec(tr.parse_args(["--out", str(tmp_path), *bad]))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_parse_and_name_their_bits(path, tmp_path):
    args = tr.parse_args(["--config", str(path), "--out", str(tmp_path)])
    spec = tr.make_spec(args)
    layers = spec.layers()
    w = {l["w_bits"] for l in layers if "w_bits" in l}
    stem = path.stem
    assert stem.startswith(args.family)
    tag = [p for p in stem.split("_") if p[0].isdigit() and "w" in p and p.endswith("a")][0]
    wb, ab = tag[:-1].split("w")
    assert int(ab) in {l["out_bits"] for l in layers if l.get("requant")}
    edge = [p for p in stem.split("_") if p.startswith("edge")]
    if edge:    # W<body>A..., the first and last weighted layers at the edge width
        weighted = [l["w_bits"] for l in layers if l["type"] in ("conv2d", "dense") and l["name"] != "decode"]
        assert weighted[0] == weighted[-1] == int(edge[0][4:]) and set(weighted[1:-1]) == {int(wb)}
    else:
        assert int(wb) == max(w)


@pytest.mark.parametrize("bits", ["8", "4", "2", "edge8", "wide"])
def test_real_map_recipe_fits_the_part_at_every_width(bits, tmp_path):
    """Issue 15: the recipe `make train DATA=` trains fits the XC7Z020 by the
    estimator at W8A8, W4A4 and W2A2, and so do W2A2 with 8-bit edge weights
    and W2A2 at 1.5x the channels (wmcnn_real_2w2a_edge8.json, _wide.json),
    with the folding the HLS flow picks."""
    from hls import estimate, folding

    own = {"edge8": "wmcnn_real_2w2a_edge8.json", "wide": "wmcnn_real_2w2a_wide.json"}
    opts = (["--config", str(CONFIGS[0].parent / own[bits])] if bits in own else
            ["--config", str(CONFIGS[0].parent / "wmcnn_real_4w4a.json"), "--w-bits", bits, "--a-bits", bits])
    args = tr.parse_args([*opts, "--out", str(tmp_path)])
    layers = tr.make_spec(args).layers()
    assert layers[0]["name"] == "decode"
    est = estimate.estimate(layers, folding.default_parallelism(layers))
    assert estimate.fits(est), estimate.table(est)


class _Split(Exception):
    pass


def test_split_seed_holds_the_rows_still_across_training_seeds(tmp_path, monkeypatch):
    """--split-seed picks the held-out rows of a file without Test rows and the
    validation part apart from --seed (which picks both when it is absent), so
    that training seeds compare on the same maps. On the real numpy-2 sample."""
    import numpy as np
    from quant.traindata import split_seed
    from shared_data import REAL_NP2, require

    seen, loaded = [], []
    load = tr.load_data

    def record(y, seed, frac=0.1, fold=0):
        seen.append((len(y), seed, fold))
        raise _Split

    monkeypatch.setattr(tr, "val_split", record)
    monkeypatch.setattr(tr, "load_data", lambda args: loaded.append(load(args)) or loaded[-1])
    pkl = require(REAL_NP2)
    runs = {}
    for name, extra in (("own", ["--seed", "3"]), ("fixed0", ["--seed", "3", "--split-seed", "0"]),
                        ("seed0", ["--seed", "0"]), ("fold3", ["--seed", "0", "--val-fold", "3"])):
        args = tr.parse_args(["--data", str(pkl), "--size", "16", "--out", str(tmp_path), *extra])
        with pytest.raises(_Split):
            tr.run(args)
        runs[name] = loaded[-1]         # the rows run() itself loaded
    assert [(seed, fold) for _, seed, fold in seen] == [(3, 0), (0, 0), (0, 0), (0, 3)]
    same = [np.array_equal(a, b) for a, b in zip(runs["fixed0"], runs["seed0"])]
    assert same == [True] * 4                   # train and test rows alike
    assert not np.array_equal(runs["own"][3], runs["seed0"][3]) or \
        not np.array_equal(runs["own"][2], runs["seed0"][2])
    assert all(np.array_equal(a, b) for a, b in zip(runs["fold3"], runs["seed0"]))   # the fold moves no test row
    assert split_seed({"seed": 3}) == 3         # a metrics.json from before the option
    assert split_seed({"seed": 3, "split_seed": 0}) == 0


def test_validation_folds_cover_the_training_rows_once():
    """--val-fold K validates on the K-th tenth of each class's shuffled
    training rows: on the real file's labels the ten parts are disjoint,
    cover every row, keep each class's share to within a map, and fold 0 is
    the part every run before the option validated on (the first
    round(n / 10) rows of each class's shuffle, at least one)."""
    import numpy as np
    from quant.traindata import load_data, val_fold
    from shared_data import REAL_TRAIN, require

    args = tr.parse_args(["--data", str(require(REAL_TRAIN)), "--size", "16", "--out", "unused"])
    y = load_data(args)[1]
    folds = [tr.val_split(y, 0, fold=k) for k in range(10)]
    parts = np.concatenate([val for val, _ in folds])
    assert len(parts) == len(y) and len(np.unique(parts)) == len(y)
    for val, rest in folds:
        assert np.array_equal(np.sort(np.concatenate([val, rest])), np.arange(len(y)))
        for c in np.unique(y):
            assert abs((y[val] == c).sum() - (y == c).sum() / 10) <= 1
    rng = np.random.default_rng(0 + 7)
    before = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:max(1, round((y == c).sum() / 10))]
                                     for c in np.unique(y)]))
    assert np.array_equal(folds[0][0], before)
    assert not np.array_equal(tr.val_split(y, 1, fold=3)[0], folds[3][0])     # the seed still shuffles
    with pytest.raises(ValueError, match="fold 10: there are 10"):
        tr.val_split(y, 0, fold=10)
    with pytest.raises(SystemExit):
        tr.parse_args(["--out", "unused", "--val-fold", "10"])
    assert val_fold({"seed": 0}) == 0 and val_fold({"val_fold": 4}) == 4     # runs from before the option


def test_fit_fraction_keeps_the_validation_and_held_out_maps(tmp_path, monkeypatch):
    """--fit-fraction F fits on a stratified F of the rows outside validation
    (each class's count rounded, at least one): on the real file's labels the
    draw is a subset of the fitting rows, misses no class, is repeatable, and
    run() hands exactly those rows to training while validation stays put."""
    import numpy as np
    from quant.traindata import load_data
    from shared_data import REAL_NP2, REAL_TRAIN, require

    args = tr.parse_args(["--data", str(require(REAL_TRAIN)), "--size", "16", "--out", "unused"])
    y = load_data(args)[1]
    val, rest = tr.val_split(y, 0, fold=2)
    half = tr.fit_rows(y, rest, 0.5, 0)
    assert np.all(np.isin(half, rest)) and len(np.unique(half)) == len(half)
    for c in np.unique(y[rest]):
        n = (y[rest] == c).sum()
        assert (y[half] == c).sum() == max(1, int(round(0.5 * n)))
    assert np.array_equal(half, tr.fit_rows(y, rest, 0.5, 0))
    assert not np.array_equal(half, tr.fit_rows(y, rest, 0.5, 1))
    assert tr.fit_rows(y, rest, 1.0, 0) is rest
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fitting fraction"):
            tr.fit_rows(y, rest, bad, 0)
    with pytest.raises(SystemExit, match="--fit-fraction"):
        tr.main(["--fit-fraction", "0", "--out", str(tmp_path)])

    class _Stop(Exception):
        pass

    seen = []

    def stop(spec, x, yy, *a, **kw):
        seen.append(np.asarray(yy).copy())
        raise _Stop

    monkeypatch.setattr(tr, "train_qat", stop)
    pkl = str(require(REAL_NP2))
    for extra in ([], ["--fit-fraction", "0.5"]):
        with pytest.raises(_Stop):
            tr.run(tr.parse_args(["--data", pkl, "--size", "16", "--out", str(tmp_path),
                                  "--val-fold", "2", *extra]))
    y2 = load_data(tr.parse_args(["--data", pkl, "--size", "16", "--out", "unused"]))[1]
    _, rest2 = tr.val_split(y2, 0, fold=2)
    assert np.array_equal(seen[0], y2[rest2])
    assert np.array_equal(seen[1], y2[tr.fit_rows(y2, rest2, 0.5, 0)])
