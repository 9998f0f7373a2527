"""Runs real torchtitan (``python -m torchtitan.train`` or ``torchrun``) in a
subprocess and reads back its per-step metrics.

Each run gets its own dump folder and writes TensorBoard scalars
(``--metrics.enable_tensorboard``), so losses come back as the float32
values torchtitan logged, exact enough for bit-equality. The working folder
holds the ``tests/assets`` that :mod:`_assets` builds (torchtitan's debug
configs read ``./tests/assets/{tokenizer,c4_test}``).
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# torchtitan's llama3 debug model at the small settings.
LLAMA3_DEBUG = [
    "--module", "llama3", "--config", "llama3_debugmodel",
    "--training.seq_len", "256", "--training.local_batch_size", "2",
    "--debug.seed", "42",
]


@dataclasses.dataclass
class Run:
    returncode: int
    log: str
    losses: Dict[int, float]       # step -> global average loss (float32, from TensorBoard)
    grad_norms: Dict[int, float]
    step_seconds: List[float]      # host wall time between logged steps (from log stamps)

    def loss_list(self) -> List[float]:
        return [self.losses[s] for s in sorted(self.losses)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scalars(dump_folder: str) -> Dict[str, Dict[int, float]]:
    from tensorboard.backend.event_processing import event_accumulator

    out: Dict[str, Dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(dump_folder, "tb", "**", "events.out.tfevents.*"),
                                 recursive=True)):
        acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for ev in acc.Scalars(tag):
                out.setdefault(tag, {})[ev.step] = ev.value
    return out


_STAMP = re.compile(r"^\[titan\] (\d+-\d+-\d+ \d+:\d+:\d+,\d+) .*step:\s+(\d+)\s", re.M)


def _step_seconds(log: str) -> List[float]:
    import datetime

    stamps = [datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
              for m in _STAMP.finditer(log)]
    return [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]


class Pending:
    """A started torchtitan run; :meth:`wait` returns its :class:`Run`."""

    def __init__(self, cmd, cwd, env, dump, timeout):
        self._dump, self._timeout, self._run = dump, timeout, None
        self._proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)

    def wait(self) -> Run:
        if self._run is None:
            try:
                log, _ = self._proc.communicate(timeout=self._timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                log, _ = self._proc.communicate()
                log += f"\n[titan_run] killed after {self._timeout} s"
            rc = self._proc.returncode
            scalars = _scalars(self._dump) if rc == 0 else {}
            self._run = Run(rc, log, scalars.get("loss_metrics/global_avg_loss", {}),
                            scalars.get("grad_norm", {}), _step_seconds(log))
        return self._run


def run(*args, **kwargs) -> Run:
    return start(*args, **kwargs).wait()


def start(workdir: str, name: str, args: Sequence[str], *, device: str = "trn", nproc: int = 1,
          env: Optional[Dict[str, str]] = None, timeout: float = 300) -> Pending:
    """Trains with torchtitan's own entry point from ``workdir``.

    ``device="trn"``: ``torchtitan.train`` unchanged; torchtitan picks trn
    itself. ``device="cpu"``: the same through :mod:`cpu_reference`, with the
    trn backend not loaded. ``nproc > 1`` launches with torchrun.
    """
    dump = os.path.join(workdir, "runs", name)
    full_env = dict(os.environ)
    full_env.update({
        "HF_HOME": os.path.join(workdir, "hf"),       # datasets' cache stays in the tmp folder
        "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "TORCHINDUCTOR_CACHE_DIR": full_env.get("TORCHINDUCTOR_CACHE_DIR",
                                                os.path.join(workdir, "inductor")),
        "OMP_NUM_THREADS": full_env.get("OMP_NUM_THREADS", "1"),
        "PYTHONUNBUFFERED": "1",
    })
    if device == "cpu":
        full_env["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"
    full_env.update(env or {})
    entry = ([os.path.join(HERE, "cpu_reference.py")] if device == "cpu"
             else ["-m", "torchtitan.train"])
    titan_args = [*args, "--dump_folder", dump, "--metrics.enable_tensorboard"]
    if nproc == 1:
        full_env.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                         "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                         "MASTER_PORT": str(_free_port())})
        cmd = [sys.executable, *entry, *titan_args]
    else:
        for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            full_env.pop(k, None)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}",
               "--local-ranks-filter", "0", *entry, *titan_args]
    return Pending(cmd, workdir, full_env, dump, timeout)
