"""NPY, NPZ and grayscale PNG readers (from the file's bytes).

Pickled (object) arrays are refused: loading them would run code from the
file. Shapes are checked from the NPY header and the PNG header before any
pixel is decoded (``limits``).
"""
from __future__ import annotations

import io
import struct
import zipfile

import numpy as np

from host_stm32mp1.readers.limits import MAX_MAPS_CELLS, check_shape


def _check_stack(shape, where: str) -> None:
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if len(shape) not in (2, 3):
        raise ValueError(f"expected a H x W map or an N x H x W stack, got shape {tuple(shape)}")
    check_shape(shape[-2], shape[-1], where)
    if int(np.prod(shape, dtype=np.int64)) > MAX_MAPS_CELLS:
        raise ValueError(f"{where}: {int(np.prod(shape))} cells in one file, more than the "
                         f"limit of {MAX_MAPS_CELLS}")


def split(arr: np.ndarray) -> list[np.ndarray]:
    if arr.dtype == object:
        raise ValueError("object arrays are not supported (save the maps as an N x H x W array)")
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        return list(arr)
    raise ValueError(f"expected a H x W map or an N x H x W stack, got shape {arr.shape}")


def _npy(f, where: str) -> np.ndarray:
    """One NPY stream, its header checked before the data is read."""
    start = f.tell()
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype.hasobject:
        raise ValueError("object arrays are not supported (save the maps as an N x H x W array)")
    _check_stack(shape, where)
    f.seek(start)
    return np.load(f, allow_pickle=False)


def read_npy(data: bytes, **_):
    return split(_npy(io.BytesIO(data), "NPY array")), None


def read_npz(data: bytes, **_):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        keys = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
        key = "x" if "x" in keys else "arr_0" if "arr_0" in keys else None
        if key is None:
            raise ValueError(f"no 'x' or 'arr_0' array (keys: {', '.join(keys) or 'none'})")
        # Member sizes in the zip directory bound what decompression can produce.
        if sum(i.file_size for i in z.infolist()) > MAX_MAPS_CELLS * 8 + (1 << 20):
            raise ValueError("NPZ members are larger than the limit for one file")
        with z.open(key + ".npy") as f:
            maps = split(_npy(io.BytesIO(f.read()), f"NPZ '{key}'"))
        y = None
        if "y" in keys:
            with z.open("y.npy") as f:
                y = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return maps, y


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(data: bytes, **_):
    from PIL import Image

    # The IHDR's size, before PIL sees the file: a 12000x12000 PNG is 144 MB of
    # pixels, and PIL's own bomb check fires only far above what a wafer map is.
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR" or len(data) < 24:
        raise ValueError("not a PNG file (no PNG signature and IHDR header)")
    width, height = struct.unpack(">II", data[16:24])
    check_shape(height, width, "PNG image")
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in ("L", "P", "1", "I;16", "I"):
            raise ValueError(f"PNG mode {im.mode}: expected a grayscale image")
        im.load()
        arr = np.asarray(im.convert("L") if im.mode != "P" else im)
    return [arr], None
