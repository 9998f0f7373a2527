"""``torch_trn3.nki.custom_op``: an NKI kernel as a torch operator.

The op's fake implementation gives compile the shapes (checked with
PyTorch's own ``torch.library.opcheck``), dynamo traces it as one node with
no graph break under ``backend="trn3"`` and the default inductor, a
registered NKI backward kernel trains it (gradients against autograd of the
torch reference), and bad definitions or calls raise ``NkiOpError`` naming
the problem.
"""
from __future__ import annotations

import os
import sys

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch._dynamo.utils import counters

import torch_trn3.nki as nki
import torch_trn3.nki.isa as nisa
import torch_trn3.nki.language as nl
from torch_trn3.nki import NkiError
from torch_trn3.nki.custom_op import NkiOpError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "nki"))
from rmsnorm import rmsnorm, rmsnorm_bwd, rmsnorm_fwd, rmsnorm_reference  # noqa: E402

DEV = "trn"


@nki.jit
def axpy_kernel(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * x + y for one (<=128, D) tile."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    tx = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    ty = nl.ndarray(y.shape, dtype=y.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tx, src=x)
    nisa.dma_copy(dst=ty, src=y)
    r = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=r, data=tx, op0=nl.multiply, operand0=alpha, op1=nl.add,
                              operand1=ty)
    nisa.dma_copy(dst=out, src=r)
    return out


axpy = nki.custom_op("nki_test::axpy", axpy_kernel, fake=lambda x, y, alpha: torch.empty_like(x))


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype).to(DEV)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


# ---- the op in eager -----------------------------------------------------------------

def test_op_is_registered_and_runs_the_kernel_on_trn():
    assert torch.ops.nki_test.axpy.default is axpy._opoverload
    x, y = randn(64, 32, seed=1), randn(64, 32, seed=2)
    out = axpy(x, y, 0.5)
    assert out.device.type == DEV and out.shape == (64, 32)
    torch.testing.assert_close(out.cpu(), 0.5 * x.cpu() + y.cpu())


def test_schema_is_inferred_from_the_kernel_annotations():
    assert str(axpy._opoverload._schema) == \
        "nki_test::axpy(Tensor x, Tensor y, float alpha) -> Tensor"


def test_decorator_form_wraps_a_function_launching_several_kernels():
    @nki.custom_op("nki_test::axpy_twice", fake=lambda x, y: torch.empty_like(x))
    def axpy_twice(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return axpy_kernel(axpy_kernel(x, y, 1.0), y, 1.0)

    x, y = randn(16, 8, seed=20), randn(16, 8, seed=21)
    torch.testing.assert_close(axpy_twice(x, y).cpu(), x.cpu() + 2 * y.cpu())
    assert torch.ops.nki_test.axpy_twice.default is axpy_twice._opoverload


# ---- fake implementation -------------------------------------------------------------

def test_fake_impl_gives_output_shapes_without_running_the_kernel():
    from torch._subclasses.fake_tensor import FakeTensorMode

    x = randn(300, 64, dtype=torch.bfloat16)
    w = randn(64, seed=3)
    with FakeTensorMode() as mode:
        fx, fw = mode.from_tensor(x), mode.from_tensor(w)
        y, rstd = rmsnorm_fwd(fx, fw, 1e-6)
        dx, dw = rmsnorm_bwd(y, fx, fw, rstd)
    assert (tuple(y.shape), y.dtype, y.device.type) == ((300, 64), torch.bfloat16, DEV)
    assert (tuple(rstd.shape), rstd.dtype) == ((300, 1), torch.float32)
    assert (tuple(dx.shape), dx.dtype, tuple(dw.shape), dw.dtype) == \
        ((300, 64), torch.bfloat16, (64,), torch.float32)


def test_opcheck_passes_for_forward_and_backward_ops():
    """PyTorch's harness: schema, fake vs real, AOT dispatch (its autograd-registration
    check only knows CPU/CUDA/XPU, so it is left out for the trn inputs that need grad)."""
    x, w = randn(130, 48, seed=4), randn(48, seed=5)
    torch.library.opcheck(axpy, (x[:64].contiguous(), x[64:128].contiguous(), 2.0))
    torch.library.opcheck(rmsnorm_fwd, (x.requires_grad_(), w.requires_grad_(), 1e-6),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


# ---- torch.compile: one node, no graph break -----------------------------------------

@pytest.mark.parametrize("backend", ["trn3", "inductor"])
def test_compiles_without_graph_break_and_matches_eager(backend):
    def f(x, y):
        return torch.relu(axpy(x * 2, y, 3.0)) + 1

    x, y = randn(32, 64, seed=6), randn(32, 64, seed=7)
    cnt = CompileCounterWithBackend(backend)
    compiled = torch.compile(f, backend=cnt, fullgraph=True)
    out = compiled(x, y)
    assert cnt.frame_count == 1 and not counters["graph_break"]
    ops = [n.target for g in cnt.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert torch.ops.nki_test.axpy.default in ops          # one opaque node
    assert out.device.type == DEV
    torch.testing.assert_close(out.cpu(), f(x, y).cpu())


@pytest.mark.parametrize("backend", ["trn3", "inductor"])
def test_compiled_training_step_calls_the_backward_kernel(backend):
    x = randn(256, 96, seed=8).requires_grad_()
    w = (1 + 0.1 * randn(96, seed=9)).requires_grad_()

    def loss_fn(x_, w_):
        return (rmsnorm(x_, w_) * torch.arange(96, device=DEV)).square().mean()

    compiled = torch.compile(loss_fn, backend=backend, fullgraph=True)
    gx, gw = torch.autograd.grad(compiled(x, w), (x, w))
    assert not counters["graph_break"]
    ex, ew = torch.autograd.grad(loss_fn(x, w), (x, w))
    torch.testing.assert_close(gx.cpu(), ex.cpu(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gw.cpu(), ew.cpu(), rtol=1e-5, atol=1e-7)


# ---- backward kernel vs autograd of the torch reference ------------------------------

@pytest.mark.parametrize("rows,dim", [(64, 32), (300, 640)])   # partial tiles; 2 PSUM chunks of dw
def test_backward_kernel_matches_autograd_of_reference(rows, dim):
    x = randn(rows, dim, seed=10)
    w = 1 + 0.2 * randn(dim, seed=11)
    dy = randn(rows, dim, seed=12)
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    dx, dw = torch.autograd.grad(rmsnorm(xg, wg), (xg, wg), dy)
    xc, wc = x.cpu().requires_grad_(), w.cpu().requires_grad_()
    rdx, rdw = torch.autograd.grad(rmsnorm_reference(xc, wc), (xc, wc), dy.cpu())
    torch.testing.assert_close(dx.cpu(), rdx, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dw.cpu(), rdw, rtol=1e-4, atol=1e-4)


def test_backward_is_charged_as_nki_instructions():
    """The backward runs the NKI kernel: its report names it and has Tensor Engine work (dw)."""
    x = randn(128, 64, seed=13).requires_grad_()
    w = randn(64, seed=14).requires_grad_()
    rmsnorm(x, w).sum().backward()
    report = nki.last_kernel_report()
    assert report.kernel == "rmsnorm_bwd_kernel"
    assert report.instructions["tensor"] > 0 and report.elapsed_s > 0


def test_training_without_backward_raises_torchs_error():
    x = randn(8, 16, seed=15).requires_grad_()
    with pytest.raises(RuntimeError, match="autograd"):
        axpy(x, x.detach(), 1.0).sum().backward()


# ---- bad input -----------------------------------------------------------------------

def test_cpu_tensor_is_rejected_naming_the_argument():
    with pytest.raises(NkiOpError, match=r"nki_test::axpy: argument 'y' is on cpu.*\.to\('trn'\)"):
        axpy(randn(8, 16), torch.randn(8, 16), 1.0)


@pytest.mark.skipif(torch.trn.device_count() < 2, reason="needs 2 trn devices")
def test_tensors_on_two_devices_are_rejected():
    with pytest.raises(NkiOpError, match="'y' is on trn:1 but an earlier argument is on trn:0"):
        axpy(randn(8, 16), randn(8, 16).to("trn:1"), 1.0)


def test_fake_that_disagrees_with_the_kernel_fails_in_eager():
    wrong = nki.custom_op("nki_test::axpy_wrong_fake", axpy_kernel,
                          fake=lambda x, y, alpha: x.new_empty(x.shape[0]))
    with pytest.raises(NkiOpError, match=r"output 0 of the kernel is \(8, 16\).*fake implementation "
                                          r"says \(8,\)"):
        wrong(randn(8, 16), randn(8, 16), 1.0)


def test_kernel_errors_surface_through_the_op_with_the_kernel_line():
    with pytest.raises(NkiError, match=r"test_custom_op.py:\d+"):
        axpy(randn(200, 16), randn(200, 16), 1.0)     # 200 partitions > 128


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "no_namespace"}, "must look like 'namespace::name'"),
    ({"fake": "not callable"}, "fake= must be a function"),
    ({"setup_context": lambda ctx, i, o: None}, "setup_context= given without backward="),
])
def test_bad_definitions_are_rejected(kwargs, match):
    args = {"name": "nki_test::bad_def", "fake": lambda x, y, alpha: torch.empty_like(x), **kwargs}
    name = args.pop("name")
    with pytest.raises(NkiOpError, match=match):
        nki.custom_op(name, axpy_kernel, **args)


def test_unannotated_kernel_needs_a_schema():
    @nki.jit
    def plain(x, y):
        return x

    with pytest.raises(NkiOpError, match=r"no type annotation for 'x', 'y'.*schema="):
        nki.custom_op("nki_test::plain", plain, fake=lambda x, y: torch.empty_like(x))


def test_fake_is_required():
    with pytest.raises(TypeError, match="fake"):
        nki.custom_op("nki_test::no_fake", axpy_kernel)
