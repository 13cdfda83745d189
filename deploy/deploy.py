"""make deploy: install, enable, restart and health-check the board and the host over SSH.

    python -m deploy.deploy --board root@zybo --host root@stm32mp1 --image build/<model>/image \\
        --model build/<model>/export --host-config host.toml --key-file wire.key

Board (from make image): unpacks rootfs-overlay.tar.gz over /, installs the key (0600),
runs depmod for the module's kernel, enables the four units and restarts the chain
from waferq-bitstream.service (bitstream -> overlay -> module -> board service), then
asks systemd whether waferq-board.service is active.
Host: installs the wheel into the venv /opt/waferq/host (--system-site-packages: the
image's numpy), the model, /etc/waferq/host.toml (checked before anything restarts),
the key and waferq-host.service; enables and restarts it; then the health check: the
unit is active and `status` reaches every board in host.toml from the host itself.
The board goes first, so that the host's check finds it up.

Files travel as one tar stream over the same ssh connection as the commands (no scp).
--prefix installs under a folder instead of / (the test's temporary root); systemctl
is then whatever the remote PATH holds. Exit 0 healthy, 1 a step or the check failed,
2 a local input is missing.
"""
from __future__ import annotations

import argparse
import io
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

from deploy import host_wheel, image

STAGE = "var/lib/waferq-deploy"
HOST_UNIT = Path(__file__).resolve().parent / "host" / "waferq-host.service"


class DeployError(Exception):
    pass


class Remote:
    def __init__(self, target: str, ssh_opts: list[str], prefix: str):
        self.target, self.opts, self.prefix = target, ssh_opts, prefix.rstrip("/")

    def ssh(self, script: str, data: bytes | None = None, what: str = "") -> str:
        """Runs `script` with sh -eu on the target; `data`, if any, is unpacked into the stage first."""
        stage = f"{self.prefix}/{STAGE}"
        pre = f"set -eu\nP={shlex.quote(self.prefix)}\nS=\"$P/{STAGE}\"\n"
        if data is not None:
            pre += "rm -rf \"$S\" && mkdir -p \"$S\" && tar -xf - -C \"$S\"\n"
        cmd = ["ssh", *self.opts, self.target, "sh -c " + shlex.quote(pre + script)]
        proc = subprocess.run(cmd, input=data or b"", capture_output=True)
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        if proc.returncode:
            raise DeployError(f"{self.target}: {what or 'remote step'} failed (exit {proc.returncode}): "
                              + (err.strip() or out.strip())[-1500:] + f" [stage {stage}]")
        return out


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), mode
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _need(path: Path | None, how: str) -> Path:
    if path is None or not path.exists():
        raise FileNotFoundError(f"{path} ({how})")
    return path


def board_files(args) -> dict:
    img = Path(args.image)
    files = {"rootfs-overlay.tar.gz": (_need(img / "rootfs-overlay.tar.gz", "make image").read_bytes(), 0o644),
             "kernel-release": (_need(img / "kernel-release", "make image").read_bytes(), 0o644)}
    if args.key_file:
        files["wire.key"] = (_need(Path(args.key_file), "--key-file").read_bytes(), 0o600)
    if args.board_env:
        files["board.env"] = (_need(Path(args.board_env), "--board-env").read_bytes(), 0o644)
    return files


BOARD_SCRIPT = """
tar -xzf "$S/rootfs-overlay.tar.gz" -C "$P/"
if [ -f "$S/wire.key" ]; then install -D -m 0600 "$S/wire.key" "$P/etc/waferq/wire.key"; fi
if [ -f "$S/board.env" ]; then install -D -m 0644 "$S/board.env" "$P/etc/waferq/board.env"; fi
depmod -b "${P:-/}" "$(cat "$S/kernel-release")"
systemctl daemon-reload
systemctl enable {units}
# Restarting the first unit restarts everything that Requires it, in order: a new
# bitstream, overlay or module is never left under the old service.
systemctl restart waferq-bitstream.service
systemctl is-active waferq-board.service
"""


def deploy_board(r: Remote, args) -> str:
    out = r.ssh(BOARD_SCRIPT.replace("{units}", " ".join(image.UNITS)), _tar(board_files(args)),
                "board install")
    return out.strip().splitlines()[-1] if out.strip() else ""


def host_files(args) -> dict:
    wheel = Path(args.wheel) if args.wheel else host_wheel.build(host_wheel.ROOT / "build" / "dist")
    model = _need(Path(args.model), "make export")
    files = {"wheel/" + wheel.name: (_need(wheel, "make host-wheel").read_bytes(), 0o644),
             "waferq-host.service": (HOST_UNIT.read_bytes(), 0o644)}
    for name in ("model.json", "weights.bin"):
        files[f"model/{name}"] = (_need(model / name, "make export").read_bytes(), 0o644)
    if args.host_config:
        files["host.toml"] = (_need(Path(args.host_config), "--host-config").read_bytes(), 0o644)
    if args.key_file:
        files["wire.key"] = (_need(Path(args.key_file), "--key-file").read_bytes(), 0o600)
    return files


HOST_SCRIPT = """
V="$P/opt/waferq/host"
if [ ! -x "$V/bin/python" ]; then {python} -m venv --system-site-packages --without-pip "$V"; fi
"$V/bin/python" -m pip uninstall -q -y waferq-host >/dev/null 2>&1 || true
# --no-index: everything but the wheel (numpy) must already be on the image.
"$V/bin/python" -m pip install -q --no-index --disable-pip-version-check "$S"/wheel/*.whl
rm -rf "$P/usr/share/waferq/model" && mkdir -p "$P/usr/share/waferq" && cp -r "$S/model" "$P/usr/share/waferq/model"
if [ -f "$S/host.toml" ]; then install -D -m 0644 "$S/host.toml" "$P/etc/waferq/host.toml"; fi
if [ -f "$S/wire.key" ]; then install -D -m 0600 "$S/wire.key" "$P/etc/waferq/wire.key"; fi
test -f "$P/etc/waferq/host.toml" || {{ echo "no $P/etc/waferq/host.toml: pass --host-config" >&2; exit 1; }}
"$V/bin/python" -m waferq_host_config --config "$P/etc/waferq/host.toml" argv >/dev/null
install -D -m 0644 "$S/waferq-host.service" "$P/etc/systemd/system/waferq-host.service"
systemctl daemon-reload
systemctl enable waferq-host.service
systemctl restart waferq-host.service
systemctl is-active waferq-host.service
echo "--- status"
"$V/bin/python" -m waferq_host_config --config "$P/etc/waferq/host.toml" status
"""


def deploy_host(r: Remote, args) -> str:
    out = r.ssh(HOST_SCRIPT.format(python=shlex.quote(args.python)), _tar(host_files(args)), "host install")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", metavar="USER@ADDR", help="the Zybo (ssh target)")
    ap.add_argument("--host", metavar="USER@ADDR", help="the STM32MP1 (ssh target)")
    ap.add_argument("--image", default="build/wmcnn_4w4a/image", help="make image's output folder")
    ap.add_argument("--model", default="build/wmcnn_4w4a/export", help="export folder for the host")
    ap.add_argument("--wheel", help="host wheel (default: build it now)")
    ap.add_argument("--host-config", help="host.toml to install as /etc/waferq/host.toml")
    ap.add_argument("--board-env", help="board.env to install as /etc/waferq/board.env")
    ap.add_argument("--key-file", help="wire key to install (0600) on both")
    ap.add_argument("--python", default="python3", help="the host's python (default python3)")
    ap.add_argument("--prefix", default="", help="install under this folder instead of / (tests)")
    ap.add_argument("--ssh-opt", action="append", default=[],
                    help="an ssh option, repeatable (e.g. --ssh-opt=-p2222 --ssh-opt=-i --ssh-opt=key)")
    args = ap.parse_args(argv)
    if not args.board and not args.host:
        ap.error("give --board USER@ADDR, --host USER@ADDR or both")
    try:
        if args.board:
            state = deploy_board(Remote(args.board, args.ssh_opt, args.prefix), args)
            print(f"board {args.board}: waferq-board.service {state}")
        if args.host:
            out = deploy_host(Remote(args.host, args.ssh_opt, args.prefix), args)
            before, _, status = out.partition("--- status\n")
            state = before.strip().splitlines()[-1] if before.strip() else "?"
            print(f"host {args.host}: waferq-host.service {state}; status from the host:\n{status}")
    except FileNotFoundError as e:
        print(f"make deploy: missing {e.args[0]}.", file=sys.stderr)
        return 2
    except (DeployError, host_wheel.ClosureError) as e:
        print(f"make deploy: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
