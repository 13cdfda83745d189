"""The host wheel (numpy only, exactly the modules it imports) and host.toml's reader."""
import logging
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from deploy import host_wheel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "host"))
import waferq_host_config as hc  # noqa: E402


def test_closure_is_the_host_and_four_protocol_modules():
    mods = set(host_wheel.host_modules())
    # The stream format too: the host sends wafer maps as its PACK_DIE2 words (issue 20).
    assert {"protocol", "protocol.wire", "protocol.results", "protocol.stream", "protocol.auth",
            "host_stm32mp1.cli", "host_stm32mp1.readers.stdf", "waferq_host_config"} <= mods
    # Not needed by the host: ioctls, the C header generator.
    assert not mods & {"protocol.ioctl", "protocol.codegen"}
    assert not any(m.split(".")[0] in ("quant", "hls", "zybo_z7") for m in mods)


def test_closure_refuses_a_host_module_that_needs_quant(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from quant.train import load_checkpoint\n")
    with pytest.raises(host_wheel.ClosureError, match="quant.train <- bad"):
        host_wheel.closure({"bad": bad})


def test_wheel_contents_and_metadata(tmp_path):
    wheel = host_wheel.build(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    py = {n[:-3].replace("/", ".").removesuffix(".__init__") for n in names if n.endswith(".py")}
    assert py == set(host_wheel.host_modules())
    requires = [ln for ln in meta.splitlines() if ln.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == ["Requires-Dist: numpy>=1.24"]
    assert "waferq-host = host_stm32mp1.cli:main" in entry
    assert "waferq-host-service = waferq_host_config:main" in entry
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"Version: {main}" in meta


def write(tmp_path, text):
    p = tmp_path / "host.toml"
    p.write_text(text)
    return str(p)


GOOD = ('boards = ["10.0.0.2:5150"]\ninbox = "/srv/in"\nmodel = "/usr/share/waferq/model"\n'
        'db = "postgresql://line@db/waferq"\nkey_file = "/etc/waferq/wire.key"\nbatch = 32\n'
        'poll_interval = 0.5\npass_bins = [1, 2]\nretries = 3\n')


def test_config_to_watch_and_status_argv(tmp_path):
    cfg = hc.load(write(tmp_path, GOOD))
    assert hc.watch_argv(cfg) == [
        "watch", "/srv/in", "--board", "10.0.0.2:5150", "--model", "/usr/share/waferq/model",
        "--no-progress", "--key-file", "/etc/waferq/wire.key", "--retries", "3",
        "--db", "postgresql://line@db/waferq", "--batch", "32", "--poll-interval", "0.5",
        "--pass-bins", "1,2"]
    # Every argv the config makes parses with the host's own parser.
    from host_stm32mp1.cli import build_parser
    a = build_parser().parse_args(hc.watch_argv(cfg))
    assert (a.dir, a.db, a.batch, a.poll_interval, a.pass_bins) == ("/srv/in", cfg["db"], 32, 0.5, "1,2")
    two = hc.load(write(tmp_path, GOOD.replace('["10.0.0.2:5150"]', '["a:1", "b:2"]')))
    assert [x[2] for x in hc.status_argvs(two)] == ["a:1", "b:2"]
    build_parser().parse_args(hc.status_argvs(two)[1])
    a = build_parser().parse_args(hc.watch_argv(two))
    assert a.board == ["a:1", "b:2"]


@pytest.mark.parametrize("text,message", [
    (GOOD + "bacth = 3\n", "unknown key.*bacth"),
    (GOOD.replace('inbox = "/srv/in"\n', ""), "missing key 'inbox'"),
    (GOOD.replace("batch = 32", "batch = true"), "batch = True should be int"),
    (GOOD.replace("batch = 32", 'batch = "32"'), "should be int"),
    (GOOD.replace('["10.0.0.2:5150"]', "[]"), "non-empty list"),
    (GOOD.replace("[1, 2]", '["1"]'), "pass_bins must be a list of integers"),
    ("boards = [", "host.toml"),
])
def test_config_errors_name_the_problem(tmp_path, text, message):
    with pytest.raises(hc.ConfigError, match=message):
        hc.load(write(tmp_path, text))


def test_cli_exit_2_with_one_sentence(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'deploy/host'}")
    proc = subprocess.run([sys.executable, "-m", "waferq_host_config", "--config",
                           str(tmp_path / "none.toml"), "watch"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot read")
    proc = subprocess.run([sys.executable, "-m", "waferq_host_config", "--config",
                           write(tmp_path, GOOD), "argv"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0].startswith("watch /srv/in --board")


def test_journald_priority_prefix():
    f = hc.JournalFormatter("%(name)s: %(message)s")
    rec = logging.LogRecord("waferq.watch", logging.WARNING, "x", 1, "two\nlines", None, None)
    assert f.format(rec) == "<4>waferq.watch: two\n<4>lines"
    rec.levelno = logging.DEBUG
    assert f.format(rec).startswith("<7>")


def test_unit_file():
    unit = (ROOT / "deploy/host/waferq-host.service").read_text()
    assert "ExecStart=/opt/waferq/host/bin/python -m waferq_host_config --config /etc/waferq/host.toml watch" in unit
    assert "StandardOutput=journal" in unit and "After=network-online.target" in unit


def test_example_config_is_valid():
    cfg = hc.load(str(ROOT / "deploy/host/host.toml.example"))
    assert hc.watch_argv(cfg)[:2] == ["watch", "/srv/waferq/inbox"]
