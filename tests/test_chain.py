"""The multi-process launcher (kl.chain): two processes train as one, dead workers are
reported within the timeout, ports are released, no worker is left behind.

Workers are subprocesses (``JAX_PLATFORMS=cpu``, one CPU device each); this test process
never calls ``jax.distributed.initialize``. Two processes x one device make the same
2-device mesh as one process with two devices, so their knobs agree to float rounding
(``KNOB_ATOL``, as in test_distributed.py) with each other's and with one device's.
"""

import os
import socket
import time

import numpy as np
import pytest

from kitchenlab import chain
from test_distributed import KNOB_ATOL, run_with_devices

JOB = chain.ChainJob(n_cakes=600, width=16, depth=2, epochs=4, batch_size=32)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped) is gone too
        return f.read().split(")")[-1].split()[0] == "Z"


@pytest.fixture(scope="module")
def two_process_run():
    return chain.launch(JOB, processes=2, timeout=300)


def test_two_processes_train_as_one(two_process_run, tmp_path):
    result = two_process_run
    assert [w.process_id for w in result.workers] == [0, 1]
    for w in result.workers:
        assert len(w.devices) == 2 and len(w.local_devices) == 1
        assert w.message == "trained 4 epochs"
        assert w.train_loss.shape == (4,) and w.train_loss[-1] < w.train_loss[0]
    assert result.workers[0].local_devices != result.workers[1].local_devices
    first, second = (w.compiled_at for w in result.workers)
    assert first is not None and second is not None and first <= second, \
        "the workers take turns to compile (the second waits for the first)"
    assert result.workers_agree(atol=0.0), "replicated knobs must be the same in every process"
    # the same job in one process: on a 2-device mesh, and on one device
    out = run_with_devices(f"""
        import numpy as np
        from kitchenlab import chain, distributed
        job = chain.ChainJob.from_json({JOB.to_json()!r})
        for name, mesh in (("mesh", distributed.make_mesh()), ("one", None)):
            np.savez({str(tmp_path)!r} + "/" + name + ".npz", **chain.train_job(job, mesh)["params"])
        print("ok")
    """, devices=2)
    assert out.strip() == "ok"
    for name in ("mesh", "one"):
        with np.load(tmp_path / f"{name}.npz") as f:
            single = {k: f[k] for k in f.files}
        assert chain.max_abs_diff(result.workers[0].params, single) <= KNOB_ATOL, name


def test_the_coordinator_port_is_released(two_process_run):
    host, port = two_process_run.coordinator.split(":")
    assert host == "127.0.0.1"
    with socket.socket() as s:  # nobody listens there any more (closed connections may
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # linger in TIME_WAIT)
        s.bind((host, int(port)))
        s.listen()


@pytest.mark.parametrize("dead", [1, 0])
def test_a_dead_worker_is_reported_within_the_timeout(dead):
    """Worker ``dead`` exits right after joining; the launcher names it and stops the rest
    long before the timeout (0 is the coordinator's host)."""
    seen = []
    real_popen = chain.subprocess.Popen

    def popen(*args, **kwargs):  # remember the workers' pids to check none is left
        p = real_popen(*args, **kwargs)
        seen.append(p.pid)
        return p

    chain.subprocess.Popen = popen
    try:
        t0 = time.perf_counter()
        with pytest.raises(chain.ChainError, match=rf"worker {dead} died \(exit code "
                                                   rf"{chain.FAIL_EXIT}\) before reporting"):
            chain.launch(chain.ChainJob.tiny(), processes=2, timeout=120, fail_worker=dead)
        assert time.perf_counter() - t0 < 60
    finally:
        chain.subprocess.Popen = real_popen
    assert len(seen) == 2 and all(_gone(pid) for pid in seen)


def test_a_job_past_its_timeout_is_stopped():
    t0 = time.perf_counter()
    with pytest.raises(chain.ChainError, match=r"ran past its timeout of 0.5 s; workers "
                                               r"\[0, 1\] were still running"):
        chain.launch(chain.ChainJob.tiny(), processes=2, timeout=0.5)
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("kwargs,match", [
    ({"processes": 0}, "processes must be a positive int"),
    ({"devices_per_process": 1.5}, "devices_per_process must be a positive int"),
    ({"timeout": -1}, "timeout must be a positive number"),
    ({"fail_worker": 2}, r"fail_worker must be in \[0, 2\)"),
])
def test_launch_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        chain.launch(chain.ChainJob.tiny(), **kwargs)


def test_job_round_trips_and_free_ports_are_free():
    job = chain.ChainJob(epochs=7, model_axis=2, fused=False)
    assert chain.ChainJob.from_json(job.to_json()) == job
    port = chain.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_max_abs_diff_needs_the_same_knobs():
    a = {"w": np.zeros(3, np.float32)}
    assert chain.max_abs_diff(a, {"w": np.array([0, -2, 1], np.float32)}) == 2.0
    with pytest.raises(ValueError, match="different knobs"):
        chain.max_abs_diff(a, {"v": np.zeros(3)})


def test_worker_summary_rounds_trained_numbers_and_counts_devices():
    w = chain.WorkerResult(process_id=1, devices=["cpu:0", "cpu:2048"],
                           local_devices=["cpu:2048"],
                           params={}, train_loss=np.array([0.5, 0.28151]),
                           val_accuracy=np.array([0.8, 0.90025]), message="trained 2 epochs",
                           seconds=1.0)
    assert w.summary() == ("worker 1: drives 1 of 2 devices; trained 2 epochs; final train loss "
                           "0.28, val accuracy 0.90")
