"""Bring-up over the Zybo's serial console (PS UART1, 115200 8N1, the PROG/UART micro-USB).

    python -m zybo_z7.console --port /dev/ttyUSB1 --ip 192.168.1.10/24 \
        [--user root --password root] [--model /home/root/waferq/export] [--service-port 5150]

Wakes the console, logs in, gives eth0 its address, starts the board service with the
chardev backend under nohup, checks that it listens, and prints a summary. Every wait
has a deadline; a missed one is one sentence naming what was expected and the last
lines the board printed. Each shell command ends in ``; echo WQ_RC=$?`` so its exit
status is read back, not guessed from its output.
"""
from __future__ import annotations

import argparse
import re
import sys
import time

import serial

from contract import board

LOGIN = re.compile(rb"login:\s*$")
PASSWORD = re.compile(rb"[Pp]assword:\s*$")
PROMPT = re.compile(rb"[#$]\s*$")
REFUSED = re.compile(rb"Login incorrect|Authentication failure|Permission denied")
RC = re.compile(rb"WQ_RC=(\d+)\r?\n")
WAKE_EVERY_S = 2.0
LAST_LINES = 5
LISTEN_POLL_S = 1.0


class ConsoleError(Exception):
    """A bring-up step failed; the message says which and what the board printed last."""


class Console:
    def __init__(self, port, baud: int | None = None, log=None):
        baud = baud or board.load()["board"]["console_baud"]
        self.ser = port if hasattr(port, "read") else serial.serial_for_url(
            port, baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=0.05)
        self.buf = b""
        self.seen = b""  # the tail of everything received, for error messages
        self.log = log

    def close(self) -> None:
        self.ser.close()

    def send(self, line: str) -> None:
        self.ser.write(line.encode() + b"\r")
        self.ser.flush()

    def last_lines(self) -> str:
        lines = [l.strip() for l in self.seen.decode(errors="replace").splitlines() if l.strip()]
        return " | ".join(lines[-LAST_LINES:]) or "nothing"

    def expect(self, patterns, what: str, timeout: float, wake: bool = False) -> tuple[int, re.Match]:
        """Read until one of the regexes matches the buffer; returns (index, match) and keeps
        what follows the match."""
        deadline = time.monotonic() + timeout
        next_wake = time.monotonic()
        while True:
            for i, p in enumerate(patterns):
                m = p.search(self.buf)
                if m:
                    self.buf = self.buf[m.end():]
                    return i, m
            now = time.monotonic()
            if now > deadline:
                raise ConsoleError(f"timed out after {timeout:g} s waiting for {what}; "
                                   f"last lines seen: {self.last_lines()}")
            if wake and now >= next_wake:
                self.ser.write(b"\r")
                next_wake = now + WAKE_EVERY_S
            chunk = self.ser.read(self.ser.in_waiting or 1)
            if chunk:
                if self.log:
                    self.log.write(chunk.decode(errors="replace"))
                # keep the tail only: a chatty boot log must not grow the buffer without bound
                self.buf = (self.buf + chunk)[-65536:]
                self.seen = (self.seen + chunk)[-4096:]

    def run(self, cmd: str, timeout: float) -> int:
        """Run a shell command, wait for its exit status and the next prompt."""
        self.buf = b""
        self.send(f"{cmd}; echo WQ_RC=$?")
        _, m = self.expect([RC], f"the exit status of `{cmd}`", timeout)
        self.expect([PROMPT], "the shell prompt", timeout)
        return int(m.group(1))

    def login(self, user: str, password: str, timeout: float) -> str:
        """Log in unless a shell prompt is already there; returns 'logged in' or 'already'."""
        i, _ = self.expect([LOGIN, PROMPT], "the login prompt (zybo login:)", timeout, wake=True)
        if i == 1:
            return "already logged in"
        self.send(user)
        i, _ = self.expect([PASSWORD, PROMPT, REFUSED], "the password prompt", timeout)
        if i == 0:
            self.send(password)
            i, _ = self.expect([PROMPT, REFUSED, LOGIN], "the shell prompt after login", timeout)
            i = {0: 1, 1: 2, 2: 2}[i]
        if i == 2:
            raise ConsoleError(f"login as {user} refused: wrong user or password; "
                               f"last lines seen: {self.last_lines()}")
        return "logged in"


def bring_up(con: Console, *, user: str, password: str, ip: str, iface: str = "eth0",
             model: str, workdir: str, service_port: int, timeout: float = 30.0,
             listen_timeout: float = 60.0, key_file: str = "/etc/waferq/wire.key") -> dict:
    summary = {"login": con.login(user, password, timeout)}
    # replace, not add: a second bring-up must not fail on an address already there
    if con.run(f"ip addr replace {ip} dev {iface} && ip link set {iface} up", timeout):
        raise ConsoleError(f"setting {ip} on {iface} failed; last lines seen: {con.last_lines()}")
    summary["ip"] = f"{ip} on {iface}"
    log = "/tmp/waferq-service.log"
    start = (f"cd {workdir} && nohup python3 -m zybo_z7.service --backend chardev "
             f"--model {model} --port {service_port} --key-file {key_file} > {log} 2>&1 &")
    if con.run(start, timeout):
        raise ConsoleError(f"starting the service failed; last lines seen: {con.last_lines()}")
    deadline = time.monotonic() + listen_timeout
    while con.run(f"ss -ltn | grep -q ':{service_port} '", timeout):
        if time.monotonic() > deadline:
            con.run(f"tail -n {LAST_LINES} {log}", timeout)
            raise ConsoleError(f"the service is not listening on port {service_port} after "
                               f"{listen_timeout:g} s; last lines seen: {con.last_lines()}")
        time.sleep(LISTEN_POLL_S)
    summary["service"] = f"listening on {ip.split('/')[0]}:{service_port} (log {log})"
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", required=True, help="serial device (the Zybo's second FTDI port)")
    ap.add_argument("--ip", required=True, help="address/prefix for eth0, e.g. 192.168.1.10/24")
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--user", default="root")
    ap.add_argument("--password", default="root")
    ap.add_argument("--workdir", default="/home/root/waferq", help="the repo copy on the board")
    ap.add_argument("--model", default="build/wmcnn_4w4a/export", help="export dir, relative to --workdir")
    ap.add_argument("--service-port", type=int, default=5150)
    ap.add_argument("--key-file", default="/etc/waferq/wire.key",
                    help="the service's HMAC key file on the board (mode 0600; the service "
                         "refuses to start without a key)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds for each console wait")
    ap.add_argument("--echo", action="store_true", help="copy the console output to stdout")
    args = ap.parse_args(argv)
    try:
        con = Console(args.port, log=sys.stdout if args.echo else None)
    except serial.SerialException as e:
        print(f"console: cannot open {args.port}: {e}", file=sys.stderr)
        return 2
    try:
        summary = bring_up(con, user=args.user, password=args.password, ip=args.ip,
                           iface=args.iface, model=args.model, workdir=args.workdir,
                           service_port=args.service_port, timeout=args.timeout,
                           key_file=args.key_file)
    except ConsoleError as e:
        print(f"console: {e}", file=sys.stderr)
        return 1
    finally:
        con.close()
    for k, v in summary.items():
        print(f"{k:8s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
