"""Train the same MLP in BF16 (autocast) and in MXFP8, print both loss curves.

    python examples/mxfp8_training.py              # on the trn device
    python examples/mxfp8_training.py --device cpu

MXFP8 here means every nn.Linear is swapped for torch_trn3.mx.MXLinear: the
forward and both backward matmuls run on E4M3 activations/weights and E5M2
gradients with Trainium3's quantize_mx scales, while the fp32 master weights
and the optimizer are untouched. If the requested device is not available
(e.g. the trn backend is not built yet) the script says so and uses the CPU.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from torch_trn3.mx import convert_to_mx_training


def pick_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
        torch.empty(1, device=device)
        return device
    except (RuntimeError, ValueError) as err:
        print(f"device {name!r} is not available ({err.__class__.__name__}: "
              f"{str(err).splitlines()[0]}); using cpu")
        return torch.device("cpu")


def make_model(seed: int, width: int, device: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                         nn.Linear(width, 32)).to(device)


def train(model: nn.Module, device: torch.device, steps: int, bf16_autocast: bool,
          batch: int = 256, noise: float = 0.1) -> list[float]:
    """Regress a random teacher network from fresh noisy samples (no overfitting:
    the loss floors at noise^2 plus the approximation error)."""
    torch.manual_seed(123)
    teacher = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 32)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        x = torch.randn(batch, 64).to(device)
        with torch.no_grad():
            y = teacher(x) + noise * torch.randn(batch, 32).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_autocast):
            pred = model(x)
        loss = nn.functional.mse_loss(pred.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def modelled_step_ms(model: nn.Module, device: torch.device, bf16_autocast: bool) -> float:
    """Modelled Trainium3 time of one more training step (trn events)."""
    start, end = torch.trn.Event(enable_timing=True), torch.trn.Event(enable_timing=True)
    start.record()
    train(model, device, 1, bf16_autocast)
    end.record()
    return start.elapsed_time(end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="trn")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=20, help="print every N steps")
    parser.add_argument("--width", type=int, default=128)
    args = parser.parse_args()

    device = pick_device(args.device)
    bf16 = train(make_model(0, args.width, device), device, args.steps, bf16_autocast=True)
    mx_model = convert_to_mx_training(make_model(0, args.width, device))
    mxfp8 = train(mx_model, device, args.steps, bf16_autocast=False)

    print(f"device: {device}   (loss = MSE on fresh batches; floor ~0.01)")
    print(f"{'step':>6} {'bf16':>10} {'mxfp8':>10} {'mx/bf16':>8}")
    for step in range(0, args.steps, args.every):
        print(f"{step:>6} {bf16[step]:>10.5f} {mxfp8[step]:>10.5f} {mxfp8[step] / bf16[step]:>8.3f}")
    tail = min(20, args.steps)
    end_bf16, end_mx = sum(bf16[-tail:]) / tail, sum(mxfp8[-tail:]) / tail
    print(f"final (mean of last {tail}): bf16 {end_bf16:.5f}  mxfp8 {end_mx:.5f}  "
          f"difference {100 * (end_mx - end_bf16) / end_bf16:+.2f}%")

    if device.type == "cpu":
        return
    import torch_trn3
    from torch_trn3.hw.cost import matmul_cost

    bf16_ms = modelled_step_ms(make_model(0, args.width, device), device, bf16_autocast=True)
    mx_ms = modelled_step_ms(mx_model, device, bf16_autocast=False)
    print(f"modelled Trainium3 step (width {args.width}): bf16 {bf16_ms * 1e3:.1f} us, "
          f"mxfp8 {mx_ms * 1e3:.1f} us ({bf16_ms / mx_ms:.2f}x faster; layers this small are "
          f"dominated by fixed per-op costs and element-wise work)")
    dev = torch_trn3.machine.logical
    big = 4096
    speedup = matmul_cost(dev, big, big, big, dtype="bf16").time_s / matmul_cost(dev, big, big, big, dtype="mxfp8").time_s
    print(f"modelled speedup of one {big}^3 matmul on the MX array vs BF16: {speedup:.2f}x")


if __name__ == "__main__":
    main()
