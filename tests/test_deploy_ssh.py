"""make deploy against an OpenSSH server on loopback, into a temporary root.

The test starts its own sshd (own config, throwaway host and client keys, a free
port on 127.0.0.1). Both "boards" are this machine: the board and the host are
installed under one temporary root with --prefix, and systemctl on the session's
PATH is tests/deploy_standin/systemctl, a strict stand-in that reads the installed
unit files, runs the Type=simple ones (the real board service and the real host
watch) and records every call. The health check is the host's own `status`
against the board service the deploy started; then a map file dropped into the
inbox must come out classified.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_deploy_image import fake_bit, fake_ko

ROOT = Path(__file__).resolve().parents[1]
SSHD = "/usr/sbin/sshd"
pytestmark = [
    pytest.mark.skipif(not Path(SSHD).exists() or shutil.which("ssh") is None,
                       reason="openssh-server/client missing"),
    pytest.mark.skipif(shutil.which("bootgen") is None or shutil.which("arm-linux-gnueabihf-gcc") is None,
                       reason="bootgen or arm-linux-gnueabihf-gcc missing (make image's stand-in inputs)"),
    pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no /usr/bin/python3"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, what="", limit=120):
    deadline = time.monotonic() + limit          # a hang guard only
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} never listened on {port}")
            time.sleep(0.05)


@pytest.fixture
def sshd(tmp_path):
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        Path("/run/sshd").mkdir(mode=0o755)      # sshd's privilege-separation folder (as the package makes it)
    d = tmp_path / "ssh"
    d.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    root = tmp_path / "root"
    root.mkdir()
    port = free_port()
    path = f"{ROOT / 'tests/deploy_standin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
SetEnv PATH={path} WQ_ROOT={root}
""")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "wb"))
    try:
        wait_port(port, proc, "sshd")
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        opts = [f"-p{port}", "-i", str(d / "client_key"), "-F", "/dev/null", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={d / 'known_hosts'}",
                "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"]
        yield dict(target=f"{user}@127.0.0.1", opts=opts, root=root)
    finally:
        proc.terminate()
        proc.wait(30)
        for pid_file in (root / "run").glob("*.pid"):   # the services the stand-in started
            try:
                os.kill(int(pid_file.read_text()), 15)
            except (OSError, ValueError):
                pass


def make_inputs(tmp_path, board_port, root):
    """make image's outputs from stand-ins (bitstream, driver) and a real random model."""
    b = tmp_path / "in"
    b.mkdir()
    fake_bit(b / "waferq.bit")
    (b / "waferq.dtbo").write_bytes(b"\xd0\x0d\xfe\xed stand-in overlay")
    fake_ko(b / "waferq.ko")
    subprocess.run([sys.executable, "-c", "from contract.intmodel import random_model; from contract.spec import CNNSpec;"
                    f"random_model(CNNSpec.uniform(4, 4), seed=1).save({str(b / 'export')!r})"],
                   cwd=ROOT, check=True)
    img = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "deploy.image", "--bit", str(b / "waferq.bit"), "--dtbo",
                    str(b / "waferq.dtbo"), "--ko", str(b / "waferq.ko"), "--model", str(b / "export"),
                    "--out", str(img)], cwd=ROOT, check=True, capture_output=True)
    key = b / "wire.key"
    key.write_text("1:" + os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    # The board's options, as /etc/waferq/board.env: the reference backend (no FPGA here).
    env = b / "board.env"
    env.write_text("WQ_BOARD_ARGS=--model /usr/share/waferq/model --backend reference "
                   f"--host 127.0.0.1 --port {board_port} --key-file /etc/waferq/wire.key\n")
    cfg = b / "host.toml"
    cfg.write_text(f'boards = ["127.0.0.1:{board_port}"]\ninbox = "{root}/srv/inbox"\n'
                   f'model = "{root}/usr/share/waferq/model"\ndb = "sqlite:///{root}/var/lib/waferq/r.sqlite"\n'
                   f'key_file = "{root}/etc/waferq/wire.key"\npoll_interval = 0.2\n')
    (root / "srv/inbox").mkdir(parents=True)
    (root / "var/lib/waferq").mkdir(parents=True)
    return dict(image=img, model=b / "export", key=key, env=env, cfg=cfg)


def deploy(ssh, inp, *args):
    cmd = [sys.executable, "-m", "deploy.deploy", "--image", str(inp["image"]), "--model", str(inp["model"]),
           "--key-file", str(inp["key"]), "--prefix", str(ssh["root"]), "--python", "/usr/bin/python3",
           *[f"--ssh-opt={o}" for o in ssh["opts"]], *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def calls(root):
    return [json.loads(ln) for ln in (root / "run/systemctl.log").read_text().splitlines()]


def test_make_deploy_over_ssh(sshd, tmp_path):
    root = sshd["root"]
    board_port = free_port()
    inp = make_inputs(tmp_path, board_port, root)

    # The board through the Make target, as the README has it.
    stamp = tmp_path / "installed"          # stands for .venv/.installed: no `make install` here
    stamp.touch()
    opts = " ".join(["--prefix", str(root), *[f"--ssh-opt={o}" for o in sshd["opts"]]])
    proc = subprocess.run(["make", "-s", "deploy", f"BOARD={sshd['target']}", f"IMAGE_OUT={inp['image']}",
                           f"IMAGE_MODEL={inp['model']}", f"KEY={inp['key']}", f"BOARD_ENV={inp['env']}",
                           f"DEPLOY_OPTS={opts}", f"STAMP={stamp}", f"PY={sys.executable}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "waferq-board.service active" in proc.stdout
    # Installed where the units expect them, with their modes.
    assert (root / "etc/waferq/wire.key").stat().st_mode & 0o777 == 0o600
    assert (root / "usr/libexec/waferq/waferq-fpga-load").stat().st_mode & 0o777 == 0o755
    assert (root / "lib/modules/6.6.40-waferq/modules.dep").exists()          # depmod ran
    log = calls(root)
    assert [c["call"] for c in log if "call" in c] == [
        ["daemon-reload"], ["enable", "waferq-bitstream.service", "waferq-overlay.service",
                            "waferq-module.service", "waferq-board.service"],
        ["restart", "waferq-bitstream.service"], ["is-active", "waferq-board.service"]]
    started = [c["unit"] for c in log if c.get("action") == "start"]
    assert started == ["waferq-bitstream.service", "waferq-overlay.service", "waferq-module.service",
                       "waferq-board.service"]
    assert all((root / "etc/systemd/system/multi-user.target.wants" / u).is_symlink() for u in started)
    # The board service is the deployed code, listening.
    journal = root / "run/waferq-board.service.journal"
    try:
        wait_port(board_port, what="the deployed board service")
    except (TimeoutError, RuntimeError) as e:
        raise AssertionError(f"{e}: {journal.read_text()[-2000:] if journal.exists() else 'no journal'}")

    proc = deploy(sshd, inp, "--host", sshd["target"], "--host-config", str(inp["cfg"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "waferq-host.service active" in proc.stdout
    assert "topology matches" in proc.stdout                  # status from the host reached the board
    assert (root / "opt/waferq/host/bin/python").exists()
    host_calls = [c["call"] for c in calls(root) if "call" in c][4:]
    assert host_calls == [["daemon-reload"], ["enable", "waferq-host.service"],
                          ["restart", "waferq-host.service"], ["is-active", "waferq-host.service"]]

    # The deployed watch classifies what the line drops into the inbox.
    inbox = root / "srv/inbox"
    with open(inbox / "lot7.npy.part", "wb") as f:
        np.save(f, np.random.default_rng(5).integers(0, 3, (6, 30, 30)).astype(np.uint8))
    os.replace(inbox / "lot7.npy.part", inbox / "lot7.npy")
    deadline = time.monotonic() + 180          # a hang guard only
    while not (inbox / "done/lot7.npy").exists():
        assert not (inbox / "failed/lot7.npy").exists()
        assert time.monotonic() < deadline, (root / "run/waferq-host.service.journal").read_text()[-2000:]
        time.sleep(0.1)

    # A second deploy replaces the wheel and restarts the same way.
    proc = deploy(sshd, inp, "--host", sshd["target"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deploy_missing_image_is_one_sentence(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deploy.deploy", "--board", "nobody@127.0.0.1",
                           "--image", str(tmp_path / "image")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"make deploy: missing {tmp_path / 'image/rootfs-overlay.tar.gz'} (make image)."


def test_deploy_remote_failure_names_the_step(sshd, tmp_path):
    inp = make_inputs(tmp_path, free_port(), sshd["root"])
    bad = tmp_path / "bad.toml"
    bad.write_text('boards = ["a:1"]\ninbox = "/x"\nmodel = "/m"\nbacth = 3\n')
    proc = deploy(sshd, inp, "--host", sshd["target"], "--host-config", str(bad))
    assert proc.returncode == 1
    assert "host install failed" in proc.stderr and "unknown key(s) bacth" in proc.stderr
    # The config is checked before anything is enabled or restarted.
    log = sshd["root"] / "run/systemctl.log"
    assert not log.exists() or not any("restart" in c.get("call", []) for c in calls(sshd["root"]))
