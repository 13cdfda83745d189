"""What peers can make the board service hold: pre-auth, slowloris and
amplification cases against a keyed service on loopback, with the peak RSS
and thread count of the service process for each.

    python -m bench.abuse [--model DIR] [--out build/bench] [--connections 200]

Starts ``python -m zybo_z7.service`` (reference backend; a random W4A4 model
unless --model) with a key, then runs each case with bounded loops. Peak RSS
is the kernel's high-water mark (VmHWM), so a case's figure includes every
case before it; threads are sampled every 10 ms. Writes abuse.json into
--out and prints a table. Loopback only: never point it at another host.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from protocol import auth as A
from protocol import wire as W

KEY = bytes.fromhex("ab" * 32)
GUARD = 60.0


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()[0] if v.split() else ""
    return dict(rss_mib=int(out["VmRSS"]) / 1024, hwm_mib=int(out["VmHWM"]) / 1024,
                threads=int(out["Threads"]))


class Sampler:
    """Peak thread count of a process while a case runs."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, proc_status(self.pid)["threads"])
            except OSError:
                return
            self._stop.wait(0.01)

    def __enter__(self):
        self.peak = proc_status(self.pid)["threads"]
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def wait_closed(s: socket.socket, guard: float = GUARD) -> bool:
    end = time.monotonic() + guard
    while time.monotonic() < end:
        r, _, _ = select.select([s], [], [], 0.2)
        if r:
            try:
                if not s.recv(65536):
                    return True
            except OSError:
                return True
    return False


def connect(port: int, src: str = "127.0.0.1") -> socket.socket:
    s = socket.socket()
    s.settimeout(GUARD)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def session(port: int):
    s = connect(port)
    nonce, payload = A.session_request(1)
    s.sendall(W.encode_frame(W.T_SESSION, payload, 1))
    ack = W.read_frame(s, timeout=GUARD)
    if ack.type != W.T_SESSION_ACK:
        raise RuntimeError("the service refused the bench's SESSION")
    return s, A.Session(KEY, 1, nonce + ack.payload, b"C")


# --- cases: each returns a one-line outcome --------------------------------

def big_hello(port: int, n: int = 4) -> str:
    """Keyless peers announce 64 MiB HELLOs and send as much as they can."""
    chunk, sent_total, closed = bytes(1 << 20), 0, 0
    for _ in range(n):
        with connect(port) as s:
            s.sendall(W.HEADER.pack(W.MAGIC, W.VERSION, W.T_HELLO, 0, 1, W.MAX_PAYLOAD, 0))
            try:
                for _ in range(W.MAX_PAYLOAD // len(chunk)):
                    s.sendall(chunk)
                    sent_total += len(chunk)
            except OSError:
                pass
            closed += wait_closed(s)
    return f"{closed}/{n} closed, {sent_total / 2**20:.0f} MiB of payload accepted by TCP"


def flood(port: int, n: int) -> str:
    """Silent connections from five loopback addresses (more than the total cap allows)."""
    socks = []
    try:
        for i in range(n):
            socks.append(connect(port, f"127.0.0.{2 + i % 5}"))
        closed = sum(wait_closed(s) for s in socks)
    finally:
        for s in socks:
            s.close()
    return f"{closed}/{n} closed by the service"


def slowloris(port: int, n: int, interval: float = 0.25) -> str:
    """Connections that each send one header byte every ``interval`` s and
    never finish it."""
    header = W.encode_frame(W.T_SESSION, bytes(W.SESSION_SIZE))[:W.HEADER_SIZE - 1]
    socks = [connect(port, f"127.0.0.{2 + i % 5}") for i in range(n)]
    open_ = set(range(n))
    t0, longest = time.monotonic(), 0.0
    try:
        for b in header:
            for i in list(open_):
                try:
                    socks[i].sendall(bytes([b]))
                except OSError:
                    open_.discard(i)
            r, _, _ = select.select([socks[i] for i in open_], [], [], interval)
            for s in r:
                open_.discard(socks.index(s))
            longest = time.monotonic() - t0
            if not open_:
                break
        still = [i for i in open_ if not wait_closed(socks[i])]
    finally:
        for s in socks:
            s.close()
    return (f"{n - len(still)}/{n} closed with the header unfinished, "
            f"trickled {longest:.1f} s")


def zero_images(port: int, n: int = 500_000) -> str:
    """An authenticated INFER_BATCH of ``n`` zero-sized images (3.8 MiB)."""
    s, sess = session(port)
    with s:
        payload = struct.pack("<IHHHH", n, 0, 0, 0, 0) + bytes(8 * n)
        try:
            s.sendall(sess.seal(W.T_INFER_BATCH, payload, 2))
            f = W.read_frame(s, timeout=GUARD)
        except (OSError, W.ConnectionClosed):
            return "closed by the service before the payload was sent"
        code = W.decode_error(f.payload)[0] if f.type == W.T_ERROR else None
    return f"{f.type_name} {W.STATUS_NAMES.get(code, '')}".strip()


def cap_batch(port: int) -> str:
    """MAX_BATCH_IMAGES zero-sized images: within the cap, all of the wrong shape."""
    s, sess = session(port)
    with s:
        n = W.MAX_BATCH_IMAGES
        s.sendall(sess.seal(W.T_INFER_BATCH, struct.pack("<IHHHH", n, 0, 0, 0, 0) + bytes(8 * n), 2))
        f = W.read_frame(s, timeout=GUARD)
    return f"{f.type_name} of {len(f.payload)} bytes for {n} images"


def big_blob(port: int) -> str:
    """A 16 MiB LOAD_WEIGHTS (the cap is 4 MiB), then a 4 MiB one of the wrong length."""
    out = []
    s, sess = session(port)
    with s:
        try:
            s.sendall(sess.seal(W.T_LOAD_WEIGHTS, bytes(W.MAX_BLOB_BYTES), 2))
            f = W.read_frame(s, timeout=GUARD)
            sess.open(f)
            out.append(f"4 MiB: {W.STATUS_NAMES[W.decode_error(f.payload)[0]]}")
        except (OSError, W.WireError) as e:
            out.append(f"4 MiB: {type(e).__name__}")
    s, _ = session(port)
    with s:
        s.sendall(W.HEADER.pack(W.MAGIC, W.VERSION, W.T_LOAD_WEIGHTS, W.F_AUTH, 3, 16 << 20, 0))
        f = W.read_frame(s, timeout=GUARD)
        out.append(f"16 MiB: {W.STATUS_NAMES[W.decode_error(f.payload)[0]]} on the header")
    return ", ".join(out)


def start_service(model: Path, work: Path, limits: list[str]):
    key = work / "bench.key"
    key.write_text(f"1:{KEY.hex()}\n")
    key.chmod(0o600)
    port_file = work / "port"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "zybo_z7.service", "--model", str(model),
                             "--backend", "reference", "--listen", "127.0.0.1", "--port", "0",
                             "--port-file", str(port_file), "--key-file", str(key), *limits],
                            env=env, stdout=open(work / "service.log", "wb"),
                            stderr=subprocess.STDOUT)
    end = time.monotonic() + GUARD
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise RuntimeError("the service did not start: see " + str(work / "service.log"))
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def run(model: Path | None, out: Path, connections: int, slow: int, limits: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if model is None:
            from contract.intmodel import random_model
            from contract.spec import CNNSpec
            model = work / "model"
            random_model(CNNSpec.uniform(4, 4), seed=1).save(model)
        proc, port = start_service(model, work, limits)
        try:
            rest = proc_status(proc.pid)
            cases = [("pre-auth: 4 x 64 MiB HELLO", lambda: big_hello(port)),
                     (f"pre-auth: {connections} silent connections", lambda: flood(port, connections)),
                     (f"slowloris: {slow} connections, 1 byte / 0.25 s", lambda: slowloris(port, slow)),
                     ("auth: 500k zero-sized images", lambda: zero_images(port)),
                     (f"auth: {W.MAX_BATCH_IMAGES} images of the wrong shape", lambda: cap_batch(port)),
                     ("auth: oversized LOAD_WEIGHTS", lambda: big_blob(port))]
            rows = []
            for name, case in cases:
                with Sampler(proc.pid) as sampler:
                    t0 = time.monotonic()
                    outcome = case()
                    dt = time.monotonic() - t0
                st = proc_status(proc.pid)
                rows.append(dict(case=name, outcome=outcome, peak_rss_mib=round(st["hwm_mib"], 1),
                                 peak_threads=sampler.peak, seconds=round(dt, 2)))
                print(f"  {name}: {outcome}", file=sys.stderr)
            alive = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(GUARD)
    result = dict(at_rest=dict(rss_mib=round(rest["rss_mib"], 1), threads=rest["threads"]),
                  limits=limits, cases=rows, service_alive=alive)
    (out / "abuse.json").write_text(json.dumps(result, indent=1))
    return result


def table(result: dict) -> str:
    r = result["at_rest"]
    lines = [f"service at rest: {r['rss_mib']} MiB RSS, {r['threads']} threads",
             f"{'case':<44} {'peak RSS MiB':>12} {'threads':>8} {'s':>6}  outcome"]
    for c in result["cases"]:
        lines.append(f"{c['case']:<44} {c['peak_rss_mib']:>12} {c['peak_threads']:>8} "
                     f"{c['seconds']:>6}  {c['outcome']}")
    lines.append("service " + ("still serving" if result["service_alive"] else "DIED"))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None, help="export folder (default: a random W4A4)")
    p.add_argument("--out", type=Path, default=Path("build/bench"))
    p.add_argument("--connections", type=int, default=200, help="silent connections (default 200)")
    p.add_argument("--slow", type=int, default=20, help="slowloris connections (default 20)")
    p.add_argument("--frame-timeout", type=float, default=2.0,
                   help="the service's frame deadline for the run (default 2 s; the "
                        "service's own default is 30 s)")
    p.add_argument("--handshake-timeout", type=float, default=2.0,
                   help="the service's handshake deadline for the run (default 2 s)")
    args = p.parse_args(argv)
    limits = ["--frame-timeout", str(args.frame_timeout),
              "--handshake-timeout", str(args.handshake_timeout)]
    result = run(args.model, args.out, args.connections, args.slow, limits)
    print(table(result))
    print(f"wrote {args.out / 'abuse.json'}")
    return 0 if result["service_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
