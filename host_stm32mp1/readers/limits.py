"""Size limits of the readers, from what a wafer map can be.

A 300 mm wafer of 0.1 mm dies is 3,000 dies across; 4,096 per side leaves
room and keeps one map at 16 MiB as uint8. Every reader checks a map's size
from its header or row count before it allocates the map, so a hostile or
broken file cannot make the host (an STM32MP1 with 512 MiB) decode gigabytes.
"""
MAX_SIDE = 4096                      # rows or columns of one map
MAX_CELLS = MAX_SIDE * MAX_SIDE      # cells of one map
MAX_FILE_BYTES = 256 << 20           # one file, read into memory once (after gunzip for .gz)
MAX_MAPS_CELLS = 64 << 20            # all maps of one file together (NPY/NPZ stacks)
MAX_JSON_BYTES = 32 << 20            # WM-811K JSON rows: Python lists cost ~10x the text


def check_shape(rows: int, cols: int, where: str = "map") -> None:
    if rows > MAX_SIDE or cols > MAX_SIDE:
        raise ValueError(f"{where} of {rows}x{cols} is larger than a wafer map can be "
                         f"(at most {MAX_SIDE} rows and columns)")


class Incomplete(ValueError):
    """The file ends early (cut, or still being written): ``watch`` waits for more."""
