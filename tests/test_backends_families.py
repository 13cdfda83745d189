"""The board backends take the topology of any model family from model.json."""
import numpy as np
import pytest

from contract import blob
from contract.intmodel import random_model
from contract.zoo import ZooSpec, buffer_spec
from zybo_z7.backends import Accelerator, make_backend


@pytest.mark.parametrize("spec", [ZooSpec("mobilenet_s", width=4), buffer_spec(in_size=32, width=4)],
                         ids=lambda s: s.family)
def test_reference_backend_runs_a_zoo_model(tmp_path, spec):
    model = random_model(spec, seed=2)
    model.save(tmp_path)
    accel = Accelerator(make_backend("reference", tmp_path))
    assert accel.query()["topology_hash"] == model.topology_hash
    accel.load_weights(blob.pack(model))
    x = np.random.default_rng(0).integers(0, 256, (3, *model.input_shape), dtype=np.uint8)
    for img, want in zip(x, model.forward(x)):
        cls, logits = accel.infer(img)
        assert np.array_equal(logits, want) and cls == int(np.argmax(want))
