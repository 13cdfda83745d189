"""The eight symmetries of a square map written as index maps, independent of
numpy's rot90/flip that contract.views uses: a test's outside view of them."""
import numpy as np


def dihedral_by_index(a: np.ndarray) -> list:
    """[H][W](...) with H == W -> the 8 maps a[p(i, j), q(i, j)] for
    (p, q) each of (+-i, +-j) and (+-j, +-i)."""
    n = a.shape[0]
    i, j = np.indices((n, n))
    r = n - 1
    maps = [(i, j), (i, r - j), (r - i, j), (r - i, r - j), (j, i), (j, r - i), (r - j, i), (r - j, r - i)]
    return [a[p, q] for p, q in maps]
