"""zybo_z7.console against a pseudo-terminal: a thread plays the Zybo's serial console."""
import os
import re
import threading
import time
import tty

import pytest
import serial

from zybo_z7 import console as C


class FakeBoard(threading.Thread):
    """Boot lines, `zybo login:`, `Password:`, a root shell that answers the bring-up."""

    def __init__(self, password="root", prompt=True, listen_after=2):
        super().__init__(daemon=True)
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        # raw at once: a cooked pty would echo the board's own output back to it
        tty.setraw(slave)
        self.slave = slave  # kept open so the pty survives until the client opens it
        self.password, self.prompt, self.listen_after = password, prompt, listen_after
        self.state, self.commands, self.stop = "boot", [], threading.Event()

    def out(self, text):
        os.write(self.master, text.encode())

    def run(self):
        self.out("U-Boot 2023.01\r\nStarting kernel ...\r\n[    2.1] macb e000b000.ethernet eth0\r\n")
        pending = b""
        while not self.stop.is_set():
            try:
                pending += os.read(self.master, 1024)
            except OSError:
                return
            while b"\r" in pending:
                line, pending = pending.split(b"\r", 1)
                self.line(line.decode().strip())

    def line(self, text):
        if not self.prompt:
            self.out("[   9.9] random: crng init done\r\n")
        elif self.state in ("boot", "login"):
            if text and self.state == "login":
                self.user, self.state = text, "password"
                self.out(f"{text}\r\nPassword: ")
            else:
                self.state = "login"
                self.out("\r\nzybo login: ")
        elif self.state == "password":
            if text == self.password and self.user == "root":
                self.state = "shell"
                self.out("\r\nroot@zybo:~# ")
            else:
                self.state = "login"
                self.out("\r\nLogin incorrect\r\nzybo login: ")
        else:
            self.commands.append(text)
            rc = 0
            if text.startswith("ss -ltn"):
                rc = 0 if sum(c.startswith("ss -ltn") for c in self.commands) >= self.listen_after else 1
            m = re.match(r"tail -n \d+ (\S+)", text)
            tail = "Traceback: no /dev/waferq0\r\n" if m else ""
            self.out(f"{text}\r\n{tail}WQ_RC={rc}\r\nroot@zybo:~# ")


@pytest.fixture
def make_board():
    boards = []

    def make(**kw):
        b = FakeBoard(**kw)
        b.start()
        boards.append(b)
        return b
    yield make
    for b in boards:
        b.stop.set()
        os.close(b.master)
        os.close(b.slave)


def _console(b):
    return C.Console(serial.Serial(b.path, 115200, timeout=0.05))


def test_bring_up(make_board, monkeypatch):
    monkeypatch.setattr(C, "LISTEN_POLL_S", 0.01)
    b = make_board()
    con = _console(b)
    summary = C.bring_up(con, user="root", password="root", ip="192.168.1.10/24",
                         model="build/m/export", workdir="/home/root/waferq", service_port=5150,
                         timeout=5)
    con.close()
    assert summary["login"] == "logged in"
    assert summary["service"].startswith("listening on 192.168.1.10:5150")
    assert b.commands[0].startswith("ip addr replace 192.168.1.10/24 dev eth0 && ip link set eth0 up")
    assert "nohup python3 -m zybo_z7.service --backend chardev --model build/m/export --port 5150" in b.commands[1]
    assert sum(c.startswith("ss -ltn") for c in b.commands) == 2


def test_wrong_password(make_board):
    b = make_board(password="secret")
    con = _console(b)
    with pytest.raises(C.ConsoleError, match=r"login as root refused: wrong user or password; "
                                             r"last lines seen: .*Login incorrect"):
        con.login("root", "root", timeout=5)
    con.close()


def test_no_prompt_times_out(make_board, monkeypatch):
    monkeypatch.setattr(C, "WAKE_EVERY_S", 0.1)
    b = make_board(prompt=False)
    con = _console(b)
    t0 = time.monotonic()
    with pytest.raises(C.ConsoleError, match=r"timed out after 0.5 s waiting for the login prompt "
                                             r"\(zybo login:\); last lines seen: .*crng init done"):
        con.login("root", "root", timeout=0.5)
    assert time.monotonic() - t0 < 3
    con.close()


def test_service_never_listens(make_board, monkeypatch):
    monkeypatch.setattr(C, "LISTEN_POLL_S", 0.01)
    b = make_board(listen_after=10**6)
    con = _console(b)
    with pytest.raises(C.ConsoleError, match=r"not listening on port 5150 .*no /dev/waferq0"):
        C.bring_up(con, user="root", password="root", ip="10.0.0.2/24", model="m",
                   workdir="/w", service_port=5150, timeout=5, listen_timeout=0.2)
    con.close()


def test_cli_reports_an_unopenable_port(capsys):
    assert C.main(["--port", "/dev/does-not-exist", "--ip", "10.0.0.2/24"]) == 2
    assert "cannot open /dev/does-not-exist" in capsys.readouterr().err
