"""Real torchtitan 0.3.0 trains its qwen3 MoE debug model with expert
parallelism on 2 trn ranks, with the modelled-cost report switch on.

One torchrun run (EP=2 over FSDP=2, 3 steps, tiny batch) checks:
- losses decrease (TensorBoard scalars torchtitan wrote);
- tokens are dispatched and combined with uneven ``trnccl::all_to_all``
  (send and receive row counts differ), read from the chrome trace the
  report switch writes at exit;
- the experts' grouped GEMMs (``torch._grouped_mm``) ran on the Tensor
  Engine of the trn device;
- the report switch logs the profiler summary at exit and writes a valid
  JSON trace where ``TORCH_TRN3_TITAN_TRACE`` says (``{rank}`` per rank).
"""
import json
import os

import pytest

pytest.importorskip("torchtitan", reason="torchtitan is not installed (pip install -e '.[titan]' or '.[test]')")

import titan_run  # noqa: E402

STEPS = 3
MOE_EP2 = [
    "--module", "qwen3", "--config", "qwen3_moe_debug",
    "--training.steps", str(STEPS), "--training.seq_len", "64", "--training.local_batch_size", "2",
    "--debug.seed", "42",
    "--parallelism.expert_parallel_degree", "2", "--parallelism.data_parallel_shard_degree", "2",
    "--parallelism.spmd_backend", "partial_dtensor",
    # torchtitan's CUDA-graph check rejects the all-to-all dispatcher unless graphs are off
    "--training.disable_cuda_graphs",
]


@pytest.fixture(scope="module")
def moe_run(titan_workdir):
    trace = os.path.join(titan_workdir, "moe_traces", "trace_rank{rank}.json")
    run = titan_run.run(titan_workdir, "trn_moe_ep2", MOE_EP2, nproc=2, timeout=400,
                        env={"TORCH_TRN3_TITAN_REPORT": "1", "TORCH_TRN3_TITAN_TRACE": trace})
    assert run.returncode == 0, run.log[-6000:]
    return run, trace


def _events(path):
    with open(path) as f:
        doc = json.load(f)
    events = doc["traceEvents"] if isinstance(doc, dict) else doc
    return [e for e in events if e.get("ph") == "X"]


def _rows(shapes: str) -> int:
    return int(shapes.split("[")[1].split(",")[0].rstrip("]"))


def test_moe_ep2_losses_decrease(moe_run):
    run, _ = moe_run
    assert "ep=2" in run.log, run.log[-3000:]
    assert sorted(run.losses) == list(range(1, STEPS + 1)), run.log[-3000:]
    losses = run.loss_list()
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_moe_dispatch_is_uneven_trnccl_all_to_all_and_experts_on_tensor_engine(moe_run):
    _, trace = moe_run
    events = _events(trace.replace("{rank}", "0"))
    a2a = [e for e in events if e["name"].startswith("trnccl::all_to_all")]
    assert a2a and all(e["cat"] == "Collective" for e in a2a)
    assert all("moe" in e["args"]["module"] for e in a2a)
    token_moves = [e for e in a2a if "bf16" in e["args"]["inputs"] or "fp32" in e["args"]["inputs"]]
    uneven = [e for e in token_moves if _rows(e["args"]["inputs"]) != _rows(e["args"]["outputs"])]
    assert uneven, [(e["args"]["inputs"], e["args"]["outputs"]) for e in token_moves[:8]]
    experts_mm = [e for e in events if e["cat"] == "Tensor" and "experts" in e["args"]["module"]]
    assert experts_mm, "no Tensor Engine op in the routed experts"
    assert any("(backward)" in e["args"]["module"] for e in experts_mm)
    # an expert that received no tokens this step runs an empty GEMM
    busy = [e for e in experts_mm if e["args"]["flops"] > 0]
    assert len(busy) > len(experts_mm) // 2 and all(e["dur"] > 0 for e in busy)


def test_report_switch_logs_summary_and_writes_trace_at_exit(moe_run):
    run, trace = moe_run
    assert "modelled Trainium3: step" in run.log and "MFU" in run.log, run.log[-3000:]
    summary = run.log[run.log.index("torch_trn3 profile:"):]
    assert "All times are modelled Trainium time" in summary
    assert f"{STEPS} step(s)" in summary.splitlines()[0], summary.splitlines()[0]
    assert "trnccl::all_to_all" in summary and "Top ops by modelled time" in summary
    assert f"torch_trn3 trace (modelled device time, Perfetto / chrome://tracing): {trace.replace('{rank}', '0')}" in run.log
    for rank in (0, 1):
        events = _events(trace.replace("{rank}", str(rank)))
        tensor = [e for e in events if e["cat"] == "Tensor"]
        assert tensor and all(e["dur"] >= 0 for e in tensor)
        steps = [e for e in events if e["cat"] == "step"]
        assert len(steps) == STEPS, [e["name"] for e in steps]
