"""Quickstart: PyTorch code running on an emulated Trainium3 logical device.

Nothing but `import torch` is needed: the backend autoloads. Run:
    python examples/quickstart.py
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    print(f"torch {torch.__version__}; trn available: {torch.trn.is_available()}, "
          f"{torch.trn.device_count()} logical devices")
    props = torch.trn.get_device_properties(0)
    print(f"trn:0 = {props.name}: {props.cores} NeuronCores, {props.total_memory / 2**30:.0f} GiB HBM")

    # Same values as on the CPU: every op runs the CPU kernel on device memory.
    x = torch.randn(4, 4)
    y = (x.to("trn") @ x.to("trn")).relu().sum()
    print(f"(x @ x).relu().sum(): trn {y.item():.6f}, cpu {(x @ x).relu().sum().item():.6f}")

    # Train a small model on the device, bf16 autocast on.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.LayerNorm(256), nn.Linear(256, 10)).to("trn")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = torch.randn(512, 64, device="trn")
    labels = (data[:, :10].argmax(dim=1))
    # Events read the device's simulated clock: modelled Trainium3 time.
    start, end = torch.trn.Event(enable_timing=True), torch.trn.Event(enable_timing=True)
    start.record()
    for step in range(101):
        idx = torch.randint(0, 512, (64,), device="trn")
        with torch.autocast("trn", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(data[idx]).float(), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    end.record()
    print(f"101 training steps: {start.elapsed_time(end):.3f} ms of modelled Trainium3 time "
          f"({start.elapsed_time(end) / 101 * 1e3:.1f} us per step)")

    allocated = torch.trn.memory_allocated(0)
    peak = torch.trn.max_memory_allocated(0)
    free, total = torch.trn.mem_get_info(0)
    print(f"trn:0 memory: {allocated / 2**20:.2f} MiB allocated, peak {peak / 2**20:.2f} MiB, "
          f"{free / 2**30:.2f} of {total / 2**30:.0f} GiB free")


if __name__ == "__main__":
    main()
