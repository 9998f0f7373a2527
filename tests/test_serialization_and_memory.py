"""torch.save / torch.load of trn tensors, host<->device copies, pinned memory,
storage resize, and the per-device HBM accounting (OOM, no leaks)."""
from __future__ import annotations

import gc
import io

import pytest
import torch
import torch_trn3  # noqa: F401

from trn_testing import GIB, requires_devices


def save_and_load(obj, **load_kwargs):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, **load_kwargs)


def current_stats(device=0):
    """The allocator's 'current' counters (allocations, bytes) for one device."""
    gc.collect()
    stats = torch.trn.memory_stats(device)
    return {k: v for k, v in stats.items() if k.endswith(".current")}


# ---------------------------------------------------------------- torch.save / torch.load
def test_save_load_tensor_round_trip(no_device_leaks):
    x = torch.randn(3, 4).to("trn")
    y = save_and_load(x)
    assert y.device == torch.device("trn", 0)
    assert torch.equal(y.cpu(), x.cpu())


@requires_devices(2)
def test_save_load_keeps_the_device_index():
    x = torch.arange(5.0, device="trn:1")
    y = save_and_load(x)
    assert y.device == torch.device("trn", 1)
    assert y.cpu().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_load_with_map_location_cpu():
    x = torch.randn(6).to("trn")
    y = save_and_load(x, map_location="cpu")
    assert y.device.type == "cpu"
    assert torch.equal(y, x.cpu())


@requires_devices(2)
def test_load_with_map_location_trn1():
    x = torch.randn(6).to("trn:0")
    y = save_and_load(x, map_location="trn:1")
    assert y.device == torch.device("trn", 1)
    assert torch.equal(y.cpu(), x.cpu())


@requires_devices(2)
def test_load_with_map_location_device_object():
    x = torch.randn(2, 2).to("trn:0")
    y = save_and_load(x, map_location=torch.device("trn", 1))
    assert y.device == torch.device("trn", 1)


def test_load_cpu_checkpoint_with_map_location_trn():
    x = torch.randn(5)
    y = save_and_load(x, map_location="trn")
    assert y.device.type == "trn"
    assert torch.equal(y.cpu(), x)


def test_save_load_with_weights_only():
    x = torch.randn(4).to("trn")
    y = save_and_load({"w": x}, weights_only=True)
    assert y["w"].device.type == "trn"
    assert torch.equal(y["w"].cpu(), x.cpu())


def test_save_load_preserves_shared_storage_between_views():
    base = torch.arange(6.0, device="trn")
    loaded_base, loaded_view = save_and_load([base, base[2:]])
    loaded_view[0] = 100.0
    assert loaded_base.cpu().tolist() == [0.0, 1.0, 100.0, 3.0, 4.0, 5.0]


def test_save_load_bfloat16_and_int_tensors():
    bf = torch.tensor([1.5, -0.25], dtype=torch.bfloat16).to("trn")
    ints = torch.tensor([1, -2, 3], dtype=torch.int64).to("trn")
    loaded_bf, loaded_ints = save_and_load((bf, ints))
    assert loaded_bf.dtype == torch.bfloat16 and loaded_bf.cpu().tolist() == [1.5, -0.25]
    assert loaded_ints.cpu().tolist() == [1, -2, 3]


def test_state_dict_save_load_into_trn_model():
    torch.manual_seed(0)
    src = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8)).to("trn")
    state = save_and_load(src.state_dict())
    assert all(v.device.type == "trn" for v in state.values())
    dst = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8)).to("trn")
    dst.load_state_dict(state)
    x = torch.randn(3, 4, device="trn")
    assert torch.equal(dst(x).detach().cpu(), src(x).detach().cpu())


def test_state_dict_map_location_cpu_loads_into_cpu_model():
    torch.manual_seed(0)
    src = torch.nn.Linear(4, 2).to("trn")
    state = save_and_load(src.state_dict(), map_location="cpu")
    assert all(v.device.type == "cpu" for v in state.values())
    dst = torch.nn.Linear(4, 2)
    dst.load_state_dict(state)
    assert torch.equal(dst.weight, src.weight.detach().cpu())


@requires_devices(2)
def test_optimizer_state_dict_map_location_trn1():
    model = torch.nn.Linear(3, 3).to("trn")
    opt = torch.optim.AdamW(model.parameters(), foreach=False)
    model(torch.ones(1, 3, device="trn")).sum().backward()
    opt.step()
    state = save_and_load(opt.state_dict(), map_location="trn:1")
    exp_avg = state["state"][0]["exp_avg"]
    assert exp_avg.device == torch.device("trn", 1)
    assert torch.equal(exp_avg.cpu(), opt.state[model.weight]["exp_avg"].cpu())


# ---------------------------------------------------------------- copies
def test_copy_from_cpu_into_trn_tensor():
    dst = torch.zeros(2, 3, device="trn")
    src = torch.arange(6.0).reshape(2, 3)
    dst.copy_(src)
    assert torch.equal(dst.cpu(), src)


def test_copy_from_trn_into_cpu_tensor():
    dst = torch.zeros(4)
    dst.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0], device="trn"))
    assert dst.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_copy_broadcasts_and_converts_dtype():
    dst = torch.zeros(2, 3, dtype=torch.float16, device="trn")
    dst.copy_(torch.tensor([1, 2, 3], dtype=torch.int32))
    assert dst.cpu().tolist() == [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]


def test_non_blocking_copies_both_ways():
    src = torch.randn(100)
    on_device = src.to("trn", non_blocking=True)
    back = on_device.to("cpu", non_blocking=True)
    torch.trn.synchronize()
    assert torch.equal(back, src)


def test_non_blocking_copy_from_pinned_memory():
    src = torch.randn(64).pin_memory()
    dst = torch.empty(64, device="trn")
    dst.copy_(src, non_blocking=True)
    torch.trn.current_stream().synchronize()
    assert torch.equal(dst.cpu(), src)


# ---------------------------------------------------------------- pinned host memory
def test_pin_memory_makes_a_pinned_copy():
    x = torch.randn(16)
    pinned = x.pin_memory()
    assert pinned.is_pinned()
    assert not x.is_pinned()
    assert torch.equal(pinned, x)


def test_empty_with_pin_memory_true_is_pinned():
    assert torch.empty(8, pin_memory=True).is_pinned()


def test_trn_tensor_is_not_pinned():
    assert not torch.ones(2, device="trn").is_pinned()


def test_dataloader_pin_memory_to_trn():
    data = torch.utils.data.TensorDataset(torch.arange(8.0))
    loader = torch.utils.data.DataLoader(data, batch_size=4, pin_memory=True)
    batches = [b for (b,) in loader]
    assert all(b.is_pinned() for b in batches)


# ---------------------------------------------------------------- storage resize (FSDP2)
def test_untyped_storage_resize_to_zero_frees_device_memory(no_device_leaks):
    param = torch.randn(1024).to("trn")
    before = torch.trn.memory_allocated()
    param.untyped_storage().resize_(0)
    assert param.untyped_storage().nbytes() == 0
    assert before - torch.trn.memory_allocated() == 4096


def test_untyped_storage_resize_back_and_refill_like_fsdp2(no_device_leaks):
    full = torch.randn(256)
    param = full.to("trn")
    storage = param.untyped_storage()
    storage.resize_(0)  # FSDP2 frees the unsharded parameter after forward
    storage.resize_(256 * 4)  # ... and re-allocates it before the next all-gather
    assert storage.nbytes() == 1024
    assert param.device.type == "trn"
    with torch.no_grad():
        param.copy_(full)
    assert torch.equal(param.cpu(), full)
    assert torch.trn.memory_allocated() >= 1024


def test_untyped_storage_resize_grow_keeps_prefix():
    x = torch.tensor([1.0, 2.0], device="trn")
    x.untyped_storage().resize_(16)
    assert x.untyped_storage().nbytes() == 16
    assert x.cpu().tolist() == [1.0, 2.0]


def test_tensor_resize_grows_and_keeps_data():
    x = torch.tensor([1.0, 2.0, 3.0], device="trn")
    x.resize_(6)
    assert x.shape == (6,)
    assert x[:3].cpu().tolist() == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------- HBM accounting and OOM
def fill_device_leaving(nbytes: int, device: int = 0) -> list:
    """Allocates (but never touches) all of a device's HBM but ``nbytes``, in
    chunks of at most 8 GiB so the host's overcommit check accepts each one."""
    chunks = []
    while True:
        free, _ = torch.trn.mem_get_info(device)
        take = min(free - nbytes, 8 * GIB)
        if take <= 0:
            return chunks
        chunks.append(torch.empty(take, dtype=torch.uint8, device=torch.device("trn", device)))


def test_allocating_past_hbm_raises_out_of_memory_error():
    capacity = torch.trn.get_device_properties(0).total_memory
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(capacity + 1, dtype=torch.uint8, device="trn")


def test_out_of_memory_message_names_device_request_and_capacity():
    capacity = torch.trn.get_device_properties(0).total_memory
    request_gib = capacity // GIB + 1
    with pytest.raises(torch.OutOfMemoryError) as info:
        torch.empty(request_gib * GIB, dtype=torch.uint8, device="trn:0")
    message = str(info.value)
    assert "trn:0" in message
    assert f"{request_gib}.00 GiB" in message  # the request
    assert f"{capacity // GIB}.00 GiB" in message  # the capacity


def test_out_of_memory_is_also_a_runtime_error():
    capacity = torch.trn.get_device_properties(0).total_memory
    with pytest.raises(RuntimeError, match="out of memory"):
        torch.empty(capacity * 2, dtype=torch.uint8, device="trn")


def test_allocations_add_up_to_out_of_memory(no_device_leaks):
    """Capacity is per device: two allocations that each fit but not together fail.
    (Device memory is reserved lazily on the host, so nothing here touches 36 GiB.)"""
    capacity = torch.trn.get_device_properties(0).total_memory
    first = torch.empty(capacity // 2 + GIB, dtype=torch.uint8, device="trn")
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(capacity // 2, dtype=torch.uint8, device="trn")
    del first
    ok = torch.empty(capacity // 2, dtype=torch.uint8, device="trn")  # fits again
    del ok


def test_out_of_memory_inside_an_op_leaves_no_leak():
    """The op's own output allocation fails: stats must return to where they were."""
    start = current_stats()
    filler = fill_device_leaving(6 * 2**20)
    x = torch.zeros(2**20, device="trn")  # 4 MiB, fits
    with pytest.raises(torch.OutOfMemoryError):
        x + 1  # another 4 MiB does not
    del filler, x
    assert current_stats() == start


@requires_devices(2)
def test_out_of_memory_on_one_device_leaves_the_other_usable(no_device_leaks):
    capacity = torch.trn.get_device_properties(0).total_memory
    with pytest.raises(torch.OutOfMemoryError, match="trn:1"):
        torch.empty(capacity + 1, dtype=torch.uint8, device="trn:1")
    assert torch.ones(4, device="trn:0").sum().item() == 4.0


def test_num_ooms_counts_failed_allocations():
    before = torch.trn.memory_stats()["num_ooms"]
    capacity = torch.trn.get_device_properties(0).total_memory
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(capacity + 1, dtype=torch.uint8, device="trn")
    assert torch.trn.memory_stats()["num_ooms"] == before + 1


def test_stats_return_to_start_after_a_training_step():
    start = current_stats()
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)).to("trn")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(8, 16, device="trn")
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3] * 2, device="trn"))
    loss.backward()
    opt.step()
    opt.zero_grad()
    assert current_stats()["allocated_bytes.all.current"] > start["allocated_bytes.all.current"]
    del model, opt, x, loss
    assert current_stats() == start


def test_stats_return_to_start_after_views_inplace_and_out_ops():
    start = current_stats()
    x = torch.randn(32, 32, device="trn")
    v = x.t()[2:10]
    v.mul_(2)
    out = torch.empty(0, device="trn")
    torch.matmul(x, x, out=out)  # out= resizes the empty output
    torch.cat([x, x], out=torch.empty(64, 32, device="trn"))
    del x, v, out
    assert current_stats() == start


def test_peak_tracks_the_high_water_mark():
    torch.trn.reset_peak_memory_stats()
    base = torch.trn.memory_allocated()
    a = torch.empty(2**20, dtype=torch.uint8, device="trn")
    b = torch.empty(2**20, dtype=torch.uint8, device="trn")
    del a, b
    assert torch.trn.max_memory_allocated() == base + 2 * 2**20
    assert torch.trn.memory_allocated() == base
