"""Several boards behind one host: load balancing, failover, retry policy.

Each board has a worker thread with its own ``BoardClient``. Workers pull
batches from one shared queue, so a board holds at most one batch at a time
and a faster board simply takes more (least-outstanding by construction).
On every (re)connect the worker first checks the board's weights (HELLO)
and pushes the blob if they differ: a board that restarted empty gets its
weights before any work. When a board goes away mid-batch (refused, reset,
timeout) the batch goes back to the queue and any board may take it; only
the main thread applies results, and only the first answer per batch, so
with the journal's ON CONFLICT every image gets exactly one result.

Retry policy (``RetryPolicy``): each request has ``timeout`` seconds for its
whole reply; a batch is tried at most ``retries + 1`` times in all; a board
that fails waits ``backoff * 2**n`` (at most ``backoff_max``) before it
reconnects. The run gives up when every board has failed more than
``retries`` reconnects in a row, or a batch has used all its tries.
``batch_bound()`` is the worst case for one batch under this policy.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from host_stm32mp1.client import FROM_ENV, BoardClient, BoardError
from protocol import wire as W

log = logging.getLogger("waferq.boards")


@dataclass(frozen=True)
class RetryPolicy:
    timeout: float = 60.0          # seconds for one reply, start to end
    connect_timeout: float = 5.0
    probe_timeout: float = 5.0     # SESSION and the HELLO after a connect
    retries: int = 5
    backoff: float = 0.25
    backoff_max: float = 4.0

    def delay(self, failures: int) -> float:
        return min(self.backoff_max, self.backoff * 2 ** max(0, failures - 1))

    def attempt_bound(self) -> float:
        # connect + SESSION + HELLO (probes) + LOAD_WEIGHTS + HELLO + the batch, and
        # the client's one silent reconnect may repeat all of it.
        return 2 * (self.connect_timeout + 2 * self.probe_timeout + 3 * self.timeout)

    def batch_bound(self) -> float:
        return ((self.retries + 1) * self.attempt_bound()
                + sum(self.delay(n) for n in range(1, self.retries + 1)))


@dataclass
class Job:
    index: int
    ids: list
    attempts: int = 0
    started: float | None = None


class Worker:
    def __init__(self, pool: "BoardPool", client: BoardClient, owned: bool):
        self.pool, self.client, self.owned = pool, client, owned
        self.name = client.name
        self.failures = 0          # consecutive
        self.ready = False
        self.info: dict | None = None
        self.weights_sent = 0
        self.batches = 0
        self.last_error: Exception | None = None
        client.on_connect = self._on_connect
        self.thread = threading.Thread(target=self._loop, name=f"board-{self.name}", daemon=True)

    def _on_connect(self, client: BoardClient) -> None:
        info, sent = client.ensure_weights(self.pool.model.folder)
        self.info, self.weights_sent = info, self.weights_sent + sent
        log.info("board %s: backend %s, weights %s", self.name, info["backend"],
                 "sent" if sent else "already loaded")

    def _fail(self, e: Exception) -> None:
        self.client.close()
        self.ready = False
        self.failures += 1
        self.last_error = e
        log.warning("board %s failed (%d in a row): %s", self.name, self.failures, e)
        self.pool.stop.wait(self.pool.policy.delay(self.failures))

    def _loop(self) -> None:
        pool = self.pool
        while not pool.stop.is_set():
            if not self.ready:
                try:
                    if self.client.sock is None:
                        self.client.connect()       # runs _on_connect
                    else:
                        self._on_connect(self.client)
                    self.ready, self.failures = True, 0
                except BoardError as e:
                    if not e.retryable:
                        pool.events.put(("fatal", None, e, self.name))
                        return
                    self._fail(e)
                    continue
                except OSError as e:
                    self._fail(e)
                    continue
            try:
                job = pool.jobs.get(timeout=0.05)
            except queue.Empty:
                continue
            if job.started is None:
                job.started = time.perf_counter()
            job.attempts += 1
            try:
                records = self.client.infer_batch(pool.images(job.ids), job.ids)
                if (records.status == W.E_NO_WEIGHTS).any():
                    # The board lost its weights without us seeing a reconnect.
                    raise BoardError(f"board {self.name} has no weights loaded")
            except (BoardError, OSError) as e:
                if isinstance(e, BoardError) and not e.retryable:
                    pool.events.put(("fatal", job, e, self.name))
                    return
                if job.attempts > pool.policy.retries:
                    pool.events.put(("gave_up", job, e, self.name))
                else:
                    pool.jobs.put(job)     # any board may take it now
                self._fail(e)
                continue
            self.batches += 1
            pool.events.put(("result", job, records, self.name))


class BoardPool:
    def __init__(self, addresses, model, policy: RetryPolicy | None = None, key=FROM_ENV,
                 clients=None):
        self.model = model
        self.policy = policy or RetryPolicy()
        self.stop = threading.Event()
        if clients is None:
            clients = [BoardClient(h, p, timeout=self.policy.timeout,
                                   connect_timeout=self.policy.connect_timeout, key=key,
                                   probe_timeout=self.policy.probe_timeout)
                       for h, p in addresses]
            owned = True
        else:
            owned = False
        self.workers = [Worker(self, c, owned) for c in clients]
        self.jobs: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self.images = None

    @classmethod
    def of_client(cls, client: BoardClient, model) -> "BoardPool":
        """One board, an existing (maybe connected) client; the caller keeps it."""
        return cls((), model, RetryPolicy(timeout=client.timeout,
                                          connect_timeout=client.connect_timeout,
                                          probe_timeout=client.probe_timeout),
                   clients=[client])

    @property
    def board_info(self):
        return next((w.info for w in self.workers if w.info is not None), None)

    @property
    def weights_sent(self) -> bool:
        return any(w.weights_sent for w in self.workers)

    def run(self, batches, images, on_result) -> None:
        """Classify ``batches`` (lists of record ids); ``images(ids)`` gives their
        inputs, ``on_result(ids, records, board, latency_s)`` runs in this thread
        once per batch. Raises BoardError when the policy is exhausted."""
        self.images = images
        jobs = {i: Job(i, list(ids)) for i, ids in enumerate(batches)}
        for job in jobs.values():
            self.jobs.put(job)
        for w in self.workers:
            if w.thread.ident is not None:
                w.thread.join()   # one left from a previous run: bounded by its own timeouts
        self.stop.clear()
        for w in self.workers:
            w.ready = False   # re-check the weights at the start of every run
            w.thread = threading.Thread(target=w._loop, name=w.thread.name, daemon=True)
            w.thread.start()
        try:
            while jobs:
                try:
                    kind, job, data, board = self.events.get(timeout=0.1)
                except queue.Empty:
                    if all(w.failures > self.policy.retries or not w.thread.is_alive()
                           for w in self.workers):
                        errs = "; ".join(f"{w.name}: {w.last_error}" for w in self.workers)
                        raise BoardError(f"no board reachable after {self.policy.retries} "
                                         f"retries each: {errs}")
                    continue
                if kind == "result":
                    if jobs.pop(job.index, None) is not None:
                        on_result(job.ids, data, board, time.perf_counter() - job.started)
                elif kind == "gave_up":
                    raise BoardError(f"batch of {len(job.ids)} images failed {job.attempts} "
                                     f"times, last on {board}: {data}")
                else:
                    raise data
        finally:
            self.stop.set()
            for w in self.workers:
                w.thread.join(2.0)
            while not self.jobs.empty():
                self.jobs.get_nowait()

    def close(self) -> None:
        self.stop.set()
        for w in self.workers:
            if w.owned:
                w.client.close()
