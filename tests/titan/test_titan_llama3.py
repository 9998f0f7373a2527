"""Real torchtitan 0.3.0, unchanged, trains its llama3 debug model on trn.

Each test runs torchtitan's own entry point in a subprocess from a folder
holding the tokenizer and ``c4_test`` data the tests build
(:mod:`_assets`). torchtitan picks the device itself: torch's
``_get_available_device_type()`` reports the autoloaded ``trn``. The CPU
reference is the same run with the backend off (:mod:`cpu_reference`).
"""
import pytest

pytest.importorskip("torchtitan", reason="torchtitan is not installed (pip install -e '.[titan]' or '.[test]')")

import titan_run  # noqa: E402

STEPS = 4
ARGS = [*titan_run.LLAMA3_DEBUG, "--training.steps", str(STEPS)]

_runs = {}


def _started(workdir, name, args, **kw):
    """Each configuration runs once per session; tests share the runs."""
    if name not in _runs:
        _runs[name] = titan_run.start(workdir, name, args, **kw)
    return _runs[name]


def _finished(pending):
    run = pending.wait()
    assert run.returncode == 0, run.log[-6000:]
    assert sorted(run.losses) == list(range(1, STEPS + 1)), run.log[-3000:]
    return run


def _rel(a, b):
    return abs(a - b) / abs(b)


def test_llama3_debugmodel_trains_on_trn_with_cpu_losses(titan_workdir):
    trn = _started(titan_workdir, "trn_eager", ARGS)
    cpu = _started(titan_workdir, "cpu_eager", ARGS, device="cpu")  # runs alongside
    trn, cpu = _finished(trn), _finished(cpu)
    assert "device_type=trn" in trn.log or "TRN memory usage" in trn.log, trn.log[-3000:]
    # Dense ops are the CPU's kernels on zero-copy views, FlexAttention is the
    # same dense math on both: fp32 losses and grad norms are bit-equal.
    assert trn.loss_list() == cpu.loss_list(), (trn.losses, cpu.losses)
    assert trn.grad_norms == cpu.grad_norms
    assert trn.losses[STEPS] < trn.losses[1]


def test_compile_enable_on_trn_matches_eager(titan_workdir):
    """``--compile.enable``: torchtitan compiles each block with the default
    inductor, which on trn reaches inductor-for-trn code generation."""
    compiled = _started(titan_workdir, "trn_compile", [*ARGS, "--compile.enable"])
    eager = _started(titan_workdir, "trn_eager", ARGS)
    compiled, eager = _finished(compiled), _finished(eager)
    for step in range(1, STEPS + 1):
        assert _rel(compiled.losses[step], eager.losses[step]) < 1e-3, (step, compiled.losses, eager.losses)
    assert compiled.losses[STEPS] < compiled.losses[1]


FSDP2 = ["--parallelism.data_parallel_shard_degree", "2",
         # the default spmd_backend (spmd_types) needs a newer torch than 2.13 for >1 rank
         "--parallelism.spmd_backend", "partial_dtensor"]


REPLICATE2 = ["--parallelism.data_parallel_replicate_degree", "2",
              "--parallelism.spmd_backend", "partial_dtensor"]


def _fsdp2(workdir):
    return _started(workdir, "trn_fsdp2", [*ARGS, *FSDP2], nproc=2)


def test_fsdp2_two_ranks_trains(titan_workdir):
    """2-rank FSDP2 under torchrun: all-gathers and reduce-scatters on trnccl;
    FSDP2 reduces gradients with ReduceOp.PREMUL_SUM (torchtitan's gradient
    divide factor), which trnccl implements."""
    fsdp = _finished(_fsdp2(titan_workdir))
    assert "dp_shard=2" in fsdp.log, fsdp.log[-3000:]
    assert fsdp.losses[STEPS] < fsdp.losses[1], fsdp.losses


def test_fsdp2_equals_replicated_data_parallel(titan_workdir):
    """Replicated data parallel on the same 2 ranks sees the same data and,
    through DTensor's offset-based RNG on trn, the same initial weights as
    the sharded run, so the math says the losses agree (only the order of
    the gradient sums may differ)."""
    ddp = _finished(_started(titan_workdir, "trn_replicate2", [*ARGS, *REPLICATE2], nproc=2))
    fsdp = _finished(_fsdp2(titan_workdir))
    assert "dp_replicate=2" in ddp.log, ddp.log[-3000:]
    for step in range(1, STEPS + 1):
        assert _rel(fsdp.losses[step], ddp.losses[step]) < 1e-5, (step, fsdp.losses, ddp.losses)


def test_neuron_device_name_uses_torchtitans_trainium_peak(titan_workdir):
    """``TORCH_TRN3_DEVICE=neuron``: torchtitan picks device "neuron", and its
    own Trainium code path (``get_device_name`` contains "neuron",
    ``get_device_properties().name`` is the chip) sets the peak FLOPs."""
    trn = _started(titan_workdir, "trn_eager", ARGS)
    run = _finished(_started(titan_workdir, "neuron_eager", ARGS, env={"TORCH_TRN3_DEVICE": "neuron"}))
    assert "NEURON memory usage" in run.log, run.log[-3000:]
    assert "Peak flops undefined" not in run.log and "Unknown neuron device" not in run.log
    assert "Peak FLOPS used for computing MFU: 1.580e+14" in run.log  # 79 TFLOP/s x 2 cores (LNC=2)
    assert run.loss_list() == _finished(trn).loss_list()


def test_modelled_trainium_cost_is_one_switch_away(titan_workdir):
    """``TORCH_TRN3_TITAN_REPORT=1`` adds, after each step torchtitan logs,
    the chip model's step time, MFU against the device's bf16 peak and peak
    HBM of the logical device; training itself is unchanged."""
    import re

    trn = _started(titan_workdir, "trn_eager", ARGS)
    run = _finished(_started(titan_workdir, "trn_report", ARGS, env={"TORCH_TRN3_TITAN_REPORT": "1"}))
    lines = re.findall(r"modelled Trainium3: step ([\d.]+) ms  MFU ([\d.]+)% \(bf16 peak ([\d.]+) "
                       r"TFLOP/s\)  peak HBM ([\d.]+) GiB", run.log)
    assert len(lines) == STEPS - 1, run.log[-3000:]  # step 1 holds set-up work
    for ms, mfu, peak, hbm in lines:
        assert float(ms) > 0 and 0 < float(mfu) < 100 and float(hbm) > 0
        assert float(peak) == pytest.approx(157.29, rel=1e-3)  # LNC=2 logical device
    assert run.loss_list() == _finished(trn).loss_list()


def test_tensor_parallel_two_ranks_trains(titan_workdir):
    """2-rank TP (colwise/rowwise DTensor linears, loss parallel) on trnccl.
    Both ranks see the same batch as the 1-rank run, but torchtitan draws
    the initial weights per TP shard (DTensor RNG), so only the first loss
    is close to the 1-rank run's (same init distribution), not equal."""
    run = _finished(_started(titan_workdir, "trn_tp2", [
        *ARGS, "--parallelism.tensor_parallel_degree", "2",
        "--parallelism.spmd_backend", "partial_dtensor"], nproc=2))
    assert "tp=2" in run.log, run.log[-3000:]
    assert run.losses[STEPS] < run.losses[1], run.losses
    assert _rel(run.losses[1], 8.1354) < 1e-2  # ln(2048) = 7.62 plus init noise, as on 1 rank


CHECKPOINT = [*titan_run.LLAMA3_DEBUG, "--training.steps", "6", "--checkpoint.enable",
              "--checkpoint.interval", "3", "--checkpoint.keep_latest_k", "0"]


def _uninterrupted(workdir):
    return _started(workdir, "trn_ckpt_full", CHECKPOINT)


def test_checkpoint_saved_with_dcp_at_step_3(titan_workdir):
    import os

    run = _uninterrupted(titan_workdir).wait()
    assert run.returncode == 0, run.log[-6000:]
    folder = os.path.join(titan_workdir, "runs", "trn_ckpt_full", "checkpoint")
    assert sorted(os.listdir(folder)) == ["step-3", "step-6"]
    assert os.path.exists(os.path.join(folder, "step-3", ".metadata"))  # a DCP checkpoint


def test_resume_from_step_3_equals_uninterrupted_run(titan_workdir):
    """A second run whose checkpoint folder holds only step 3 loads it
    (model, optimizer, lr schedule, data loader) and trains steps 4-6 with
    the uninterrupted run's losses, bit for bit."""
    import os
    import shutil

    full = _uninterrupted(titan_workdir).wait()
    assert full.returncode == 0, full.log[-6000:]
    resumed_ckpt = os.path.join(titan_workdir, "runs", "trn_ckpt_resumed", "checkpoint")
    shutil.copytree(os.path.join(titan_workdir, "runs", "trn_ckpt_full", "checkpoint", "step-3"),
                    os.path.join(resumed_ckpt, "step-3"))
    resumed = titan_run.run(titan_workdir, "trn_ckpt_resumed", CHECKPOINT)
    assert resumed.returncode == 0, resumed.log[-6000:]
    assert "Loading the checkpoint from" in resumed.log and "step-3" in resumed.log
    assert sorted(resumed.losses) == [4, 5, 6], resumed.losses
    assert resumed.losses == {s: full.losses[s] for s in (4, 5, 6)}
