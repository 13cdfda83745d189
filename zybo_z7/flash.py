"""make flash: program the PL of a Zybo Z7-20 over JTAG with openFPGALoader.

    python -m zybo_z7.flash --bit build/wmcnn_4w4a/bitstream/waferq.bit

This loads the bitstream into the running PL (volatile; Linux keeps running on the PS).
For a boot from the SD card see zybo_z7/README.md. Every failure before programming
is one sentence on stderr and exit status 2: no bitstream, no openFPGALoader, no cable.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from contract import board

DETECT_TIMEOUT_S = 20
PROGRAM_TIMEOUT_S = 120


class FlashError(Exception):
    """A one-sentence reason nothing was programmed."""


def flash(bit: Path, cable: str | None = None) -> None:
    if not bit.is_file():
        raise FlashError(f"make flash: no bitstream at {bit}; run make bitstream first.")
    tool = shutil.which("openFPGALoader")
    if tool is None:
        raise FlashError("make flash: openFPGALoader is not on PATH; "
                         "install it with apt-get install openfpgaloader.")
    name = board.load()["board"]["openfpgaloader_board"]
    target = ["-c", cable] if cable else ["-b", name]
    try:
        det = subprocess.run([tool, *target, "--detect"], capture_output=True, text=True,
                             timeout=DETECT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        det = None
    if det is None or det.returncode != 0:
        raise FlashError("make flash: openFPGALoader finds no JTAG cable; connect the Zybo's "
                         "PROG/UART micro-USB port, power the board and check the udev rules.")
    prog = subprocess.run([tool, *target, str(bit)], timeout=PROGRAM_TIMEOUT_S)
    if prog.returncode != 0:
        raise FlashError(f"make flash: openFPGALoader failed with status {prog.returncode} "
                         f"while programming {bit}.")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bit", required=True, help="the bitstream (build/<model>/bitstream/waferq.bit)")
    ap.add_argument("--cable", default=None, help="openFPGALoader cable name instead of the board's")
    args = ap.parse_args(argv)
    try:
        flash(Path(args.bit), args.cable)
    except FlashError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"programmed {args.bit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
