"""The real waferq module in a booted kernel: tests/qemu/run.sh boots, with KMEMLEAK=1, a
small kmemleak kernel built from Debian's linux-source-6.1 (tests/qemu/kmemleak/; cached in
build/qemu-kmemleak) under qemu-system-arm (-M virt, TCG) with the module, a TEST-ONLY
dmaengine model of the AXI DMA and the core (tests/qemu/testonly_dma/), and a guest /init
that drives /dev/waferq0 through every case below (tests/qemu/guest/), then
scans for leaks. `make driver-qemu` without KMEMLEAK runs the same cases in Debian's armmp
kernel."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = ("open_write_poll_read_ioctl_close", "timeout_close_reopen_write",
         "late_reply_dropped_by_tag", "signal_during_read", "signal_during_send",
         "two_openers_ebusy", "submit_and_error_reply", "four_mib_requests",
         "read_error_not_eof", "reset_while_reading", "unbind_and_rmmod_with_file_open",
         "insmod_rmmod_cycles", "probe_checks_the_bitstream", "kernel_log_clean",
         "kmemleak_clean")

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None,
                                reason="qemu-system-arm is not installed "
                                       "(apt-get install qemu-system-arm)")


def _run(**extra):
    env = dict(os.environ, JOBS="2", KMEMLEAK="1", **extra)
    # Hang guard only: a cold run builds the kernel (minutes of CPU), a warm one boots
    # and runs the cases in well under a minute.
    p = subprocess.run([str(ROOT / "tests" / "qemu" / "run.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=3600)
    if p.returncode == 77:
        pytest.skip(p.stderr.strip().splitlines()[-1])
    return p


@pytest.fixture(scope="module")
def guest_run():
    return _run(WQ_LEAK="0")


def test_every_case_passes_in_the_guest(guest_run):
    out = guest_run.stdout
    assert re.search(rf"^{len(CASES)} passed, 0 failed$", out, re.M), out + guest_run.stderr
    assert guest_run.returncode == 0, out + guest_run.stderr
    for case in CASES:
        assert re.search(rf"^PASS {case}$", out, re.M), f"{case} did not pass:\n{out}"
    assert re.search(r"^kmemleak: \d+ suspected leaks, 0 of them from waferq", out, re.M), out


def test_the_leak_check_fails_on_a_deliberate_leak(guest_run):
    """The model loses allocations on purpose (its TEST-ONLY `leak` parameter): the run
    must fail on kmemleak_clean alone and name the function that leaked."""
    p = _run(WQ_LEAK="1")
    out = p.stdout
    assert p.returncode != 0, out
    assert re.search(rf"^{len(CASES) - 1} passed, 1 failed$", out, re.M), out + p.stderr
    assert re.search(r"^FAIL kmemleak_clean: kmemleak reports \d+ leaks", out, re.M), out
    assert "tm_leak_on_purpose" in out and "[waferq_testonly_dma]" in out, out


def test_the_provider_is_marked_test_only():
    srcs = sorted((ROOT / "tests" / "qemu" / "testonly_dma").glob("*.[ch]"))
    assert srcs
    for src in srcs:
        assert "TEST ONLY, never part of the product" in src.read_text(), src
    # nothing of the product builds or ships it
    for path in (ROOT / "drivers").rglob("*"):
        if path.is_file() and path.suffix in {".c", ".h", ""} and path.name != "README.md":
            assert "testonly" not in path.read_text(errors="ignore"), path
