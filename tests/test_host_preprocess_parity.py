"""Training (quant.traindata.preprocess) and the host (reader + to_model_input)
produce identical pixels for the same maps saved in every input format."""
import json

import numpy as np
import pytest
from PIL import Image

from host_stm32mp1 import readers
from contract.preprocess import to_model_input
from test_host_formats import bbox, g85_xml, stdf_for, wafer

train = pytest.importorskip("quant.traindata")


@pytest.mark.parametrize("size", [42, 64])
def test_training_and_host_pixels_identical(tmp_path, size):
    maps = [wafer(26, 31, seed=s) for s in range(4)] + [wafer(40, 25, seed=9), wafer(60, 60, seed=5)]
    maps = [bbox(m) for m in maps]     # what an STDF file can carry
    np.save(tmp_path / "stack.npy", np.stack(maps[:4]))
    np.savez(tmp_path / "m.npz", x=np.stack(maps[:4]), y=np.arange(4))
    for i, m in enumerate(maps):
        np.save(tmp_path / f"m{i}.npy", m)
        Image.fromarray((np.array([0, 128, 255], np.uint8)[m]), "L").save(tmp_path / f"m{i}.png")
        (tmp_path / f"m{i}.json").write_text(json.dumps(dict(waferMap=m.tolist(), failureType="none")))
        (tmp_path / f"m{i}.xml").write_text(g85_xml([m]))
        (tmp_path / f"m{i}.stdf").write_bytes(stdf_for([m]))
    want = train.preprocess(maps, size)
    assert want.shape == (len(maps), size, size, 1) and want.dtype == np.uint8
    for fmt in ("npy", "png", "json", "xml", "stdf"):
        items = list(readers.read_files([tmp_path / f"m{i}.{fmt}" for i in range(len(maps))]))
        assert all(isinstance(it, readers.Item) for it in items), (fmt, items)
        got = np.stack([to_model_input(it.map, size) for it in items])
        assert np.array_equal(got, want), fmt
    for name in ("stack.npy", "m.npz"):
        got = np.stack([to_model_input(it.map, size) for it in readers.read_file(tmp_path / name)])
        assert np.array_equal(got, want[:4]), name
