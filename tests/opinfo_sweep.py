"""Sweep PyTorch's OpInfo database on the `trn` device and compare with CPU.

For every OpInfo in ``op_db`` and every dtype in ``DTYPES`` that the OpInfo
supports on CPU, the first ``max_samples`` sample inputs are run on CPU and on
``trn`` (the same sample, moved with ``.to("trn")``), forward and - when the
op supports autograd for that dtype - backward, and the results are compared.

Each (op, dtype, direction) is one case, keyed ``"name[.variant]:dtype:fwd|bwd"``,
with one of these outcomes:

- ``pass``    trn matches CPU on every sample that works on CPU;
- ``fail``    trn raised, or a result differs from CPU (``detail`` says how);
- ``cpu``     every sample raised on CPU: the case does not work on CPU and is
              left out of the pass rate;
- ``na``      nothing to test (e.g. backward where no output needs grad);
- ``skip``    listed in ``SKIPS`` (with its reason) and not run.

Every exception is caught per sample, so one broken op never stops the sweep.
Run it standalone to look at one op, e.g.::

    PYTHONPATH=. python tests/opinfo_sweep.py --ops add,mm --verbose
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import signal
import sys
import time
import traceback
import warnings

import torch

DEVICE = os.environ.get("TORCH_TRN3_DEVICE", "trn")
DTYPES = (torch.float32, torch.bfloat16)
MAX_SAMPLES = 32
CASE_TIMEOUT_S = 60

# Random ops (rand_like, bernoulli, dropout, multinomial, normal, ...) need no
# special case: trn's generator, seeded like CPU's, draws the same stream, and
# both generators are seeded with 0 right before every run, so values compare.
# Ops whose output is uninitialised memory: only metadata can be compared.
UNINITIALIZED_OUTPUT = {
    "empty", "empty_like", "empty_strided", "empty_permuted", "new_empty",
    "new_empty_strided",
}

# "name[.variant]" or full case key -> reason: not run at all (counted as
# not passing). Empty: no op is too slow to run.
SKIPS: dict[str, str] = {}

# Sample tensors the op requires on the CPU whatever the device (the sample
# function builds them with torch.tensor(), i.e. on CPU, also for CUDA).
# op name -> paths into (input, args, kwargs).
KEEP_ON_CPU: dict[str, frozenset] = {
    # ATen: "tensor_split expected tensor_indices_or_sections to be on cpu"
    "tensor_split": frozenset({(1, 0)}),
}

# Cases whose results legitimately differ by more than assert_close's default
# tolerance for the dtype; "op name:dtype" (all variants) -> (atol, rtol, reason).
TOLERANCES: dict[str, tuple[float, float, str]] = {
    "nn.functional.linear_cross_entropy:bfloat16": (
        2e-2, 1e-1,
        "PyTorch resolves acc_policy='auto' per device type "
        "(torch/nn/modules/linear_cross_entropy_options.py _AUTO_DEFAULTS and "
        "_resolve_auto_acc_dtype): bf16 accumulates in fp32 on 'cpu' but in "
        "bf16 on any other device, so bf16 results differ in the last bits",
    ),
}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def op_full_name(op) -> str:
    return op.name + ("." + op.variant_test_name if op.variant_test_name else "")


@dataclasses.dataclass
class CaseResult:
    key: str
    status: str  # pass | fail | cpu | na | skip
    detail: str = ""
    seconds: float = 0.0
    exact: bool = False  # passed with every value bit-identical to CPU


# --------------------------------------------------------------------------
# moving samples and outputs between devices


def _is_cpu_device(x) -> bool:
    if isinstance(x, torch.device):
        return x.type == "cpu"
    if isinstance(x, str):
        return x == "cpu"
    return False


def _copy_tensor(x: torch.Tensor, device) -> torch.Tensor:
    """Copy ``x`` to ``device`` keeping its exact memory layout: the whole
    storage is copied and ``x``'s sizes/strides/offset are re-applied, so
    views that reach outside their own elements (``as_strided`` samples),
    expanded (stride-0) and overlapping inputs behave as they do on CPU."""
    with torch.no_grad():
        x = x.detach()
        if x.layout != torch.strided or x.is_conj() or x.is_neg() or x.numel() == 0:
            return x.to(device)
        st = x.untyped_storage()
        n = st.nbytes() // x.element_size()
        flat = torch.empty(0, dtype=x.dtype).set_(st, 0, (n,), (1,))
        if torch.device(device).type == "cpu":
            flat_dev = flat  # the CPU run may share the sample's memory
        else:
            flat_dev = flat.to(device)
        return flat_dev.as_strided(x.shape, x.stride(), x.storage_offset())


def _to_device(x, device, requires_grad_copy: bool, keep_on_cpu=frozenset(), path=()):
    """Recursively copy tensors to ``device``; device arguments naming the CPU
    (factory functions' ``device=`` kwargs) are retargeted to ``device``.
    Tensors whose path is in ``keep_on_cpu`` stay where they are."""
    if isinstance(x, torch.Tensor):
        if path in keep_on_cpu:
            return x
        y = _copy_tensor(x, device)
        if requires_grad_copy and x.requires_grad:
            y.requires_grad_(True)
        return y
    if _is_cpu_device(x):
        return device if isinstance(x, str) else torch.device(device)
    if isinstance(x, list):
        return [_to_device(v, device, requires_grad_copy, keep_on_cpu, path + (i,))
                for i, v in enumerate(x)]
    if isinstance(x, tuple) and not hasattr(x, "_fields"):
        return tuple(_to_device(v, device, requires_grad_copy, keep_on_cpu, path + (i,))
                     for i, v in enumerate(x))
    if isinstance(x, dict):
        return {k: _to_device(v, device, requires_grad_copy, keep_on_cpu, path + (k,))
                for k, v in x.items()}
    return x


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu")
    if isinstance(x, (list, tuple)):
        return [_to_cpu(v) for v in x]
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    return x


def _flatten(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _flatten(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _flatten(v)


def _wrong_device_outputs(out, device_type) -> list[str]:
    bad = []
    for t in _flatten(out):
        if t.device.type != device_type:
            bad.append(str(t.device))
    return bad


# --------------------------------------------------------------------------
# comparison


class Mismatch(AssertionError):
    pass


_INEXACT = [False]  # set by _compare when a value passed only within tolerance


def _bit_equal(a: torch.Tensor, e: torch.Tensor) -> bool:
    if a.dtype.is_floating_point or a.dtype.is_complex:
        return bool(((a == e) | (a.isnan() & e.isnan())).all())
    return torch.equal(a, e)


def _compare(actual, expected, *, metadata_only=False, path="out", tol=None):
    """``actual`` from trn (already on CPU), ``expected`` from CPU."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor):
            raise Mismatch(f"{path}: expected a tensor, got {type(actual).__name__}")
        if actual.dtype != expected.dtype:
            raise Mismatch(f"{path}: dtype {actual.dtype} != {expected.dtype}")
        if actual.shape != expected.shape:
            raise Mismatch(f"{path}: shape {tuple(actual.shape)} != {tuple(expected.shape)}")
        if metadata_only:
            return
        if expected.layout != torch.strided:
            expected = expected.to_dense()
        if actual.layout != torch.strided:
            actual = actual.to_dense()
        try:
            extra = {} if tol is None else {"atol": tol[0], "rtol": tol[1]}
            torch.testing.assert_close(
                actual, expected, equal_nan=True, check_device=False,
                check_stride=False, check_layout=False, **extra,
            )
        except AssertionError as e:
            msg = str(e).strip().splitlines()
            raise Mismatch(f"{path}: " + " ".join(m.strip() for m in msg[:4])) from None
        if not _INEXACT[0] and not _bit_equal(actual, expected):
            _INEXACT[0] = True
        return
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            raise Mismatch(f"{path}: structure differs ({type(actual).__name__})")
        for i, (a, e) in enumerate(zip(actual, expected)):
            _compare(a, e, metadata_only=metadata_only, path=f"{path}[{i}]", tol=tol)
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or actual.keys() != expected.keys():
            raise Mismatch(f"{path}: dict keys differ")
        for k in expected:
            _compare(actual[k], expected[k], metadata_only=metadata_only, path=f"{path}[{k!r}]",
                     tol=tol)
        return
    if isinstance(expected, float) and isinstance(actual, float):
        if expected != expected and actual != actual:
            return
        if metadata_only:
            return
        torch.testing.assert_close(actual, expected)
        return
    if metadata_only and isinstance(expected, (int, float, complex)):
        return
    if actual != expected:
        raise Mismatch(f"{path}: {actual!r} != {expected!r}")


# --------------------------------------------------------------------------
# running one sample


def _cheap_manual_seed(seed):
    """torch.manual_seed for the CPU and trn generators only. The real one
    also queues lazy CUDA/XPU/MTIA seeding, formatting a stack trace each
    time; sample-input functions call it a lot and it dominated run time."""
    seed = int(seed)
    mod = getattr(torch, DEVICE, None)
    if mod is None or not hasattr(mod, "manual_seed_all"):
        return _REAL_MANUAL_SEED[0](seed)
    mod.manual_seed_all(seed)
    return torch.default_generator.manual_seed(seed)


_REAL_MANUAL_SEED = [torch.manual_seed]


def _seed():
    _cheap_manual_seed(0)


def _call(op, sample, for_grad):
    _seed()
    if for_grad:
        return op.gradcheck_wrapper(op.get_op(), sample.input, *sample.args, **sample.kwargs)
    return op(sample.input, *sample.args, **sample.kwargs)


def _sample_parts(op, sample):
    parts = (sample.input, sample.args, sample.kwargs)
    if (getattr(op, "is_factory_function", False) and "device" not in sample.kwargs
            and next(_flatten(parts), None) is None):
        # a factory call like torch.arange(2): name the device explicitly
        # (retargeted to trn by _to_device), as the user would
        parts = (sample.input, sample.args, dict(sample.kwargs, device="cpu"))
    return parts


def _cotangents(outs):
    g = torch.Generator().manual_seed(1234)
    cots = []
    for t in outs:
        c = torch.randn(t.shape, generator=g, dtype=torch.float32)
        cots.append(c.to(t.dtype))
    return cots


def _run_grad(op, sample_parts, device, output_process, cots_cpu=None):
    """Forward + torch.autograd.grad of a fixed cotangent. Returns
    (grads, cotangents) or None when no output is differentiable."""
    from torch.testing._internal.opinfo.core import SampleInput

    inp, args, kwargs = sample_parts
    sample = SampleInput(inp, args=args, kwargs=kwargs)
    out = _call(op, sample, for_grad=True)
    out = output_process(out)
    outs = []
    for t in _flatten(out):
        if not t.requires_grad:
            continue
        if t.dtype.is_complex:  # differentiate (real, imag) as two real outputs
            outs.append(torch.view_as_real(t.resolve_conj()))
        elif t.dtype.is_floating_point:
            outs.append(t)
    ins = [t for t in _flatten(sample_parts) if t.requires_grad]
    if not outs or not ins:
        return None
    if cots_cpu is None:
        cots_cpu = _cotangents(outs)
    cots = [c.to(device) for c in cots_cpu]
    grads = torch.autograd.grad(outs, ins, cots, allow_unused=True)
    return [None if g is None else g for g in grads], cots_cpu


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"case took longer than {CASE_TIMEOUT_S}s")


def _short_exc(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return " ".join(t.strip() for t in text[:3])[:400]


def run_case(op, dtype, direction, max_samples=MAX_SAMPLES, verbose=False) -> CaseResult:
    """Run one (op, dtype, fwd|bwd) case; never raises (except KeyboardInterrupt)."""
    key = f"{op_full_name(op)}:{dtype_name(dtype)}:{direction}"
    t0 = time.perf_counter()
    base = op_full_name(op)
    if base in SKIPS or key in SKIPS:
        return CaseResult(key, "skip", SKIPS.get(key) or SKIPS[base])
    requires_grad = direction == "bwd"
    tol = TOLERANCES.get(f"{op.name}:{dtype_name(dtype)}")
    tol = tol[:2] if tol else None
    n_cpu_ok = 0
    n_tested = 0
    failure = None
    _INEXACT[0] = op.name in UNINITIALIZED_OUTPUT
    try:
        samples = op.sample_inputs("cpu", dtype, requires_grad=requires_grad)
        samples = list(itertools.islice(samples, max_samples))
    except Exception as e:  # sample generation itself failed on CPU
        return CaseResult(key, "cpu", "sample_inputs: " + _short_exc(e), time.perf_counter() - t0)
    for i, sample in enumerate(samples):
        # copy to trn before the CPU run: some ops mutate their inputs
        try:
            trn_parts = _to_device(_sample_parts(op, sample), DEVICE, requires_grad,
                                   KEEP_ON_CPU.get(op.name, frozenset()))
        except Exception as e:
            failure = failure or f"sample {i}: moving inputs to {DEVICE}: " + _short_exc(e)
            continue
        cpu_parts = _to_device(_sample_parts(op, sample), "cpu", requires_grad)
        # CPU reference
        try:
            if requires_grad:
                cpu_res = _run_grad(op, cpu_parts, "cpu", sample.output_process_fn_grad)
            else:
                from torch.testing._internal.opinfo.core import SampleInput
                cpu_res = _call(op, SampleInput(cpu_parts[0], args=cpu_parts[1], kwargs=cpu_parts[2]), False)
                cpu_res = _to_cpu(sample.output_process_fn_grad(cpu_res))
        except Exception as e:
            if verbose:
                print(f"  {key} sample {i}: CPU raised {_short_exc(e)}")
            continue
        n_cpu_ok += 1
        if requires_grad and cpu_res is None:
            continue
        n_tested += 1
        # trn run
        try:
            if requires_grad:
                trn_res = _run_grad(op, trn_parts, DEVICE, sample.output_process_fn_grad,
                                    cpu_res[1])
                if trn_res is None:
                    raise Mismatch("no differentiable output on trn")
                bad = _wrong_device_outputs(trn_res[0], DEVICE)
                if bad:
                    raise Mismatch(f"grads on {bad} instead of {DEVICE}")
                _compare(_to_cpu(trn_res[0]), _to_cpu(cpu_res[0]), path="grad", tol=tol)
            else:
                from torch.testing._internal.opinfo.core import SampleInput
                out = _call(op, SampleInput(trn_parts[0], args=trn_parts[1], kwargs=trn_parts[2]), False)
                out = sample.output_process_fn_grad(out)
                bad = _wrong_device_outputs(out, DEVICE)
                if bad:
                    raise Mismatch(f"outputs on {bad} instead of {DEVICE}")
                _compare(_to_cpu(out), cpu_res, metadata_only=op.name in UNINITIALIZED_OUTPUT,
                         tol=tol)
        except Mismatch as e:
            failure = failure or f"sample {i}: mismatch: {e}"
        except Exception as e:
            failure = failure or f"sample {i}: {DEVICE} raised " + _short_exc(e)
            if verbose:
                traceback.print_exc()
        if failure and not verbose:
            break
    dt = time.perf_counter() - t0
    if failure:
        return CaseResult(key, "fail", failure, dt)
    if n_cpu_ok == 0:
        return CaseResult(key, "cpu", "no sample works on CPU" if samples else "no samples", dt)
    if n_tested == 0:
        return CaseResult(key, "na", "no differentiable output", dt)
    return CaseResult(key, "pass", "", dt, exact=not _INEXACT[0])


def iter_cases(ops=None, dtypes=DTYPES):
    from torch.testing._internal.common_methods_invocations import op_db

    for op in op_db:
        if ops is not None and op_full_name(op) not in ops and op.name not in ops:
            continue
        fwd_dtypes = op.supported_dtypes("cpu")
        bwd_dtypes = op.supported_backward_dtypes("cpu") if op.supports_autograd else set()
        for dtype in dtypes:
            if dtype in fwd_dtypes:
                yield op, dtype, "fwd"
            if dtype in bwd_dtypes:
                yield op, dtype, "bwd"


def run_sweep(ops=None, dtypes=DTYPES, max_samples=MAX_SAMPLES, verbose=False,
              progress_file=None) -> list[CaseResult]:
    import torch_trn3  # noqa: F401  registers the device

    results = []
    old_handler = signal.signal(signal.SIGALRM, _alarm) if hasattr(signal, "SIGALRM") else None
    prog = open(progress_file, "w") if progress_file else None
    # OpInfo's TrackedInputIter looks for the running unittest test by walking
    # inspect.stack() (with source lines) on every sample: very slow under
    # pytest and useless here.
    from torch.testing._internal import common_utils
    extract_test_fn = common_utils.extract_test_fn
    common_utils.extract_test_fn = lambda: None
    torch.manual_seed = _cheap_manual_seed
    warnings_ctx = warnings.catch_warnings()
    warnings_ctx.__enter__()
    warnings.simplefilter("ignore")  # sample inputs provoke many UserWarnings
    try:
        for op, dtype, direction in iter_cases(ops, dtypes):
            if prog:
                prog.write(f"{op_full_name(op)}:{dtype_name(dtype)}:{direction}\n")
                prog.flush()
            if old_handler is not None:
                signal.alarm(CASE_TIMEOUT_S)
            try:
                r = run_case(op, dtype, direction, max_samples, verbose)
            except _Timeout as e:
                r = CaseResult(f"{op_full_name(op)}:{dtype_name(dtype)}:{direction}", "fail", str(e))
            finally:
                if old_handler is not None:
                    signal.alarm(0)
            if verbose:
                print(f"{r.status:5s} {r.seconds:6.2f}s {r.key} {r.detail}")
            results.append(r)
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGALRM, old_handler)
        if prog:
            prog.close()
        warnings_ctx.__exit__(None, None, None)
        common_utils.extract_test_fn = extract_test_fn
        torch.manual_seed = _REAL_MANUAL_SEED[0]
    return results


def summarize(results: list[CaseResult]) -> list[str]:
    lines = []
    groups = {}
    for r in results:
        _, dt, direction = r.key.rsplit(":", 2)
        groups.setdefault((dt, direction), []).append(r)
        groups.setdefault(("all", "all"), []).append(r)

    def line(label, rs):
        c = {s: sum(1 for r in rs if r.status == s) for s in ("pass", "fail", "cpu", "na", "skip")}
        denom = c["pass"] + c["fail"] + c["skip"]
        pct = 100.0 * c["pass"] / denom if denom else 100.0
        return (f"OpInfo sweep: {label:18s} {c['pass']:4d}/{denom:4d} passed ({pct:5.1f}%)"
                f"  [{c['fail']} failed, {c['skip']} skipped, {c['cpu']} not working on CPU,"
                f" {c['na']} not applicable]")

    for dt in ("float32", "bfloat16"):
        for direction in ("fwd", "bwd"):
            if (dt, direction) in groups:
                name = {"fwd": "forward", "bwd": "backward"}[direction]
                lines.append(line(f"{dt} {name}", groups[(dt, direction)]))
    everything = groups.get(("all", "all"), [])
    lines.append(line("overall", everything))
    by_op = {}
    for r in everything:
        if r.status in ("pass", "fail", "skip"):
            name = r.key.rsplit(":", 2)[0]
            by_op[name] = by_op.get(name, True) and r.status == "pass"
    n_ok = sum(by_op.values())
    lines.append(f"OpInfo sweep: {n_ok}/{len(by_op)} OpInfos working on CPU pass every case "
                 f"({100.0 * n_ok / max(1, len(by_op)):.1f}%)")
    passed = [r for r in everything if r.status == "pass"]
    exact = sum(r.exact for r in passed)
    lines.append(f"OpInfo sweep: {exact}/{len(passed)} passing cases bit-identical to CPU")
    return lines


def pass_rate(results):
    p = sum(r.status == "pass" for r in results)
    d = sum(r.status in ("pass", "fail", "skip") for r in results)
    return p / d if d else 1.0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", help="comma-separated op names (default: all)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--samples", type=int, default=MAX_SAMPLES)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--progress", help="write each case key here before running it")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    ops = set(a.ops.split(",")) if a.ops else None
    dtypes = tuple(getattr(torch, d) for d in a.dtypes.split(","))
    t0 = time.perf_counter()
    results = run_sweep(ops, dtypes, a.samples, a.verbose, a.progress)
    wall = time.perf_counter() - t0
    for r in results:
        if r.status == "fail":
            print(f"FAIL {r.key}: {r.detail}")
    for line in summarize(results):
        print(line)
    print(f"sweep wall time {wall:.1f}s")
    slow = sorted(results, key=lambda r: -r.seconds)[:15]
    print("slowest:", ", ".join(f"{r.key} {r.seconds:.1f}s" for r in slow))
    if a.json:
        with open(a.json, "w") as f:
            json.dump([dataclasses.asdict(r) for r in results], f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
