"""Rank programs for the distributed tests (started by ``launch.run_ranks``).

``python workers.py SCENARIO OUT_DIR`` runs one scenario in a torchrun-style
environment and writes ``OUT_DIR/rank{RANK}.json``: check name ->
{"ok": bool, "detail": str}. Each scenario runs many checks in one launch,
since starting a rank (``import torch``) is the expensive part.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback

import torch
import torch.distributed as dist

import torch_trn3  # noqa: F401

RANK = int(os.environ["RANK"])
WORLD = int(os.environ["WORLD_SIZE"])
LOCAL_RANK = int(os.environ["LOCAL_RANK"])
DEV = torch.device("trn", LOCAL_RANK)

_results: dict = {}
_out_dir = ""


def _save():
    with open(os.path.join(_out_dir, f"rank{RANK}.json.tmp"), "w") as f:
        json.dump(_results, f, indent=1)
    os.replace(os.path.join(_out_dir, f"rank{RANK}.json.tmp"),
               os.path.join(_out_dir, f"rank{RANK}.json"))


@contextlib.contextmanager
def check(name: str):
    """Records whether the block ran without raising (asserts inside)."""
    try:
        yield
        _results[name] = {"ok": True, "detail": ""}
    except BaseException as exc:  # noqa: BLE001 - recorded for the test
        _results[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}\n"
                          + traceback.format_exc()[-2000:]}
    _save()


def expect_error(fn, *fragments):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        msg = str(exc)
        for frag in fragments:
            assert frag in msg, f"error {msg!r} lacks {frag!r}"
        return msg
    raise AssertionError("no error raised")


def op_name(op) -> str:
    return str(op).rsplit(".", 1)[-1].lower()


def close(a, b, **kw):
    torch.testing.assert_close(a.cpu() if isinstance(a, torch.Tensor) else a,
                               b.cpu() if isinstance(b, torch.Tensor) else b, **kw)


# ======================================================================
# collectives: every collective on trn tensors, against hand values
# ======================================================================
def scenario_collectives():
    n, r = WORLD, RANK
    with check("init_trnccl"):
        dist.init_process_group("trnccl")
        assert dist.get_backend() == "trnccl", dist.get_backend()
        assert torch.trn.current_device() == LOCAL_RANK
    _collective_checks(n, r)
    _functional_checks(n, r)
    _bad_input_checks(n, r)
    _cost_checks(n, r)
    dist.barrier()
    dist.destroy_process_group()
    _init_variants(n, r)


def _collective_checks(n, r):
    base = torch.arange(4, dtype=torch.float32)
    total = sum(range(1, n + 1))

    for op, expected in [
        (dist.ReduceOp.SUM, base * total),
        (dist.ReduceOp.PRODUCT, base ** n * float(torch.arange(1, n + 1).prod())),
        (dist.ReduceOp.MIN, base * 1),
        (dist.ReduceOp.MAX, base * n),
        (dist.ReduceOp.AVG, base * total / n),
    ]:
        with check(f"all_reduce_{op_name(op)}"):
            x = (base * (r + 1)).to(DEV)
            dist.all_reduce(x, op=op)
            assert x.device == DEV
            close(x, expected)

    for op, fn in [(dist.ReduceOp.BAND, lambda a, b: a & b), (dist.ReduceOp.BOR, lambda a, b: a | b),
                   (dist.ReduceOp.BXOR, lambda a, b: a ^ b)]:
        with check(f"all_reduce_{op_name(op)}"):
            vals = [torch.tensor([1 << k, 3, 7 + k], dtype=torch.int64) for k in range(n)]
            x = vals[r].to(DEV)
            dist.all_reduce(x, op=op)
            want = vals[0]
            for v in vals[1:]:
                want = fn(want, v)
            close(x, want)

    with check("all_reduce_bf16_async_wait"):
        x = torch.full((1000,), float(r + 1), dtype=torch.bfloat16, device=DEV)
        work = dist.all_reduce(x, async_op=True)
        work.wait()
        assert work.is_completed()
        close(x, torch.full((1000,), float(total), dtype=torch.bfloat16))

    with check("all_reduce_avg_async_int"):
        x = torch.tensor([2 * (r + 1)], device=DEV)
        dist.all_reduce(x, op=dist.ReduceOp.AVG, async_op=True).wait()
        close(x, torch.tensor([(2 * total) // n]))

    with check("broadcast"):
        x = torch.full((3, 2), float(r), device=DEV)
        dist.broadcast(x, src=1)
        close(x, torch.full((3, 2), 1.0))

    with check("reduce_sum_and_avg"):
        x = torch.full((5,), float(r + 1), device=DEV)
        dist.reduce(x, dst=0, op=dist.ReduceOp.SUM)
        if r == 0:
            close(x, torch.full((5,), float(total)))
        y = torch.full((5,), float(r + 1), device=DEV)
        dist.reduce(y, dst=n - 1, op=dist.ReduceOp.AVG)
        if r == n - 1:
            close(y, torch.full((5,), total / n))

    with check("all_gather_list"):
        outs = [torch.empty(2, device=DEV) for _ in range(n)]
        dist.all_gather(outs, torch.tensor([r, 10.0 * r], device=DEV))
        for i, o in enumerate(outs):
            assert o.device == DEV
            close(o, torch.tensor([i, 10.0 * i]))

    with check("all_gather_into_tensor"):
        out = torch.empty(n * 3, device=DEV)
        dist.all_gather_into_tensor(out, torch.full((3,), float(r), device=DEV))
        close(out, torch.arange(n).float().repeat_interleave(3))

    with check("reduce_scatter_list"):
        inputs = [torch.full((2,), float((r + 1) * (i + 1)), device=DEV) for i in range(n)]
        out = torch.empty(2, device=DEV)
        dist.reduce_scatter(out, inputs)
        close(out, torch.full((2,), float(total * (r + 1))))

    for op, div in [(dist.ReduceOp.SUM, 1), (dist.ReduceOp.AVG, n)]:
        with check(f"reduce_scatter_tensor_{op_name(op)}"):
            inp = torch.arange(n * 2, dtype=torch.float32, device=DEV) * (r + 1)
            out = torch.empty(2, device=DEV)
            dist.reduce_scatter_tensor(out, inp, op=op)
            close(out, torch.arange(2 * r, 2 * r + 2).float() * total / div)

    # PREMUL_SUM (NCCL's; FSDP2 uses it for gradient divide factors): every
    # rank's input times the factor, then summed.
    with check("all_reduce_premul_sum"):
        x = (base * (r + 1)).to(DEV)
        dist.all_reduce(x, op=dist._make_nccl_premul_sum(0.5))
        close(x, base * total * 0.5)

    with check("all_reduce_premul_sum_tensor_factor"):
        x = (base * (r + 1)).to(DEV)
        dist.all_reduce(x, op=dist._make_nccl_premul_sum(torch.tensor([0.25], device=DEV)))
        close(x, base * total * 0.25)

    with check("reduce_scatter_tensor_premul_sum"):
        inp = torch.arange(n * 2, dtype=torch.float32, device=DEV) * (r + 1)
        kept = inp.cpu()
        out = torch.empty(2, device=DEV)
        dist.reduce_scatter_tensor(out, inp, op=dist._make_nccl_premul_sum(1.0 / n))
        close(out, torch.arange(2 * r, 2 * r + 2).float() * total / n)
        close(inp, kept)  # the input is not scaled in place

    with check("reduce_scatter_list_premul_sum"):
        inputs = [torch.full((2,), float((r + 1) * (i + 1)), device=DEV) for i in range(n)]
        out = torch.empty(2, device=DEV)
        dist.reduce_scatter(out, inputs, op=dist._make_nccl_premul_sum(2.0))
        close(out, torch.full((2,), float(total * (r + 1) * 2)))
        close(inputs[0], torch.full((2,), float(r + 1)))

    with check("reduce_premul_sum"):
        x = (base * (r + 1)).to(DEV)
        dist.reduce(x, dst=0, op=dist._make_nccl_premul_sum(3.0))
        close(x, base * total * 3.0 if r == 0 else base * (r + 1))

    with check("all_to_all_single_even"):
        inp = torch.arange(n * 2, dtype=torch.float32, device=DEV) + 100 * r
        out = torch.empty(n * 2, device=DEV)
        dist.all_to_all_single(out, inp)
        want = torch.cat([torch.arange(2 * r, 2 * r + 2).float() + 100 * j for j in range(n)])
        close(out, want)

    # uneven: rank i sends (i + j + 1) rows of 3 to rank j, each row valued 100*i + j
    def a2a_rows(i, j):
        return i + j + 1

    with check("all_to_all_single_uneven"):
        in_splits = [a2a_rows(r, j) for j in range(n)]
        out_splits = [a2a_rows(i, r) for i in range(n)]
        inp = torch.cat([torch.full((a2a_rows(r, j), 3), 100.0 * r + j) for j in range(n)]).to(DEV)
        out = torch.empty(sum(out_splits), 3, device=DEV)
        dist.all_to_all_single(out, inp, out_splits, in_splits)
        want = torch.cat([torch.full((a2a_rows(i, r), 3), 100.0 * i + r) for i in range(n)])
        close(out, want)

    with check("all_to_all_list_uneven"):
        inputs = [torch.full((a2a_rows(r, j),), 100.0 * r + j, device=DEV) for j in range(n)]
        outputs = [torch.empty(a2a_rows(i, r), device=DEV) for i in range(n)]
        dist.all_to_all(outputs, inputs)
        for i, o in enumerate(outputs):
            close(o, torch.full((a2a_rows(i, r),), 100.0 * i + r))

    with check("gather"):
        gl = [torch.empty(2, device=DEV) for _ in range(n)] if r == 0 else None
        dist.gather(torch.tensor([r, -r], dtype=torch.float32, device=DEV), gl, dst=0)
        if r == 0:
            for i, g in enumerate(gl):
                close(g, torch.tensor([i, -i], dtype=torch.float32))

    with check("scatter"):
        sl = [torch.full((2,), 7.0 * i, device=DEV) for i in range(n)] if r == 1 else None
        out = torch.empty(2, device=DEV)
        dist.scatter(out, sl, src=1)
        close(out, torch.full((2,), 7.0 * r))

    with check("send_recv_ring"):
        nxt, prv = (r + 1) % n, (r - 1) % n
        got = torch.empty(4, device=DEV)
        if r % 2 == 0:
            dist.send(torch.full((4,), float(r), device=DEV), nxt)
            dist.recv(got, prv)
        else:
            dist.recv(got, prv)
            dist.send(torch.full((4,), float(r), device=DEV), nxt)
        close(got, torch.full((4,), float(prv)))

    with check("isend_irecv"):
        nxt, prv = (r + 1) % n, (r - 1) % n
        got = torch.empty(3, device=DEV)
        works = [dist.isend(torch.full((3,), 1.5 * r, device=DEV), nxt), dist.irecv(got, prv)]
        for w in works:
            w.wait()
        close(got, torch.full((3,), 1.5 * prv))

    with check("batch_isend_irecv"):
        nxt, prv = (r + 1) % n, (r - 1) % n
        got = torch.empty(5, device=DEV)
        ops = [dist.P2POp(dist.isend, torch.full((5,), 2.0 * r, device=DEV), nxt),
               dist.P2POp(dist.irecv, got, prv)]
        for w in dist.batch_isend_irecv(ops):
            w.wait()
        close(got, torch.full((5,), 2.0 * prv))

    with check("barrier"):
        dist.barrier()
        dist.barrier(device_ids=[LOCAL_RANK])

    with check("all_reduce_coalesced_manager"):
        from torch.distributed.distributed_c10d import _coalescing_manager
        xs = [torch.full((k + 1,), float(r + 1), device=DEV) for k in range(3)]
        with _coalescing_manager(async_ops=True) as cm:
            for x in xs:
                dist.all_reduce(x)
        cm.wait()
        for k, x in enumerate(xs):
            close(x, torch.full((k + 1,), float(total)))

    with check("all_gather_into_tensor_coalesced"):
        from torch.distributed.distributed_c10d import _coalescing_manager
        ins = [torch.full((k + 1,), float(r), device=DEV) for k in range(2)]
        outs = [torch.empty(n * (k + 1), device=DEV) for k in range(2)]
        with _coalescing_manager(async_ops=True) as cm:
            for o, i in zip(outs, ins):
                dist.all_gather_into_tensor(o, i)
        cm.wait()
        for k, o in enumerate(outs):
            close(o, torch.arange(n).float().repeat_interleave(k + 1))

    with check("reduce_scatter_tensor_coalesced_avg"):
        from torch.distributed.distributed_c10d import _coalescing_manager
        ins = [torch.arange(n * (k + 1), dtype=torch.float32, device=DEV) * (r + 1) for k in range(2)]
        outs = [torch.empty(k + 1, device=DEV) for k in range(2)]
        with _coalescing_manager(async_ops=True) as cm:
            for o, i in zip(outs, ins):
                dist.reduce_scatter_tensor(o, i, op=dist.ReduceOp.AVG)
        cm.wait()
        for k, o in enumerate(outs):
            close(o, torch.arange(r * (k + 1), (r + 1) * (k + 1)).float() * total / n)

    with check("all_gather_coalesced_legacy"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ins = [torch.full((2,), float(r), device=DEV), torch.full((3,), -float(r), device=DEV)]
            outs = [[torch.empty(2, device=DEV), torch.empty(3, device=DEV)] for _ in range(n)]
            dist.all_gather_coalesced(outs, ins)
        for i, (a, b) in enumerate(outs):
            close(a, torch.full((2,), float(i)))
            close(b, torch.full((3,), -float(i)))

    with check("all_reduce_coalesced_legacy"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xs = [torch.full((2,), float(r + 1), device=DEV), torch.ones(3, device=DEV)]
            dist.all_reduce_coalesced(xs)
        close(xs[0], torch.full((2,), float(total)))
        close(xs[1], torch.full((3,), float(n)))

    with check("object_collectives"):
        objs = [None] * n
        dist.all_gather_object(objs, {"rank": r})
        assert objs == [{"rank": i} for i in range(n)], objs
        lst = [f"hello{r}"]
        dist.broadcast_object_list(lst, src=0)
        assert lst == ["hello0"]

    with check("cpu_tensors_same_group"):
        x = torch.full((2,), float(r + 1))
        dist.all_reduce(x)
        close(x, torch.full((2,), float(total)))

    with check("subgroup_all_reduce"):
        evens = [i for i in range(n) if i % 2 == 0]
        odds = [i for i in range(n) if i % 2 == 1]
        g_even = dist.new_group(evens)
        g_odd = dist.new_group(odds)
        mine = g_even if r % 2 == 0 else g_odd
        members = evens if r % 2 == 0 else odds
        x = torch.full((2,), float(r), device=DEV)
        dist.all_reduce(x, group=mine)
        close(x, torch.full((2,), float(sum(members))))


def _functional_checks(n, r):
    import torch.distributed._functional_collectives as fc
    total = sum(range(1, n + 1))
    group = dist.group.WORLD

    with check("functional_all_reduce"):
        x = torch.full((4,), float(r + 1), device=DEV)
        y = fc.all_reduce(x, "sum", group)
        y = fc.wait_tensor(y) if not isinstance(y, torch.Tensor) else y
        assert y.device == DEV
        close(y * 1, torch.full((4,), float(total)))
        close(x, torch.full((4,), float(r + 1)))  # functional: input untouched

    with check("functional_all_reduce_avg"):
        y = fc.all_reduce(torch.full((4,), float(r + 1), device=DEV), "avg", group)
        close(y * 1, torch.full((4,), total / n))

    with check("functional_all_gather_tensor"):
        y = fc.all_gather_tensor(torch.full((2, 3), float(r), device=DEV), 0, group)
        close(y * 1, torch.arange(n).float().repeat_interleave(2)[:, None].expand(2 * n, 3))

    with check("functional_reduce_scatter_tensor"):
        inp = torch.arange(2 * n, dtype=torch.float32, device=DEV) * (r + 1)
        y = fc.reduce_scatter_tensor(inp, "sum", 0, group)
        close(y * 1, torch.arange(2 * r, 2 * r + 2).float() * total)

    with check("functional_all_to_all_single_uneven"):
        in_splits = [r + j + 1 for j in range(n)]
        out_splits = [i + r + 1 for i in range(n)]
        inp = torch.cat([torch.full((r + j + 1, 2), 100.0 * r + j) for j in range(n)]).to(DEV)
        y = fc.all_to_all_single(inp, out_splits, in_splits, group)
        want = torch.cat([torch.full((i + r + 1, 2), 100.0 * i + r) for i in range(n)])
        close(y * 1, want)

    with check("functional_broadcast"):
        y = fc.broadcast(torch.full((3,), float(r), device=DEV), 1, group)
        close(y * 1, torch.full((3,), 1.0))

    with check("functional_autograd_all_to_all_single"):
        in_splits = [r + j + 1 for j in range(n)]
        out_splits = [i + r + 1 for i in range(n)]
        x = torch.randn(sum(in_splits), 2, generator=torch.Generator().manual_seed(r)).to(DEV)
        x.requires_grad_(True)
        y = fc.all_to_all_single_autograd(x, out_splits, in_splits, group)
        weight = torch.arange(y.numel(), dtype=torch.float32).view_as(y).to(DEV)
        (fc.wait_tensor(y) * weight).sum().backward()
        # d/dx: the weights each of my rows met on its destination, sent back
        back = fc.all_to_all_single(weight, in_splits, out_splits, group)
        close(x.grad, fc.wait_tensor(back))

    with check("functional_autograd_all_gather_reduce_scatter"):
        x = torch.full((2,), float(r + 1), device=DEV, requires_grad=True)
        y = fc.all_gather_tensor_autograd(x, 0, group)
        (fc.wait_tensor(y) * torch.arange(2 * n, dtype=torch.float32, device=DEV)).sum().backward()
        # grad of all_gather is reduce_scatter(sum) of the output grad: n copies
        close(x.grad, torch.arange(2 * r, 2 * r + 2).float() * n)
        z = torch.arange(2 * n, dtype=torch.float32, device=DEV).requires_grad_(True)
        s = fc.reduce_scatter_tensor_autograd(z * (r + 1), "sum", 0, group)
        fc.wait_tensor(s).sum().backward()
        close(z.grad, torch.full((2 * n,), float(r + 1)))



def _bad_input_checks(n, r):
    with check("error_split_sizes_do_not_sum"):
        inp = torch.zeros(5, device=DEV)
        out = torch.zeros(5, device=DEV)
        expect_error(lambda: dist.all_to_all_single(out, inp, [1] * n, [1] * n), "split sizes",
                     "rows")

    with check("error_split_sizes_wrong_count"):
        inp = torch.zeros(n + 1, device=DEV)
        expect_error(lambda: dist.all_to_all_single(torch.zeros(n + 1, device=DEV), inp,
                                                    [1] * (n + 1), [1] * (n + 1)),
                     "one per rank")

    with check("error_tensor_on_wrong_device"):
        outs = [torch.empty(2, device=DEV) for _ in range(n - 1)] + [torch.empty(2)]
        expect_error(lambda: dist.all_gather(outs, torch.zeros(2, device=DEV)), "cpu",
                     "same trn device")

    with check("error_all_gather_into_tensor_bad_size"):
        expect_error(lambda: dist.all_gather_into_tensor(torch.empty(n * 3 + 1, device=DEV),
                                                         torch.zeros(3, device=DEV)),
                     "all_gather_into_tensor")

    with check("group_usable_after_errors"):
        x = torch.ones(2, device=DEV)
        dist.all_reduce(x)
        close(x, torch.full((2,), float(n)))


def _hand_all_reduce_s(n: int, nbytes: int) -> float:
    """All-reduce of ``n`` ranks that share one chip, priced by hand from the
    system's specs (not through the cost model the backend calls).

    Every byte rides the chip's on-package path, which the ``n`` ranks share;
    Trainium3's collective cores move it SBUF to SBUF, so HBM is not touched
    in between. Two algorithms, the cheaper wins (as a tuner picks):

    - ring, striped over both directions: 2(n-1) steps; per step every rank
      sends nbytes/n, so n * nbytes/n = nbytes cross the shared path; each
      step pays one alpha (step + path latency + issue of 2n messages);
    - one-shot (reduce-scatter then all-gather, each one step to all n-1
      peers): per step n(n-1) chunks of nbytes/n = (n-1) x nbytes.

    Both move 2(n-1) x nbytes through the path; one-shot pays 2 alphas.
    """
    from math import ceil

    from torch_trn3.distributed import cost

    system = cost.current_system()
    bw, lat = system.on_package.bytes_per_s, system.latency
    cores = system.collective_cores.count

    def alpha(messages: int) -> float:
        return lat.step_s + system.on_package.latency_s + ceil(messages / cores) * lat.message_issue_s

    ring = lat.launch_s + 2 * (n - 1) * (alpha(2 * n) + nbytes / bw)
    one_shot = lat.launch_s + 2 * (alpha(n * (n - 1)) + (n - 1) * nbytes / bw)
    return min(ring, one_shot)


def _cost_checks(n, r):
    from torch_trn3.distributed import collective_stats, cost
    from torch_trn3 import _C
    from torch_trn3.hw.cost import Engine

    lane = Engine.COLLECTIVE.value
    # the hand price assumes every rank on one chip: LNC=2 puts 4 on chip 0
    assert cost.ranks_per_chip() >= n, (cost.ranks_per_chip(), n)
    hand_s = _hand_all_reduce_s(n, 4 << 20)

    with check("cost_charged_to_collective_engine"):
        before = _C._engine_busy(LOCAL_RANK)[lane]
        collective_stats(reset=True)
        x = torch.ones(1 << 20, device=DEV)  # 4 MiB
        dist.all_reduce(x)
        after = _C._engine_busy(LOCAL_RANK)[lane]
        want = cost.price("all_reduce", 4 << 20, tuple(range(n)))
        assert abs((after - before) - hand_s) < 1e-9 * hand_s, (after - before, hand_s)
        stats = collective_stats()
        assert stats["all_reduce"].calls == 1 and stats["all_reduce"].bytes == 4 << 20
        assert abs(stats["all_reduce"].seconds - hand_s) < 1e-9 * hand_s
        # LNC=2: 4 ranks per chip, so up to 4 ranks talk over the on-package path
        assert any("on-package" in note for note in want.notes), want.notes

    with check("cost_premul_sum_is_one_all_reduce"):
        x = torch.ones(1 << 20, device=DEV)
        before = _C._engine_busy(LOCAL_RANK)[lane]
        collective_stats(reset=True)
        dist.all_reduce(x, op=dist._make_nccl_premul_sum(0.5))
        stats = collective_stats()
        assert set(stats) == {"all_reduce"} and stats["all_reduce"].calls == 1, stats
        assert abs((_C._engine_busy(LOCAL_RANK)[lane] - before) - hand_s) < 1e-9 * hand_s

    with check("cost_event_timing"):
        start = torch.trn.Event(enable_timing=True)
        end = torch.trn.Event(enable_timing=True)
        x = torch.ones(1 << 20, device=DEV)
        start.record()
        dist.all_reduce(x)
        end.record()
        ms = start.elapsed_time(end)
        assert ms >= hand_s * 1e3 * 0.999, (ms, hand_s * 1e3)


def _init_variants(n, r):
    store_dir = _out_dir

    with check("init_device_id_default_backend"):
        dist.init_process_group(device_id=torch.device("trn", LOCAL_RANK),
                                init_method=f"file://{store_dir}/store_device_id",
                                rank=r, world_size=n)
        assert "trnccl" in str(dist.get_backend()), dist.get_backend()
        x = torch.full((2,), float(r), device=DEV)
        dist.all_reduce(x)
        close(x, torch.full((2,), float(sum(range(n)))))
        dist.barrier()
        dist.destroy_process_group()

    with check("init_cpu_gloo_trn_trnccl"):
        dist.init_process_group("cpu:gloo,trn:trnccl",
                                init_method=f"file://{store_dir}/store_mixed", rank=r, world_size=n)
        x = torch.full((2,), float(r), device=DEV)
        dist.all_reduce(x)
        close(x, torch.full((2,), float(sum(range(n)))))
        y = torch.full((2,), float(r))
        dist.all_reduce(y)
        close(y, torch.full((2,), float(sum(range(n)))))

    with check("init_device_mesh_dtensor"):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Shard, distribute_tensor
        mesh = init_device_mesh("trn", (n,))
        full = torch.arange(4 * n * 3, dtype=torch.float32).view(4 * n, 3)
        d = distribute_tensor(full.to(DEV), mesh, [Shard(0)])
        assert d.to_local().device == DEV
        close(d.to_local(), full[4 * r:4 * (r + 1)])
        close(d.full_tensor(), full)
        close((d * 2).sum().full_tensor(), full.sum() * 2)

    with check("init_device_mesh_2d"):
        if n % 2 == 0 and n >= 4:
            from torch.distributed.device_mesh import init_device_mesh
            mesh2 = init_device_mesh("trn", (2, n // 2), mesh_dim_names=("dp", "tp"))
            tp = mesh2["tp"].get_group()
            x = torch.full((2,), float(r), device=DEV)
            dist.all_reduce(x, group=tp)
            members = dist.get_process_group_ranks(tp)
            close(x, torch.full((2,), float(sum(members))))
    dist.barrier()
    dist.destroy_process_group()


# ======================================================================
# fault: a rank dies; the others get an error within the timeout
# ======================================================================
def scenario_fault():
    import datetime
    timeout_s = float(os.environ.get("FAULT_TIMEOUT", "6"))
    dist.init_process_group("trnccl", timeout=datetime.timedelta(seconds=timeout_s))
    x = torch.ones(4, device=DEV)
    dist.all_reduce(x)  # everyone is up
    if RANK == WORLD - 1:
        if os.environ.get("FAULT_MODE") == "hang":  # alive, but stops taking part
            time.sleep(timeout_s * 4)
        os._exit(17)  # dies without a goodbye
    t0 = time.monotonic()
    with check("survivor_errors"):
        try:
            for _ in range(3):
                dist.all_reduce(x)
                time.sleep(0.2)
        except Exception as exc:  # noqa: BLE001
            elapsed = time.monotonic() - t0
            _results["elapsed"] = {"ok": True, "detail": f"{elapsed:.2f}"}
            _results["error"] = {"ok": True, "detail": str(exc)[:500]}
        else:
            raise AssertionError("all_reduce with a dead peer did not fail")
    os._exit(0)


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items()
             if name.startswith("scenario_")}


def main():
    global _out_dir
    scenario, _out_dir = sys.argv[1], sys.argv[2]
    if scenario not in SCENARIOS:  # training / overlap scenarios live in their modules
        import overlap
        import training
        for module in (training, overlap):
            SCENARIOS.update({k[len("scenario_"):]: v for k, v in vars(module).items()
                              if k.startswith("scenario_")})
    _save()
    SCENARIOS[scenario]()
    _save()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.modules["workers"] = sys.modules["__main__"]
    main()
