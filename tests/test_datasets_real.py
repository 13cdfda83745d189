"""The shared real WM-811K files (../shared/data): both load, in small slices.

wm811k-real-train.pkl was written by pandas 2.3 / numpy 1.26,
wm811k-real-sample-numpy2.pkl by pandas 3 / numpy 2 (``numpy._core`` module
paths and a pandas-3 ``str`` column, which pandas 2 cannot read by itself).
"""

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from quant.datasets import wm811k  # noqa: E402
from contract.spec import WAFER_CLASSES  # noqa: E402
from shared_data import REAL_NP2, REAL_TRAIN, SHARED_DATA  # noqa: E402

DATA, TRAIN, NP2 = SHARED_DATA, REAL_TRAIN, REAL_NP2

pytestmark = pytest.mark.skipif(not (TRAIN.exists() and NP2.exists()), reason=f"no real data in {DATA}")


@pytest.fixture(scope="module")
def train_df():
    return wm811k.read_frame(TRAIN)


@pytest.fixture(scope="module")
def np2_df():
    return wm811k.read_frame(NP2)


def test_numpy2_pickle_needs_the_shim():
    # What the issue reported: the plain reader stops on numpy 2's module paths.
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:
        pytest.skip("under numpy 2 the plain reader has numpy._core")
    with pytest.raises(ModuleNotFoundError, match="numpy._core"):
        pd.read_pickle(NP2)


def test_numpy2_rows_equal_the_numpy1_rows(train_df, np2_df):
    assert len(np2_df) == 300 and list(np2_df.columns) == list(train_df.columns)
    where = {(lot, w): i for i, (lot, w) in enumerate(zip(train_df["lotName"], train_df["waferIndex"]))}
    for j in range(0, 300, 10):  # a slice: 30 rows
        row = np2_df.iloc[j]
        i = where[(str(row["lotName"]), row["waferIndex"])]
        assert np.array_equal(np.asarray(row["waferMap"]), np.asarray(train_df["waferMap"].iloc[i]))
        assert wm811k._cell(row["failureType"]) == wm811k._cell(train_df["failureType"].iloc[i])
    # the pandas-3 string column reads as strings
    assert all(isinstance(v, str) for v in np2_df["lotName"].iloc[:5])


def test_training_only_file_is_split_stratified(train_df):
    # Every row is "Training": the loader must hold out a stratified test split.
    sl = train_df.iloc[::16]  # 300 rows of all nine classes
    d = wm811k.from_frame(sl, n_classes=9, size=32, test_fraction=0.2, seed=0)
    assert d.split_source == "stratified"
    n_test = np.bincount(d.test.labels, minlength=9)
    n_all = n_test + np.bincount(d.train.labels, minlength=9)
    assert (n_all > 0).sum() == 9
    assert np.all(np.abs(n_test - 0.2 * n_all) <= 1)
    assert not set(d.train.rows) & set(d.test.rows)
    assert d.train.maps.shape[1:] == (32, 32, 1) and d.train.maps.dtype == np.uint8


def test_numpy2_file_loads_with_unlabeled_rows_counted(np2_df):
    df = np2_df.iloc[:60].copy()
    df.loc[df.index[:7], "failureType"] = pd.Series([np.zeros((0, 0))] * 7, index=df.index[:7])
    d = wm811k.from_frame(df, n_classes=9, size=24)
    assert d.skipped == {"unlabeled": 7}
    assert len(d.train.labels) + len(d.test.labels) == 53


def test_file_order_is_not_the_split_order(train_df):
    # The file is sorted by class; its first rows are all one class.
    first = {wm811k._cell(v) for v in train_df["failureType"].iloc[:50]}
    assert len(first) == 1
    assert set(WAFER_CLASSES) == {wm811k._cell(v) for v in train_df["failureType"]}


def test_pickle_module_paths():
    # numpy 2 names resolve to modules that exist under the installed numpy.
    import importlib

    for name in ("numeric", "multiarray"):
        module, attr = wm811k._legacy_location(f"numpy._core.{name}", "dtype")
        assert getattr(importlib.import_module(module), attr) is np.dtype
