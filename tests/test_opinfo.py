"""Every ATen op works on trn: sweep PyTorch's OpInfo database against CPU.

For every OpInfo in ``torch.testing._internal.common_methods_invocations.op_db``
and each of float32/bfloat16 that the op supports on CPU, the first sample
inputs are run on CPU and on ``trn``, forward and backward, and compared
(the fallback runs the same CPU kernels, so results are expected to be equal
up to assert_close's default tolerance for the dtype). The whole sweep runs
in this one process: a kernel that crashes would take pytest down with it.

The sweep itself lives in ``tests/opinfo_sweep.py`` (run it standalone to look
at single ops). ``TRN_OPINFO_SAMPLES`` sets the samples per case (0 = all of
them, ~2x the time; the default finds the same failures today).
``TRN_OPINFO_PROGRESS=<file>`` logs each case before it runs (crash hunting).

Goal: >= 98% of the cases that work on CPU pass, and every failing case is
listed in ``KNOWN_FAILURES`` below with its reason. A failure not listed fails
the test; a listed case that now passes is reported so it can be removed.
"""

import os
import sys
import time

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opinfo_sweep as sweep  # noqa: E402

MIN_PASS_RATE = 0.98
SAMPLES = int(os.environ.get("TRN_OPINFO_SAMPLES", sweep.MAX_SAMPLES)) or 10**9

_SPARSE_CSR = (
    "sparse CSR tensors on trn have no kernels: the boxed fallback is registered "
    "for the dense PrivateUse1 key only, so ops dispatched to SparseCsrPrivateUse1 "
    "raise NotImplementedError (and .cpu() of a CSR trn tensor fails)"
)
_TO_SPARSE = (
    "sparse COO on trn is not supported: a CPU kernel's sparse output is refused "
    "with a clear RuntimeError (trn supports only the strided layout)"
)

# "opname[.variant]:dtype:fwd|bwd" -> reason
KNOWN_FAILURES: dict[str, str] = {
    "sparse.sampled_addmm:float32:fwd": _SPARSE_CSR,
    "sparse.sampled_addmm:float32:bwd": _SPARSE_CSR,
    "sparse.mm.reduce:float32:fwd": _SPARSE_CSR,
    "sparse.mm.reduce:float32:bwd": _SPARSE_CSR,
    "sparse.mm.reduce:bfloat16:fwd": _SPARSE_CSR,
    "sparse.mm.reduce:bfloat16:bwd": _SPARSE_CSR,
    "to_sparse:float32:fwd": _TO_SPARSE,
    "to_sparse:bfloat16:fwd": _TO_SPARSE,
    "to_sparse:float32:bwd": _TO_SPARSE,
}


@pytest.fixture(scope="module")
def sweep_results():
    pytest.importorskip("torch_trn3")
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    # the samples are tiny: intra-op threads cost more than they give
    torch.set_num_threads(1)
    try:
        # TRN_OPINFO_PROGRESS=<file>: each case's key is written there before
        # it runs, so a hard crash can be traced to its op
        results = sweep.run_sweep(max_samples=SAMPLES,
                                  progress_file=os.environ.get("TRN_OPINFO_PROGRESS"))
    finally:
        torch.set_num_threads(threads)
    return results, time.perf_counter() - t0


def _report(capsys, lines):
    # shown without -s too, so CI logs carry the counts
    with capsys.disabled():
        print()
        for line in lines:
            print(line)


def test_opinfo_sweep_pass_rate(sweep_results, capsys):
    results, wall = sweep_results
    samples = "all" if SAMPLES >= 10**9 else SAMPLES
    lines = sweep.summarize(results)
    lines.append(f"OpInfo sweep: {len(results)} cases, up to {samples} samples each, "
                 f"{wall:.1f}s")
    _report(capsys, lines)
    rate = sweep.pass_rate(results)
    assert rate >= MIN_PASS_RATE, "\n".join(lines)


def test_opinfo_sweep_failures_are_known(sweep_results, capsys):
    results, _ = sweep_results
    failed = {r.key: r.detail for r in results if r.status == "fail"}
    ran = {r.key: r.status for r in results}
    unknown = {k: v for k, v in failed.items() if k not in KNOWN_FAILURES}
    fixed = sorted(k for k in KNOWN_FAILURES if ran.get(k) == "pass")
    lines = []
    if fixed:
        lines.append(f"OpInfo sweep: {len(fixed)} known failures now pass "
                     f"(remove them from KNOWN_FAILURES): " + ", ".join(fixed))
    if unknown:
        lines.append(f"OpInfo sweep: {len(unknown)} new failures:")
        lines += [f"  {k}: {v}" for k, v in sorted(unknown.items())]
    if lines:
        _report(capsys, lines)
    assert not unknown, "new OpInfo failures on trn:\n" + "\n".join(
        f"{k}: {v}" for k, v in sorted(unknown.items()))


def test_known_failures_name_real_cases():
    """Every KNOWN_FAILURES key names an OpInfo case the sweep can run."""
    from torch.testing._internal.common_methods_invocations import op_db

    valid = {f"{sweep.op_full_name(op)}:{sweep.dtype_name(dt)}:{d}"
             for op, dt, d in sweep.iter_cases()}
    assert len(op_db) > 0
    stale = sorted(set(KNOWN_FAILURES) - valid)
    assert not stale, f"KNOWN_FAILURES keys that are no OpInfo case: {stale}"
    assert all(reason.strip() for reason in KNOWN_FAILURES.values())
