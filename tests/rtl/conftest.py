"""RTL tests: markers to select them (``-m rtl_sim``, ``-m "not rtl_sim"``).

A simulation test skips with a reason when its simulator is missing (see rtl_sim.py);
the synthesis tests skip without yosys.
"""


def pytest_configure(config):
    config.addinivalue_line("markers", "rtl_sim: runs a cocotb test bench on Icarus or Verilator")
    config.addinivalue_line("markers", "needs_yosys: needs yosys (Debian 0.23 works)")
