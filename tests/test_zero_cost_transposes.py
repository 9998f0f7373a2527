""""Zero-cost" transposes and tensor dereferencing (TRN3_FACTS): a transpose
made contiguous, or a row gather, that only matmuls read is done by the
Tensor Engine's operand load and costs no separate DMA / GpSimd pass. The
first other reader makes it run, at its full cost (csrc/aten/OpCharging.h).

Hand numbers: Trainium3 at LNC=2, HBM 1.225 TB/s per device, one DMA
transfer has a fixed 1 us issue cost, so a copy of B bytes takes
2B / 1.225e12 + 1 us.
"""
from __future__ import annotations

import pytest
import torch
import torch_trn3
import torch_trn3.profiler as tp

HBM_BYTES_PER_S = 4.9e12 * 2 / 8
DMA_ISSUE_S = 1e-6

pytestmark = pytest.mark.skipif(torch_trn3.machine.lnc != 2 or torch_trn3.machine.chip.name != "Trainium3",
                                reason="hand numbers are for Trainium3 at LNC=2")


def _modelled_s(fn) -> float:
    """Modelled seconds of ``fn`` on the current stream, after a barrier."""
    done = torch.trn.Event()
    done.record()
    torch.trn.current_stream().wait_event(done)
    start, end = torch.trn.Event(enable_timing=True), torch.trn.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    return start.elapsed_time(end) / 1e3


def _copy_s(nbytes: int) -> float:
    return 2 * nbytes / HBM_BYTES_PER_S + DMA_ISSUE_S


@pytest.fixture
def operands():
    x = torch.randn(256, 512, device="trn")
    w = torch.randn(256, 384, device="trn")
    # .clone() reads the held-back transpose, so it runs before the tests
    return x, w, x.t().contiguous().clone()


def test_transpose_read_only_by_a_matmul_costs_nothing(operands):
    x, w, xt = operands
    matmul_only = _modelled_s(lambda: xt @ w)
    assert _modelled_s(lambda: x.t().contiguous() @ w) == pytest.approx(matmul_only, rel=1e-9)
    # the attention output's head merge (transpose + reshape) feeding a projection
    y = torch.randn(2, 4, 64, 32, device="trn")
    p = torch.randn(128, 128, device="trn")
    merged = y.transpose(1, 2).contiguous().view(2, 64, 128)
    assert _modelled_s(lambda: y.transpose(1, 2).reshape(2, 64, 128) @ p) == pytest.approx(
        _modelled_s(lambda: merged @ p), rel=1e-9)


def test_transpose_read_by_an_elementwise_op_is_a_full_copy(operands):
    x, _, xt = operands
    add_only = _modelled_s(lambda: xt + 1)
    # 512 KiB transposed copy: 2 x 512 KiB / 1.225 TB/s + 1 us = 1.856 us
    assert _modelled_s(lambda: x.t().contiguous() + 1) == pytest.approx(
        add_only + _copy_s(256 * 512 * 4), rel=1e-6)


def test_transpose_read_by_a_matmul_and_then_an_elementwise_op_runs_once_when_needed(operands):
    x, w, xt = operands
    with tp.profile(with_modules=False) as prof:
        t = x.t().contiguous()
        t @ w
        t @ w
        t * 2
        t * 3
    copies = [r for r in prof.records if r.base == "_copy_from"]
    folded = [r for r in copies if r.folded_into]
    ran = [r for r in copies if not r.folded_into]
    assert [r.folded_into for r in folded] == ["aten::mm"]     # shown once, folded
    assert folded[0].duration_s == 0.0 and folded[0].cost(prof.device_spec) is None
    assert len(ran) == 1                                        # charged once, for the mul
    # it runs beside the matmuls (its input was ready long before), sharing HBM
    assert ran[0].duration_s == pytest.approx(_copy_s(256 * 512 * 4) + ran[0].hbm_stall_s, rel=1e-6)
    first_mul = next(r for r in prof.records if r.base == "mul")
    assert ran[0].end_s <= first_mul.start_s                    # the mul waited for it
    (stats,) = [g for g in prof.key_averages() if g.name == "aten::_copy_from"]
    assert stats.calls == 2 and stats.folded_calls == 1


def test_plain_copies_are_still_charged(operands):
    x, _, _ = operands
    # not layout changes: a contiguous clone, a strided slice made contiguous
    assert _modelled_s(lambda: x.clone()) == pytest.approx(_copy_s(256 * 512 * 4), rel=1e-6)
    assert _modelled_s(lambda: x[:, ::2].contiguous()) > DMA_ISSUE_S


def test_unread_transpose_costs_nothing(operands):
    x, _, _ = operands
    assert _modelled_s(lambda: x.t().contiguous()) == 0.0


def test_row_gather_feeding_a_matmul_is_tensor_dereferencing():
    x = torch.randn(64, 128, device="trn")
    w = torch.randn(128, 256, device="trn")
    idx = torch.tensor([5, 1, 63, 0, 7, 7, 2, 9], device="trn")
    rows = x[idx].clone()     # a materialized copy of the gathered rows
    matmul_only = _modelled_s(lambda: rows @ w)
    assert _modelled_s(lambda: x[idx] @ w) == pytest.approx(matmul_only, rel=1e-9)
    assert _modelled_s(lambda: x.index_select(0, idx) @ w) == pytest.approx(matmul_only, rel=1e-9)
    # read by an element-wise op instead: the gather runs on GpSimd first
    assert _modelled_s(lambda: x[idx] + 1) > _modelled_s(lambda: rows + 1)
    torch.testing.assert_close((x[idx] @ w).cpu(), x.cpu()[idx.cpu()] @ w.cpu())


def test_moe_token_gather_feeding_a_grouped_gemm_is_free():
    tokens = torch.randn(16, 32, device="trn")
    experts = torch.randn(2, 32, 48, device="trn")
    order = torch.tensor([3, 0, 9, 12, 1, 15, 4, 8, 2, 5, 6, 7, 10, 11, 13, 14], device="trn")
    offs = torch.tensor([6, 16], device="trn", dtype=torch.int32)
    routed = tokens[order].clone()

    def grouped(a):
        return torch._grouped_mm(a, experts, offs=offs)

    assert _modelled_s(lambda: grouped(tokens[order])) == pytest.approx(
        _modelled_s(lambda: grouped(routed)), rel=1e-9)
    torch.testing.assert_close(grouped(tokens[order]).cpu(),
                               torch._grouped_mm(tokens.cpu()[order.cpu()], experts.cpu(),
                                                 offs=offs.cpu()))
