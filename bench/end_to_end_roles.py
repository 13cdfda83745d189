"""The child processes of ``bench.end_to_end``: the board service, the host,
and the service alone. Each measures its own CPU time (``getrusage``) and
answers on stdout; ``python -m bench.end_to_end --role ...`` starts them.
"""
from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np

from protocol import batch as WB
from protocol import pixels as PX
from protocol import results as R
from protocol import stream as S
from protocol import wire as W

WARMUP_BATCHES = 2    # untimed: first-use allocations, the service's first frames


def cpu_s() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def wafer_images(n: int, shape, seed: int = 0) -> np.ndarray:
    """Maps of die categories as the model sees them: every pixel 0, 128 or 255."""
    from contract.preprocess import CATEGORY_CODES

    rng = np.random.default_rng(seed)
    return CATEGORY_CODES[rng.integers(0, 3, (n, *shape))]


# --- the service process -----------------------------------------------------

def role_service(args) -> int:
    """A board service on the chardev backend; stdin "cpu" -> its CPU seconds."""
    import threading

    from contract import export_dir
    from zybo_z7.backends import Accelerator, CharDevBackend, load_spec
    from zybo_z7.service import Board, Service

    classes = export_dir.read(args.model).spec_dict.get("classes", ())
    board = Board(Accelerator(CharDevBackend(args.device, timeout=30.0)), classes,
                  load_spec(args.model).layers())
    server = Service(("127.0.0.1", 0), board, None)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                     daemon=True).start()
    print(server.server_address[1], flush=True)
    for line in sys.stdin:
        if line.strip() == "cpu":
            print(json.dumps(cpu_s()), flush=True)
        else:
            break
    server.shutdown()
    board.accel.close()
    return 0


# --- the host process --------------------------------------------------------

def role_host(args) -> int:
    """BoardClient batches: warm-up batches, then "ready"; each "go" on stdin
    runs the timed batches once more (one repeat) and answers its CPU and wall
    time; "engine" answers the engine's CPU seconds for the same maps."""
    from host_stm32mp1.client import BoardClient

    client = BoardClient("127.0.0.1", args.port, timeout=600.0, key=None)
    client.ensure_weights(args.model)
    shape = tuple(client.query()[k] for k in ("in_height", "in_width", "in_channels"))
    images = wafer_images(args.maps, shape, seed=args.batch)
    batches = [(images[s:s + args.batch], np.arange(s, min(s + args.batch, args.maps)))
               for s in range(0, args.maps, args.batch)]
    for x, ids in batches[:WARMUP_BATCHES]:
        client.infer_batch(x, ids)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "go":
            c0, t0 = cpu_s(), time.perf_counter()
            for x, ids in batches:
                records = client.infer_batch(x, ids)
                assert len(records) == len(ids)
            wall, c1 = time.perf_counter() - t0, cpu_s()
            out = dict(wall_s=wall, user_s=c1[0] - c0[0], sys_s=c1[1] - c0[1])
        elif cmd == "engine":
            out = dict(engine_s=_engine_cpu(client, args, images))
        else:
            break
        print(json.dumps(out), flush=True)
    client.close()
    return 0


def _engine_cpu(client, args, images) -> float:
    """CPU seconds of ``host_stm32mp1.engine.send`` (what classify does after
    reading: batches on a worker thread, then a record a map with confidence
    and the reject rule) for the same maps; reading and resizing are not counted."""
    from host_stm32mp1 import engine, readers

    model = engine.Model.load(args.model)
    cats = (images[..., 0] >> 7) + (images[..., 0] & 1)    # codes 0/128/255 -> categories
    run = engine.prepare((readers.Item("bench", i, m) for i, m in enumerate(cats)), model,
                         quiet=True)
    c0 = cpu_s()
    engine.send(run, client, model, args.batch)
    c1 = cpu_s()
    assert all(r.get("status") == "ok" for r in run.records)
    return (c1[0] - c0[0]) + (c1[1] - c0[1])


# --- the service alone -------------------------------------------------------

class CachedCore:
    """The reference core, but a batch of a size it has seen is answered from a
    cache with the tag patched in: the core costs the service process (almost)
    nothing, so its CPU time is the service's own."""

    name = "cached"

    def __init__(self, model_dir):
        from hls.refcore import RefCore
        from zybo_z7.backends import load_spec

        self.core, self.cache = RefCore(load_spec(model_dir)), {}

    def transact(self, words) -> np.ndarray:
        words = np.asarray(words, dtype=np.uint32)
        key = (int(words[0]), words.size)
        if (int(words[0]) & 0xFF) in (S.OP_QUERY, S.OP_LOAD_WEIGHTS) or key not in self.cache:
            reply = self.core.handle(words)
            self.cache[key] = reply
            return reply
        reply = self.cache[key].copy()
        tag = int(words[2])
        reply[-1] = (int(reply[-1]) - int(reply[2]) + tag) & S.MASK32
        reply[2] = tag
        return reply

    def close(self) -> None:
        pass


def role_alone(args) -> int:
    from contract import export_dir
    from zybo_z7.backends import Accelerator
    from zybo_z7.service import Board

    board = Board(Accelerator(CachedCore(args.model)))
    board.load_weights(export_dir.read(args.model).weights_bin())
    shape = (board.info["in_height"], board.info["in_width"], board.info["in_channels"])
    images = wafer_images(args.maps, shape, seed=args.batch)
    # the frames as the host sends them: die states, since every pixel is a category
    frames = [WB.encode_batch(PX.die_codes_from_pixels(images[s:s + args.batch]),
                             np.arange(s, min(s + args.batch, args.maps)), S.PACK_DIE2)
              for s in range(0, args.maps, args.batch)]

    def one(rid, payload):    # zybo_z7.server's INFER_BATCH, less the socket
        ids, x, packing, shape = WB.decode_batch_packed(payload)
        records, checksum = board.infer_batch(ids, x, packing, shape)
        return W.encode_frame(W.T_RESULTS, R.encode(records, checksum), rid)

    for payload in frames[:WARMUP_BATCHES]:   # fills the cache with this batch size
        one(0, payload)
    runs = []
    for _ in range(args.repeats):
        c0, t0 = cpu_s(), time.perf_counter()
        for rid, payload in enumerate(frames):
            one(rid, payload)
        wall, c1 = time.perf_counter() - t0, cpu_s()
        runs.append(dict(wall_s=wall, user_s=c1[0] - c0[0], sys_s=c1[1] - c0[1]))
    print(json.dumps(runs), flush=True)
    return 0
