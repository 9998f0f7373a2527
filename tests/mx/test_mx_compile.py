"""MX matmuls under torch.compile on trn: each is one custom op
(``torch.ops.torch_trn3.mx_mm`` and friends), so dynamo traces no graph break
into it, the compiled graph computes what eager computes, and the chip model
charges it as one Tensor Engine matmul with eager's FLOPs and time.
``torch._scaled_mm`` with MX and row-wise FP8 operands runs through the trn
kernel under inductor too (inductor calls its ``out=`` overload)."""

import pytest
import torch
from torch import nn

import torch_trn3.profiler as tp
from torch_trn3.mx import (MXLinear, MXTensor, convert_to_mx_training, mx_grouped_mm, mx_mm,
                           prune_structured, sparse_mm, to_mx, w4a8_linear)

E4M3, FP4 = torch.float8_e4m3fn, torch.float4_e2m1fn_x2
BACKENDS = ["inductor", "aot_eager"]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Every test compiles from scratch, on one intra-op thread (tiny shapes:
    on a shared 2-core host thread synchronisation would dominate)."""
    torch._dynamo.reset()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch._dynamo.reset()


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to("trn")


def mx_operands(m=16, n=32, k=64):
    return to_mx(randn(m, k, seed=1), E4M3), to_mx(randn(n, k, seed=2), E4M3)


def compile_fn(fn, backend):
    """fullgraph=True: any graph break is an error."""
    return torch.compile(fn, backend=backend, fullgraph=True)


def tensor_ops(fn, name):
    """(result, [(name, flops, modelled seconds)] of the Tensor Engine records
    whose name mentions ``name``) of one profiled call."""
    with tp.profile() as prof:
        out = fn()
    return out, [(r.name, r.flops, r.duration_s) for r in prof.records
                 if r.engine.name == "TENSOR" and name in r.name]


def mx_mm_of_raw(a_elements, a_scales, b_elements, b_scales, bias):
    """mx_mm on MX operands built from plain tensors inside the compiled region."""
    return mx_mm(MXTensor(a_elements, a_scales), MXTensor(b_elements, b_scales), bias=bias,
                 out_dtype=torch.bfloat16)


# ---- mx_mm ------------------------------------------------------------------------

def test_mx_mm_traces_as_one_graph_without_breaks():
    a, b = mx_operands()
    explained = torch._dynamo.explain(mx_mm_of_raw)(a.elements, a.scales, b.elements, b.scales,
                                                    randn(32))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    ops = [n.target for g in explained.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert torch.ops.torch_trn3.mx_mm.default in ops        # one opaque node, not its pieces


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_mx_mm_equals_eager_bitwise(backend):
    a, b = mx_operands()
    args = (a.elements, a.scales, b.elements, b.scales, randn(32, seed=3))
    compiled = compile_fn(mx_mm_of_raw, backend)(*args)
    assert compiled.device.type == "trn" and compiled.dtype == torch.bfloat16
    assert torch.equal(compiled.cpu(), mx_mm_of_raw(*args).cpu())


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_mx_mm_is_charged_as_one_tensor_engine_op(backend):
    x, w = randn(16, 64, seed=1), randn(32, 64, seed=2)

    def quantize_and_multiply(x, w):
        return mx_mm(to_mx(x, E4M3), to_mx(w, E4M3)).relu()

    compiled = compile_fn(quantize_and_multiply, backend)
    compiled(x, w)                                          # compile outside the profile
    _, eager_ops = tensor_ops(lambda: quantize_and_multiply(x, w), "mx_mm")
    _, compiled_ops = tensor_ops(lambda: compiled(x, w), "mx_mm")
    assert [op[0] for op in compiled_ops] == ["torch_trn3::mx_mm"]
    assert compiled_ops == eager_ops                         # same FLOPs, same modelled time
    assert compiled_ops[0][1] == 2 * 16 * 32 * 64


def test_compiled_bias_gradient_equals_eager():
    a, b = mx_operands()

    def loss(bias):
        return mx_mm(a, b, bias=bias, out_dtype=torch.bfloat16).float().square().sum()

    eager_bias, compiled_bias = randn(32).requires_grad_(), randn(32).requires_grad_()
    loss(eager_bias).backward()
    compile_fn(loss, "aot_eager")(compiled_bias).backward()
    assert torch.equal(compiled_bias.grad.cpu(), eager_bias.grad.cpu())


# ---- the other MX matmuls ----------------------------------------------------------

def grouped_k_split(a_elements, a_scales, b_elements, b_scales, offs):
    return mx_grouped_mm(MXTensor(a_elements, a_scales), MXTensor(b_elements, b_scales), offs)


def w4a8_case():
    w4, bias = to_mx(randn(24, 128, seed=4), FP4), randn(24, seed=5)
    return (lambda x: w4a8_linear(x, w4, bias)), (randn(6, 128),)


def grouped_case():   # the weight-gradient form: the groups split K
    a, b = to_mx(randn(4, 128, seed=1), E4M3), to_mx(randn(6, 128, seed=2), E4M3)
    offs = torch.tensor([32, 128], dtype=torch.int32, device="trn")
    return grouped_k_split, (a.elements, a.scales, b.elements, b.scales, offs)


def sparse_case():
    def fn(x, w):
        return sparse_mm(to_mx(x, E4M3), prune_structured(w, 4, 8).to_mx(E4M3))
    return fn, (randn(8, 128, seed=1), randn(20, 128, seed=2))


@pytest.mark.parametrize("case, build", [("w4a8_linear", w4a8_case), ("mx_grouped_mm", grouped_case),
                                         ("sparse_mm", sparse_case)])
def test_other_mx_matmuls_compile_to_one_charged_op(case, build):
    fn, args = build()
    compiled = compile_fn(fn, "inductor")
    compiled(*args)
    eager_out, eager_ops = tensor_ops(lambda: fn(*args), case)
    compiled_out, compiled_ops = tensor_ops(lambda: compiled(*args), case)
    assert torch.equal(compiled_out.cpu(), eager_out.cpu())
    assert [op[0] for op in compiled_ops] == [f"torch_trn3::{case}"]
    # Durations are end - start on the device clock: equal up to the rounding
    # of the two absolute times.
    assert [op[:2] for op in compiled_ops] == [op[:2] for op in eager_ops]
    assert [op[2] for op in compiled_ops] == pytest.approx([op[2] for op in eager_ops], rel=1e-9)


def test_data_dependent_offset_check_still_raises_when_compiled():
    a, b = to_mx(randn(4, 128, seed=1), E4M3), to_mx(randn(6, 128, seed=2), E4M3)
    offs = torch.tensor([48, 128], dtype=torch.int32, device="trn")   # 48: not a block multiple
    compiled = compile_fn(grouped_k_split, "aot_eager")
    with pytest.raises(ValueError, match="multiples of the block size"):
        compiled(a.elements, a.scales, b.elements, b.scales, offs)


# ---- MXLinear training ------------------------------------------------------------------

def mx_model(activation=nn.GELU, seed=0):
    torch.manual_seed(seed)
    return convert_to_mx_training(nn.Sequential(nn.Linear(64, 64), activation(),
                                                nn.Linear(64, 32))).to("trn")


def mse(model, x, y):
    return nn.functional.mse_loss(model(x), y)


def test_mx_training_step_traces_without_graph_breaks():
    explained = torch._dynamo.explain(mse)(mx_model(), randn(32, 64), randn(32, 32))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


def weighted_sum(model, x, y):
    """A loss whose gradient (``y``) is exact, so with ReLU between the layers
    every MX matmul sees the very operands it sees in eager."""
    return (model(x) * y).sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_mx_training_step_equals_eager(backend):
    eager_model, compiled_model = mx_model(nn.ReLU), mx_model(nn.ReLU)
    x, y = randn(32, 64, seed=1), randn(32, 32, seed=2)
    eager_loss = weighted_sum(eager_model, x, y)
    eager_loss.backward()
    compiled_loss = compile_fn(weighted_sum, backend)(compiled_model, x, y)
    compiled_loss.backward()
    assert isinstance(compiled_model[0], MXLinear)
    same_kernels = backend == "aot_eager"
    # inductor sums the loss and the bias gradients in its own C++ kernels
    # (another order); the MX matmuls behind the weight gradients are eager's.
    for name, eager, compiled in [("loss", eager_loss, compiled_loss),
                                  *[(n, p.grad, q.grad) for (n, p), q in
                                    zip(eager_model.named_parameters(), compiled_model.parameters())]]:
        if same_kernels or name.endswith("weight"):
            assert torch.equal(compiled.cpu(), eager.cpu()), name
        else:
            torch.testing.assert_close(compiled.cpu(), eager.cpu(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_mx_training_step_charges_each_mx_matmul_once(backend):
    eager_model, compiled_model = mx_model(), mx_model()
    x, y = randn(32, 64, seed=1), randn(32, 32, seed=2)
    compiled = compile_fn(mse, backend)
    compiled(compiled_model, x, y).backward()
    _, eager_ops = tensor_ops(lambda: mse(eager_model, x, y).backward(), "mx_mm")
    _, compiled_ops = tensor_ops(lambda: compiled(compiled_model, x, y).backward(), "mx_mm")
    # 2 layers x (y = x W^T, dx = dy W, dW = dy^T x), less dx of the input
    assert len(eager_ops) == 5
    assert sorted(compiled_ops) == sorted(eager_ops)


def test_fullgraph_mx_training_loss_decreases():
    model = mx_model()
    teacher = nn.Linear(64, 32).to("trn")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    step = compile_fn(mse, "inductor")
    losses = []
    for i in range(8):
        x = randn(64, 64, seed=10 + i)
        with torch.no_grad():
            y = teacher(x)
        loss = step(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ---- torch._scaled_mm under inductor --------------------------------------------------------

def scaled_mm(a, b_t, scale_a, scale_b):
    return torch._scaled_mm(a, b_t.t(), scale_a, scale_b, out_dtype=torch.bfloat16)


def mx_scaled_operands():
    a, b = mx_operands(m=32, n=48, k=128)
    return a.elements, b.elements, a.scales, b.scales       # E8M0 block scales


def rowwise_fp8_operands():
    a, b = randn(32, 128, seed=1).to(E4M3), randn(48, 128, seed=2).to(E4M3)
    return a, b, randn(32, 1, seed=3).abs() + 0.5, randn(1, 48, seed=4).abs() + 0.5


@pytest.mark.parametrize("operands", [mx_scaled_operands, rowwise_fp8_operands],
                         ids=["mx", "rowwise_fp8"])
def test_compiled_scaled_mm_runs_the_trn_kernel_once(operands):
    args = operands()
    compiled = compile_fn(scaled_mm, "inductor")
    compiled(*args)
    eager_out, eager_ops = tensor_ops(lambda: scaled_mm(*args), "_scaled_mm")
    compiled_out, compiled_ops = tensor_ops(lambda: compiled(*args), "_scaled_mm")
    assert torch.equal(compiled_out.cpu(), eager_out.cpu())
    # inductor calls the out= overload into its own buffer: one op, eager's cost
    assert [op[0] for op in compiled_ops] == ["aten::_scaled_mm.out"]
    assert [op[1:] for op in compiled_ops] == [op[1:] for op in eager_ops]


def test_scaled_mm_out_overload_takes_mx_operands_on_trn():
    a, b, scale_a, scale_b = mx_scaled_operands()
    out = torch.empty(32, 48, dtype=torch.bfloat16, device="trn")
    result = torch._scaled_mm(a, b.t(), scale_a, scale_b, out_dtype=torch.bfloat16, out=out)
    assert result is out
    assert torch.equal(out.cpu(), scaled_mm(a, b, scale_a, scale_b).cpu())
