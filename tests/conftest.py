"""Shared test setup: tool markers skip with a reason when the tool is missing.

CI installs every tool, so nothing is skipped there.
"""
import shutil

import pytest

# Helper modules whose asserts fail with pytest's detailed messages too.
pytest.register_assert_rewrite("pynq_helpers")
pytest.register_assert_rewrite("csim_helpers")


def pytest_collection_modifyitems(config, items):
    if shutil.which("g++") is None:
        skip = pytest.mark.skip(reason="g++ is not installed (apt-get install g++)")
        for item in items:
            if "needs_gxx" in item.keywords:
                item.add_marker(skip)
