"""Import a QONNX or QCDQ model (Brevitas's bnn_pynq family and the like) as an
integer layer graph: ``import_model(onnx_path, name, out_dir)`` writes the same
export folder as ``make export``. Torch-free: qonnx, onnx and numpy.

Modules: ``read`` (load, QCDQ fuse, qonnx cleanup), ``mapping`` (the walk over
the nodes), ``layers`` (weighted layers and their thresholds), ``quantizers``,
``thresholds`` (exact integer thresholds), ``verify`` (against execute_onnx),
``api`` and ``__main__`` (the CLI behind ``make import``)."""
from quant.onnx_import.api import ImportReport, import_model
from quant.onnx_import.refuse import ImportRefused

__all__ = ["ImportRefused", "ImportReport", "import_model"]
