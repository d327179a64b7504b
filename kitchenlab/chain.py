"""The head office of a chain of kitchens: one training job run by several processes.

    python -m kitchenlab.chain --processes 2 [--devices-per-process 1] [--timeout 180]

starts ``--processes`` worker processes on this machine (``JAX_PLATFORMS=cpu``), joins them
into one JAX job with ``jax.distributed.initialize`` (the coordinator on 127.0.0.1, at a
free port chosen now; CPU collectives through gloo), trains the same ``ChainJob`` with
``kl.train.fit(..., mesh=...)`` over all of their devices, and reports each worker's
result. A worker that dies (or a job that outlives ``--timeout``) stops the others and
fails the launch with a ``ChainError`` naming the worker and its last words: never a hang.

On a cluster the same worker code runs once per host: the coordinator's address is one
host's address, ``process_id`` and ``num_processes`` come from the scheduler, and the mesh
spans every host's devices. Only the launcher (``launch``) is specific to one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable

import numpy as np

HOST = "127.0.0.1"  # the job never listens beyond this machine
FAIL_EXIT = 17  # exit code of a worker told to die (``fail_worker``), for tests


@dataclasses.dataclass(frozen=True)
class ChainJob:
    """What every kitchen of the chain trains (the same in every process)."""

    n_cakes: int = 2000  # pantry size: each process bakes the same table from ``seed``
    width: int = 32  # hidden units per layer (the "model" axis splits them)
    depth: int = 2  # hidden layers
    epochs: int = 8  # days of baking
    batch_size: int = 128  # cakes per tray, split over the mesh's "data" axis. Big trays,
    # few steps: every step meets for an all-reduce, and on one CPU core two processes
    # meeting 72 times (8 days x 9 trays) costs seconds, not minutes
    learning_rate: float = 3e-3  # Adam's step size
    model_axis: int = 1  # devices sharing each hidden layer (the mesh's "model" axis)
    fused: bool = True  # whole run in one compiled program (False: the readable loop)
    seed: int = 0  # pantry, initial knobs, shuffling

    @classmethod
    def tiny(cls) -> "ChainJob":
        return cls(n_cakes=400, width=8, depth=1, epochs=3, batch_size=32)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ChainJob":
        return cls(**json.loads(text))


def train_job(job: ChainJob, mesh=None) -> dict:
    """Train ``job`` in this process (on ``mesh``, or one device): knobs and curves, on host.

    Returns ``{"params": {"hidden.0.kernel": array, ...}, "train_loss": (E,),
    "val_loss": (E,), "val_accuracy": (E,), "message": str}``.
    """
    from kitchenlab import data, models, train
    from kitchenlab.config import MLPConfig, TrainConfig

    kitchen = data.kitchen(job.n_cakes, seed=job.seed)
    model = models.make_mlp(MLPConfig(width=job.width, depth=job.depth), seed=job.seed)
    config = TrainConfig(epochs=job.epochs, batch_size=job.batch_size,
                         learning_rate=job.learning_rate, seed=job.seed)
    history = train.fit(model, kitchen.train, kitchen.val, config, fused=job.fused, mesh=mesh)
    return {"params": flat_knobs(model), "train_loss": history.train_loss,
            "val_loss": history.val_loss, "val_accuracy": history.val_accuracy,
            "message": history.message}


def flat_knobs(model) -> dict[str, np.ndarray]:
    """``{"hidden.0.kernel": array, ...}`` on host, gathered from every process's devices."""
    from flax import nnx

    from kitchenlab.distributed import to_host

    state = to_host(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    flat = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            flat[prefix] = np.asarray(node)
    walk("", state)
    return dict(sorted(flat.items()))


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest knob difference between two flat parameter dicts with the same keys."""
    if set(a) != set(b):
        raise ValueError(f"the two models have different knobs: {sorted(set(a) ^ set(b))}")
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


# ---------------------------------------------------------------- results
@dataclasses.dataclass
class WorkerResult:
    """One kitchen's report: who it was, what it held, what it learned."""

    process_id: int
    devices: list[str]  # every device of the job, as this worker saw them
    local_devices: list[str]  # the ones this process drives
    params: dict[str, np.ndarray]  # final knobs (the whole model, gathered)
    train_loss: np.ndarray  # (epochs,)
    val_accuracy: np.ndarray  # (epochs,)
    message: str
    seconds: float  # from start of the worker to its report
    compiled_at: float | None = None  # seconds after the launch when its program was ready

    def summary(self) -> str:
        # trained numbers to 2 digits (the same on any CPU); device counts, not device ids
        # (an id such as cpu:2048 depends on the JAX version)
        return (f"worker {self.process_id}: drives {len(self.local_devices)} of "
                f"{len(self.devices)} devices; {self.message}; final train loss "
                f"{self.train_loss[-1]:.2f}, val accuracy {self.val_accuracy[-1]:.2f}")


@dataclasses.dataclass
class ChainResult:
    """Every worker's report, in process order, and how long the launch took."""

    workers: list[WorkerResult]
    seconds: float
    coordinator: str  # "127.0.0.1:<port>", released when the job ended

    def workers_agree(self, atol: float = 0.0) -> bool:
        """Every worker ends with the same knobs (within ``atol``)."""
        first = self.workers[0].params
        return all(max_abs_diff(first, w.params) <= atol for w in self.workers[1:])


class ChainError(RuntimeError):
    """A worker died, or the job ran past its timeout; the message says which and why."""


# ---------------------------------------------------------------- the launcher
def free_port(host: str = HOST) -> int:
    """A TCP port nobody on ``host`` is using right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tail(path: str, n: int = 1500) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].strip()
    except OSError:
        return ""


def launch(job: ChainJob | None = None, *, processes: int = 2, devices_per_process: int = 1,
           timeout: float = 180.0, fail_worker: int | None = None,
           on_event: Callable[[str], None] | None = None) -> ChainResult:
    """Run ``job`` as ``processes`` worker processes joined into one JAX job; wait for all.

    Raises ``ChainError`` as soon as a worker exits without its report (the others are
    killed, the message names the worker, its exit code and the end of its stderr), or
    when the job is still running after ``timeout`` seconds. ``fail_worker`` makes that
    worker die on purpose right after joining (to test this). ``on_event(text)`` hears
    each step (workers started, each worker's report) for progress displays.
    """
    job = job or ChainJob()
    for name, value in (("processes", processes), ("devices_per_process", devices_per_process)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if fail_worker is not None and not 0 <= fail_worker < processes:
        raise ValueError(f"fail_worker must be in [0, {processes}), got {fail_worker!r}")
    port = free_port()
    coordinator = f"{HOST}:{port}"
    release_free_memory()  # the workers need the room more than this process's free heap
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
        [_package_root()] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    start, wall_start = time.perf_counter(), time.time()
    with tempfile.TemporaryDirectory(prefix="kitchenlab-chain-") as out:
        procs = []
        try:
            for i in range(processes):
                cmd = [sys.executable, "-m", "kitchenlab.chain", "--worker", str(i),
                       "--processes", str(processes), "--coordinator", coordinator,
                       "--devices-per-process", str(devices_per_process), "--out", out,
                       "--job", job.to_json()]
                if fail_worker == i:
                    cmd.append("--fail")
                with open(os.path.join(out, f"worker{i}.log"), "wb") as log:
                    procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, env=env))
            say = on_event or (lambda text: None)
            say(f"started {processes} workers; coordinator at {coordinator}")
            _wait_all(procs, out, start + timeout, timeout, say)
        finally:
            for p in procs:  # only the workers this launch started, by their process ids
                if p.poll() is None:
                    p.kill()
                    p.wait()
        workers = [_read_result(out, i, wall_start) for i in range(processes)]
    return ChainResult(workers, time.perf_counter() - start, coordinator)


def _wait_all(procs, out: str, deadline: float, timeout: float, say) -> None:
    reported = set()
    while True:
        codes = [p.poll() for p in procs]
        for i, code in enumerate(codes):
            if code == 0 and i not in reported and _has_result(out, i):
                reported.add(i)
                say(f"worker {i} reported ({len(reported)} of {len(procs)})")
        for i, code in enumerate(codes):
            if code is not None and (code != 0 or not _has_result(out, i)):
                raise ChainError(
                    f"worker {i} died (exit code {code}) before reporting; the other "
                    f"workers were stopped. Its last output:\n"
                    f"{_tail(os.path.join(out, f'worker{i}.log')) or '(nothing)'}")
        if all(code == 0 for code in codes):
            return
        if time.perf_counter() > deadline:
            running = [i for i, code in enumerate(codes) if code is None]
            raise ChainError(f"the job ran past its timeout of {timeout:g} s; workers "
                             f"{running} were still running and were stopped")
        time.sleep(0.05)  # cheap: the workers are doing the work


def _has_result(out: str, i: int) -> bool:
    return os.path.exists(os.path.join(out, f"result{i}.json"))


def _read_result(out: str, i: int, start_time: float) -> WorkerResult:
    with open(os.path.join(out, f"result{i}.json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(out, f"result{i}.npz")) as arrays:
        params = {k[len("param:"):]: arrays[k] for k in arrays.files if k.startswith("param:")}
        curves = {k: arrays[k] for k in ("train_loss", "val_accuracy")}
    token = os.path.join(out, f"compiled{i}")
    compiled_at = os.path.getmtime(token) - start_time if os.path.exists(token) else None
    return WorkerResult(process_id=i, devices=meta["devices"],
                        local_devices=meta["local_devices"], params=params,
                        message=meta["message"], seconds=meta["seconds"],
                        compiled_at=compiled_at, **curves)


# ---------------------------------------------------------------- one worker
def worker(process_id: int, processes: int, coordinator: str, out: str, job: ChainJob, *,
           devices_per_process: int = 1, fail: bool = False) -> None:
    """One kitchen of the chain: join the job, train on the global mesh, write a report.

    Must run in a fresh process (``jax.distributed.initialize`` comes before any other JAX
    call). Process 0 also hosts the coordinator.
    """
    t0 = time.perf_counter()
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_num_cpu_devices", devices_per_process)
    # The kitchen's compile cache, as kl.setup() sets it: a second launch reloads each
    # worker's programs. (Each process compiles its own: the cache key includes the
    # process's local devices, so one CPU process cannot share its binary with another.)
    jax.config.update("jax_compilation_cache_dir", os.environ.get("KITCHENLAB_CACHE") or
                      os.path.join(os.path.expanduser("~"), ".cache", "kitchenlab", "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.distributed.initialize(coordinator, num_processes=processes, process_id=process_id,
                               coordinator_bind_address=coordinator,
                               initialization_timeout=60, heartbeat_timeout_seconds=10)
    if fail:
        os._exit(FAIL_EXIT)  # a kitchen burns down right after opening (tests)
    from kitchenlab.distributed import make_mesh

    mesh = make_mesh(model=job.model_axis)
    with _taking_turns_to_compile(out, process_id):
        result = train_job(job, mesh)
    np.savez(os.path.join(out, f"result{process_id}.npz"),
             train_loss=result["train_loss"], val_accuracy=result["val_accuracy"],
             **{f"param:{k}": v for k, v in result["params"].items()})
    meta = {"devices": [str(d) for d in jax.devices()],
            "local_devices": [str(d) for d in jax.local_devices()],
            "message": result["message"], "seconds": time.perf_counter() - t0}
    jax.distributed.shutdown()
    tmp = os.path.join(out, f"result{process_id}.json.tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f)
    os.replace(tmp, os.path.join(out, f"result{process_id}.json"))  # the report is whole


TRAINING_PROGRAMS = ("jit(_fused_run)", "jit(_loop_step)")  # what fit compiles, by name
TURN_WAIT = 60.0  # seconds a worker waits for the one before it to compile, at most


@contextlib.contextmanager
def _taking_turns_to_compile(out: str, process_id: int):
    """Compile the training program one process after the other, not all at once.

    Compiling holds a few hundred MB for a moment; on one small machine the workers'
    peaks would add up. Worker k waits until worker k-1 has compiled (a file token
    written by a ``jax.monitoring`` listener as soon as XLA hands the program back, or
    reloads it from the compile cache), then compiles its own; nobody runs a collective
    before everyone has compiled, so nothing is lost. On a cluster (one host each) this
    is unnecessary.
    """
    import jax

    token = os.path.join(out, f"compiled{process_id}")

    def listener(event, duration, **kwargs):
        if event.endswith("backend_compile_duration") and kwargs.get("fun_name") in \
                TRAINING_PROGRAMS and not os.path.exists(token):
            release_free_memory()
            open(token, "w").close()

    if process_id > 0:
        deadline = time.monotonic() + TURN_WAIT
        while not os.path.exists(os.path.join(out, f"compiled{process_id - 1}")) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc ``malloc_trim``; elsewhere a
    no-op): after compiling, a process keeps ~150 MB of freed memory otherwise."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


# ---------------------------------------------------------------- command line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kitchenlab.chain",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2, help="workers to start")
    parser.add_argument("--devices-per-process", type=int, default=1,
                        help="XLA CPU devices per worker")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds before giving up")
    parser.add_argument("--epochs", type=int, default=ChainJob.epochs)
    parser.add_argument("--model-axis", type=int, default=1,
                        help="devices sharing each hidden layer")
    parser.add_argument("--loop", action="store_true", help="the readable loop, not fused")
    parser.add_argument("--fail-worker", type=int, default=None,
                        help="make this worker die after joining (to see the failure report)")
    # internal: how the launcher starts a worker
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--fail", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.processes, args.coordinator, args.out,
               ChainJob.from_json(args.job), devices_per_process=args.devices_per_process,
               fail=args.fail)
        return 0
    job = ChainJob(epochs=args.epochs, model_axis=args.model_axis, fused=not args.loop)
    try:
        result = launch(job, processes=args.processes,
                        devices_per_process=args.devices_per_process, timeout=args.timeout,
                        fail_worker=args.fail_worker)
    except ChainError as err:
        print(f"chain failed: {err}", file=sys.stderr)
        return 1
    print(f"{args.processes} workers joined at {result.coordinator} (released) and trained "
          f"in {result.seconds:.1f} s")
    for w in result.workers:
        print("  " + w.summary())
    print(f"workers agree on every knob: {result.workers_agree()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
