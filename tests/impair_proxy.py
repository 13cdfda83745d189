"""A user-space link impairment: delay and connection resets, seeded.

Stands in for ``tc netem`` where the kernel has no ``sch_netem``. Used in
process by tests/test_faults.py, or as a script inside a network namespace::

    python tests/impair_proxy.py --target 10.77.0.2:5150 --reset-p 0.02 \\
        --port-file P --stats S

It listens on 127.0.0.1 (of the namespace it runs in), writes its port to
``--port-file``, and on SIGTERM writes ``{"resets": N}`` to ``--stats``.
"""
import argparse
import json
import os
import random
import signal
import socket
import struct
import threading
import time


class ImpairingProxy:
    """A proxy listening on 127.0.0.1: 20 +- 5 ms per forwarded chunk and, with a seeded
    probability, a connection reset (what a lost link looks like to TCP after
    its own retransmissions give up). Stands in for netem where the kernel has none."""

    def __init__(self, target_port, reset_p=0.03, seed=0, target_host="127.0.0.1"):
        self.target, self.target_host, self.reset_p = target_port, target_host, reset_p
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.resets = 0
        self.lsock = socket.create_server(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _draw(self):
        with self.lock:
            return self.rng.random(), self.rng.uniform(0.015, 0.025)

    def _accept(self):
        self.lsock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                continue
            s = socket.create_connection((self.target_host, self.target), timeout=10)
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while not self.stop.is_set():
                data = src.recv(1 << 16)
                if not data:
                    break
                p, delay = self._draw()
                time.sleep(delay)
                if p < self.reset_p:
                    with self.lock:
                        self.resets += 1
                    for x in (src, dst):   # RST, not FIN: linger 0
                        x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.close()
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.lsock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--reset-p", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--stats", required=True)
    args = ap.parse_args()
    host, port = args.target.rsplit(":", 1)
    proxy = ImpairingProxy(int(port), args.reset_p, args.seed, target_host=host)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{proxy.port}\n")
    os.replace(tmp, args.port_file)
    done.wait(600)  # bounded: a test never needs it longer
    proxy.close()
    with open(args.stats, "w") as f:
        json.dump({"resets": proxy.resets}, f)


if __name__ == "__main__":
    main()
