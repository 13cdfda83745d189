import numpy as np
import pytest
from PIL import Image

from host_stm32mp1 import readers
from contract.preprocess import to_model_input


def items(path, labels=None):
    return list(readers.read_file(path, labels))


def test_npy_single_and_stack(tmp_path):
    one = np.array([[0, 1], [2, 1]], np.uint8)
    np.save(tmp_path / "one.npy", one)
    np.save(tmp_path / "stack.npy", np.stack([one, one * 0, one]))
    got = items(tmp_path / "one.npy")
    assert len(got) == 1 and np.array_equal(got[0].map, one) and got[0].label is None
    got = items(tmp_path / "stack.npy")
    assert [g.index for g in got] == [0, 1, 2]


def test_npz_keys_and_labels(tmp_path):
    x = np.zeros((4, 5, 6), np.uint8)
    np.savez(tmp_path / "xy.npz", x=x, y=np.array([0, 3, 8, 1]))
    np.savez(tmp_path / "arr.npz", x)
    assert [g.label for g in items(tmp_path / "xy.npz")] == [0, 3, 8, 1]
    assert len(items(tmp_path / "arr.npz")) == 4
    np.savez(tmp_path / "bad.npz", z=x)
    (f,) = items(tmp_path / "bad.npz")
    assert isinstance(f, readers.Failure) and "no 'x'" in f.reason
    np.savez(tmp_path / "badlab.npz", x=x, y=np.arange(3))
    (f,) = items(tmp_path / "badlab.npz")
    assert isinstance(f, readers.Failure) and "3 labels for 4 maps" in f.reason


def test_png_grayscale(tmp_path):
    img = (np.arange(12 * 10) % 256).astype(np.uint8).reshape(12, 10)
    Image.fromarray(img, "L").save(tmp_path / "m.png")
    (g,) = items(tmp_path / "m.png")
    assert np.array_equal(g.map, img)
    Image.fromarray(np.zeros((3, 3, 3), np.uint8), "RGB").save(tmp_path / "rgb.png")
    (f,) = items(tmp_path / "rgb.png")
    assert isinstance(f, readers.Failure) and "grayscale" in f.reason


def test_corrupt_and_missing_files(tmp_path):
    np.save(tmp_path / "ok.npy", np.ones((3, 3), np.uint8))
    data = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(data[:-4])
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    np.save(tmp_path / "obj.npy", np.array([np.zeros(2), np.zeros(3)], dtype=object), allow_pickle=True)
    paths = ["trunc.npy", "junk.npz", "junk.png", "nope.npy", "a.txt", "obj.npy", "ok.npy"]
    got = list(readers.read_files([tmp_path / p for p in paths]))
    fails = [g for g in got if isinstance(g, readers.Failure)]
    assert [f.source.rsplit("/", 1)[1] for f in fails] == paths[:-1]
    assert all(f.reason for f in fails)
    assert isinstance(got[-1], readers.Item)


def test_preprocess_categories_and_aspect():
    m = np.zeros((4, 8), np.uint8)
    m[:, :4] = 1
    m[:, 4:] = 2
    x = to_model_input(m, 8)
    assert x.shape == (8, 8, 1) and x.dtype == np.uint8
    assert set(np.unique(x)) <= {0, 128, 255}
    # padded to 8x8 centred: rows 0-1 and 6-7 are "no die"
    assert (x[:2] == 0).all() and (x[6:] == 0).all()
    assert (x[2:6, :4, 0] == 128).all() and (x[2:6, 4:, 0] == 255).all()


def test_preprocess_nearest_keeps_values_and_grayscale():
    rng = np.random.default_rng(1)
    m = rng.integers(0, 3, (37, 29))
    for size in (16, 42, 80):
        x = to_model_input(m, size)
        assert set(np.unique(x)) <= {0, 128, 255}
    gray = rng.integers(0, 256, (20, 20)).astype(np.uint8)
    gray[0, 0] = 200
    assert np.array_equal(to_model_input(gray, 20)[..., 0], gray)
    assert np.array_equal(to_model_input(gray, 40)[::2, ::2, 0], gray)


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 0)), np.full((3, 3), 300),
                                 np.full((2, 2), 0.5), np.full((2, 2), -1)])
def test_preprocess_rejects(bad):
    with pytest.raises(ValueError):
        to_model_input(bad, 8)
