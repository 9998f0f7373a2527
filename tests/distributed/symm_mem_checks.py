"""symm_mem all-to-all-v scenario (see test_dist_symm_mem.py, which holds the
pure-Python reference every check compares with)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from test_dist_symm_mem import ref_combine, ref_dispatch, ref_vdev
from workers import DEV, LOCAL_RANK, RANK, WORLD, check, close, expect_error

NE = 2       # local experts per rank
HIDDEN = 4
MAX_SPLIT = 5
FILL = -1.0


def _rank_input(src: int, nsplits: int, zero_expert: bool = False):
    """Rank ``src``'s splits and packed rows (every rank can rebuild every
    other rank's input). Row values encode (src, row) so misplacement shows."""
    g = torch.Generator().manual_seed(100 + src)
    splits = torch.randint(0, MAX_SPLIT, (nsplits,), generator=g).tolist()
    if zero_expert:  # nobody sends to expert 1 of rank 1: an empty expert
        for s in range(len(splits)):
            if s == 1 * NE + 1:
                splits[s] = 0
    rows = sum(splits)
    x = src * 1000 + torch.arange(rows * HIDDEN, dtype=torch.float32).view(rows, HIDDEN)
    return splits, x


def _all_inputs(zero_expert=False):
    data = [_rank_input(s, NE * WORLD, zero_expert) for s in range(WORLD)]
    return [d[1] for d in data], [d[0] for d in data]


def _dispatch(inputs, splits, align, extra_rows=3):
    group = dist.group.WORLD.group_name
    mine = inputs[RANK]
    inp = torch.cat([mine, torch.full((extra_rows, HIDDEN), 7.0)]).to(DEV)  # slack rows
    cap = NE * WORLD * MAX_SPLIT * WORLD + NE * align
    out = torch.full((cap, HIDDEN), FILL, device=DEV)
    in_splits = torch.tensor(splits[RANK], dtype=torch.int64, device=DEV)
    out_so = torch.full((2, NE * WORLD), -1, dtype=torch.int64, device=DEV)
    torch.ops.symm_mem.all_to_all_vdev_2d(inp, out, in_splits, out_so, group, major_align=align)
    return inp, out, in_splits, out_so


def _check_dispatch(align, zero_expert=False):
    inputs, splits = _all_inputs(zero_expert)
    inp, out, in_splits, out_so = _dispatch(inputs, splits, align)
    want_splits, want_offsets, chunks = ref_dispatch(inputs, splits, NE, align, RANK)
    assert out_so[0].cpu().tolist() == want_splits, (out_so[0].cpu().tolist(), want_splits)
    assert out_so[1].cpu().tolist() == want_offsets, (out_so[1].cpu().tolist(), want_offsets)
    written = torch.zeros(out.shape[0], dtype=torch.bool)
    for off, rows in chunks:
        close(out[off:off + rows.shape[0]], rows, rtol=0, atol=0)
        written[off:off + rows.shape[0]] = True
    return inp, out, in_splits, out_so, written, inputs, splits


def scenario_symm_mem():
    dist.init_process_group("trnccl")
    group = dist.group.WORLD.group_name

    with check("schemas_are_pytorch_2_13s"):
        s = str(torch.ops.symm_mem.all_to_all_vdev_2d.default._schema)
        assert "int? major_align=None" in s and "Tensor(a!) out_splits_offsets" in s, s
        s = str(torch.ops.symm_mem.all_to_all_vdev_2d_offset.default._schema)
        assert "Tensor in_splits_offsets" in s, s

    with check("dispatch_2d_align1_matches_reference"):
        _check_dispatch(align=1)

    with check("dispatch_2d_align8_matches_reference"):
        _check_dispatch(align=8, zero_expert=True)

    with check("dispatch_2d_leaves_padding_and_inputs_untouched"):
        inp, out, in_splits, out_so, written, inputs, splits = _check_dispatch(align=8)
        assert (out.cpu()[~written] == FILL).all()
        assert in_splits.cpu().tolist() == splits[RANK]
        close(inp[:inputs[RANK].shape[0]], inputs[RANK], rtol=0, atol=0)

    with check("combine_2d_offset_matches_reference"):
        # expert-major inputs at arbitrary (spaced) offsets: chunk c at row 6 * c
        nsp = NE * WORLD
        all_splits, all_offs, all_inp = [], [], []
        for src in range(WORLD):
            g = torch.Generator().manual_seed(500 + src)
            sp = torch.randint(0, MAX_SPLIT + 1, (nsp,), generator=g).tolist()
            all_splits.append(sp)
            all_offs.append([6 * c for c in range(nsp)])
            all_inp.append(src * 1000 + torch.arange(6 * nsp * HIDDEN, dtype=torch.float32)
                           .view(6 * nsp, HIDDEN))
        in_so = torch.tensor([all_splits[RANK], all_offs[RANK]], dtype=torch.int64, device=DEV)
        out = torch.full((6 * nsp * WORLD, HIDDEN), FILL, device=DEV)
        out_so = torch.full((2, nsp), -1, dtype=torch.int64, device=DEV)
        torch.ops.symm_mem.all_to_all_vdev_2d_offset(all_inp[RANK].to(DEV), out, in_so, out_so,
                                                     group)
        ws, wo, rows = ref_combine(all_inp, all_splits, all_offs, NE, RANK)
        assert out_so[0].cpu().tolist() == ws and out_so[1].cpu().tolist() == wo, (out_so, ws, wo)
        close(out[:rows.shape[0]], rows, rtol=0, atol=0)
        assert (out.cpu()[rows.shape[0]:] == FILL).all()
        assert in_so.cpu().tolist() == [all_splits[RANK], all_offs[RANK]]

    with check("dispatch_then_combine_moe_round_trip"):
        # dispatch, expert (global id g) scales its rows by g + 1, combine back:
        # each of my rows comes back scaled by its expert's factor
        inputs, splits = _all_inputs()
        inp, out, _, out_so = _dispatch(inputs, splits, align=4, extra_rows=0)
        so = out_so.cpu()
        for e in range(NE):
            lo = so[1][e * WORLD].item()
            hi = so[1][e * WORLD + WORLD - 1].item() + so[0][e * WORLD + WORLD - 1].item()
            out[lo:hi] *= RANK * NE + e + 1
        back = torch.full_like(inp, FILL)
        back_so = torch.empty_like(out_so)
        torch.ops.symm_mem.all_to_all_vdev_2d_offset(out, back, out_so, back_so, group)
        assert back_so[0].cpu().tolist() == splits[RANK], (back_so, splits[RANK])
        factors = torch.repeat_interleave(
            torch.tensor([float(c + 1) for c in range(NE * WORLD)]),
            torch.tensor(splits[RANK])).unsqueeze(1)
        close(back, inputs[RANK] * factors, rtol=0, atol=0)

    with check("all_to_all_vdev_matches_reference"):
        data = []
        for src in range(WORLD):
            g = torch.Generator().manual_seed(900 + src)
            sp = torch.randint(0, MAX_SPLIT, (WORLD,), generator=g).tolist()
            data.append((sp, src * 100 + torch.arange(sum(sp) * 2.0).view(-1, 2)))
        ins, sps = [d[1] for d in data], [d[0] for d in data]
        out = torch.full((MAX_SPLIT * WORLD, 2), FILL, device=DEV)
        out_so = torch.empty((2, WORLD), dtype=torch.int64, device=DEV)
        torch.ops.symm_mem.all_to_all_vdev(ins[RANK].to(DEV), out,
                                           torch.tensor(sps[RANK], device=DEV), out_so, group)
        ws, wo, rows = ref_vdev(ins, sps, RANK)
        assert out_so.cpu().tolist() == [ws, wo], (out_so, ws, wo)
        close(out[:rows.shape[0]], rows, rtol=0, atol=0)

    with check("symm_mem_empty_and_rendezvous_on_trn"):
        import torch.distributed._symmetric_memory as symm_mem
        buf = symm_mem.empty(8, HIDDEN, dtype=torch.bfloat16, device=DEV)
        assert buf.device == DEV and buf.shape == (8, HIDDEN) and buf.dtype == torch.bfloat16
        handle = symm_mem.rendezvous(buf, dist.group.WORLD)
        assert (handle.rank, handle.world_size) == (RANK, WORLD)
        handle.barrier()
        expect_error(lambda: handle.get_remote_tensor(0, (1,), torch.float32),
                     "no peer-mapped symmetric memory")
        # CPU tensors keep PyTorch's own path (which has no CPU allocator)
        expect_error(lambda: symm_mem.empty(4, device="cpu"), "")

    with check("charged_as_all_to_all_on_collective_engine"):
        from torch_trn3 import _C
        from torch_trn3.distributed import collective_stats
        collective_stats(reset=True)
        before = _C._engine_busy(LOCAL_RANK)[5]
        inputs, splits = _all_inputs()
        _dispatch(inputs, splits, align=1)
        stats = collective_stats()
        # splits exchange + data exchange
        assert stats["all_to_all"].calls == 2, stats
        assert _C._engine_busy(LOCAL_RANK)[5] - before >= stats["all_to_all"].seconds * 0.999

    with check("error_out_too_small"):
        inputs, splits = _all_inputs()
        inp = inputs[RANK].to(DEV)
        expect_error(lambda: torch.ops.symm_mem.all_to_all_vdev_2d(
            inp, torch.empty(1, HIDDEN, device=DEV),
            torch.tensor(splits[RANK], device=DEV),
            torch.empty(2, NE * WORLD, dtype=torch.int64, device=DEV), group),
            "out has 1 rows")

    with check("error_splits_not_multiple_of_group"):
        expect_error(lambda: torch.ops.symm_mem.all_to_all_vdev_2d(
            torch.ones(4, HIDDEN, device=DEV), torch.empty(40, HIDDEN, device=DEV),
            torch.ones(WORLD + 1, dtype=torch.int64, device=DEV),
            torch.empty(2, WORLD + 1, dtype=torch.int64, device=DEV), group),
            "not a multiple of the group size")
    dist.barrier()
