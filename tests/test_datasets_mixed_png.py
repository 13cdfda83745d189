"""MixedWM38 npz loader, multi-label metrics and the PNG-folder loader."""
import numpy as np
import pytest
from PIL import Image

from contract.preprocess import CATEGORY_CODES
from quant import synth
from quant.datasets import mixedwm38, multilabel, pngdir
from contract.spec import WAFER_CLASSES


def test_mixedwm38_roundtrip_and_layout(tmp_path):
    maps, labels, _ = synth.mixed_dataset(40, seed=1)
    path = tmp_path / "Wafer_Map_Datasets.npz"
    np.savez(path, arr_0=maps.astype(np.int32), arr_1=labels.astype(np.int32))  # the file uses ints
    m, y = mixedwm38.load(path)
    assert m.shape == (40, 52, 52) and m.dtype == np.uint8 and np.array_equal(m, maps)
    assert y.shape == (40, 8) and y.dtype == np.uint8 and np.array_equal(y, labels)
    assert mixedwm38.MIXED_LABELS == WAFER_CLASSES[:8] == synth.MIXED_PATTERNS
    x, _ = mixedwm38.load(path, size=42)
    assert x.shape == (40, 42, 42, 1) and set(np.unique(x)) <= set(CATEGORY_CODES.tolist())


def test_mixedwm38_names_and_single_labels():
    y = np.array([[0] * 8, [1, 0, 0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1, 0]])
    assert [mixedwm38.combination_name(r) for r in y] == ["Normal", "C", "C+EL+L+S", "R"]
    assert mixedwm38.single_class_labels(y).tolist() == [8, 0, -1, 6]
    ids, names = mixedwm38.combination_ids(y)
    assert [names[i] for i in ids] == ["Normal", "C", "C+EL+L+S", "R"]


@pytest.mark.parametrize("arrays, match", [
    (dict(arr_0=np.zeros((2, 52, 52))), "arr_1"),
    (dict(arr_0=np.zeros((2, 52, 52)), arr_1=np.zeros((2, 7))), r"\[N\]\[8\]"),
    (dict(arr_0=np.full((2, 5, 5), 3), arr_1=np.zeros((2, 8))), "0..2"),
    (dict(arr_0=np.zeros((2, 5, 5)), arr_1=np.full((2, 8), 2)), "multi-hot"),
    (dict(arr_0=np.zeros((3, 5, 5)), arr_1=np.zeros((2, 8))), "3 maps but 2"),
])
def test_mixedwm38_rejects_bad_files(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        mixedwm38.load(path)


def test_multilabel_metrics_by_hand():
    t = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    p = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    pl = multilabel.per_label(t, p)
    assert pl["precision"].tolist() == [1.0, 1.0, 0.0]
    assert pl["recall"].tolist() == [1.0, 0.5, 0.0]
    assert np.allclose(pl["f1"], [1.0, 2 / 3, 0.0]) and pl["support"].tolist() == [2, 2, 1]
    assert multilabel.exact_match_ratio(t, p) == 0.5
    assert multilabel.hamming_loss(t, p) == 3 / 12
    r = multilabel.report(t, p, names=["a", "b", "c"])
    assert r["micro_precision"] == 0.75 and r["micro_recall"] == 0.6
    assert r["per_label"]["b"]["recall"] == 0.5 and np.isclose(r["macro_f1"], (1 + 2 / 3) / 3)
    assert multilabel.scores_to_multi_hot([[0.2, 0.5, 0.9]]).tolist() == [[0, 1, 1]]
    assert multilabel.report(t, t)["exact_match"] == 1.0
    with pytest.raises(ValueError):
        multilabel.per_label(t, p[:, :2])


def _write_pngs(root, names, n=2):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (20 + i, 30), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_pngdir_wafer_classes_and_errors(tmp_path):
    _write_pngs(tmp_path, ["Center", "edge_loc", "none"])
    (tmp_path / "Center" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (tmp_path / "none" / "empty.png").write_bytes(b"")
    good = tmp_path / "none" / "0.png"
    (tmp_path / "none" / "cut.png").write_bytes(good.read_bytes()[:60])  # truncated
    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "Center" / "rgb.png")
    (tmp_path / "Center" / "notes.txt").write_text("ignored")
    d = pngdir.load(tmp_path)
    assert d.classes == WAFER_CLASSES
    assert sorted({p.name for p, _ in d.errors}) == ["broken.png", "cut.png", "empty.png"]
    assert all(reason for _, reason in d.errors)
    assert len(d.images) == 7 and all(m.ndim == 2 and m.dtype == np.uint8 for m in d.images)
    want = {"Center": 0, "edge_loc": 2, "none": 8}
    assert [want[p.parent.name] for p in d.paths] == d.labels.tolist()
    red = d.images[[p.name for p in d.paths].index("rgb.png")]
    assert red.shape == (8, 9) and np.all(red == 76)  # ITU-R 601 luma of pure red
    x = pngdir.load(tmp_path, size=16).images
    assert x.shape == (7, 16, 16, 1)


def test_pngdir_other_names_sorted_and_explicit(tmp_path):
    _write_pngs(tmp_path, ["Scratch", "bad_die", "Alpha"])
    d = pngdir.load(tmp_path)
    assert d.classes == ("Alpha", "Scratch", "bad_die") and d.errors == []
    assert np.bincount(d.labels).tolist() == [2, 2, 2]
    e = pngdir.load(tmp_path, classes=("bad-die", "Scratch", "Alpha"))
    assert e.classes == ("bad-die", "Scratch", "Alpha") and e.labels.tolist() == [2, 2, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="not among"):
        pngdir.load(tmp_path, classes=("Alpha",))
    with pytest.raises(ValueError, match="no class subfolders"):
        pngdir.load(tmp_path / "Alpha")


def test_pngdir_save_load_roundtrip(tmp_path):
    maps, labels = synth.dataset(18, seed=2)
    imgs = [CATEGORY_CODES[m] for m in maps]
    pngdir.save(tmp_path, imgs, labels, WAFER_CLASSES)
    d = pngdir.load(tmp_path)
    got = {p.name: (m, k) for p, m, k in zip(d.paths, d.images, d.labels)}
    for i, (img, k) in enumerate(zip(imgs, labels)):
        m, kk = got[f"{i:06d}.png"]
        assert np.array_equal(m, img) and kk == k
