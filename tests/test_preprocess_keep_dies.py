"""contract.preprocess: shrinking a large map keeps every failing die."""
import numpy as np

from contract.preprocess import resize_keep_dies, resize_nearest, to_model_input


def test_one_failing_die_survives_shrinking():
    m = np.ones((212, 84), np.uint8)
    m[101, 40] = 2
    x = to_model_input(m, 48)
    assert (x == 255).sum() == 1
    # nearest neighbour (the old resize) loses it
    from contract.preprocess import pad_square, to_gray

    assert (resize_nearest(pad_square(to_gray(m)), 48) == 255).sum() == 0


def test_block_max_by_hand_and_growing_repeats():
    a = np.array([[0, 128, 0, 0],
                  [0, 0, 0, 255],
                  [128, 0, 0, 0],
                  [0, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(resize_keep_dies(a, 2), [[128, 255], [128, 0]])
    np.testing.assert_array_equal(resize_keep_dies(a, 4), a)
    np.testing.assert_array_equal(resize_keep_dies(a, 8)[::2, ::2], a)
    rng = np.random.default_rng(0)
    for h, w, s in ((37, 29, 10), (30, 50, 48), (212, 84, 64)):
        b = rng.integers(0, 256, (h, w)).astype(np.uint8)
        got = resize_keep_dies(b, s)
        for i in range(0, s, 7):
            for j in range(0, s, 5):
                r0, c0 = i * h // s, j * w // s
                r1, c1 = max((i + 1) * h // s, r0 + 1), max((j + 1) * w // s, c0 + 1)
                assert got[i, j] == b[r0:r1, c0:c1].max()
