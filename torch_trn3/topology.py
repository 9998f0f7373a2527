"""``python -m torch_trn3.topology``: an nccl-tests style table of modelled
collective time and bandwidth over message sizes, for one system (and
optionally a second to compare against), without running any process.

Example: MoE all-to-all on the switched Trainium3 rack against the Trainium2
3D torus, at the same 64 chips::

    python -m torch_trn3.topology --system trn3-nl72x2 --collective all_to_all \\
        --world-size 64 --compare trn2-nl64

Sizes are bytes as nccl-tests prints them (see :mod:`torch_trn3.hw.collectives`);
GB/s means 1e9 bytes/s. ``--plot out.png`` draws busbw against size when
matplotlib is installed (it is optional; without it the table still prints
and the command says how to get the plot).
"""
from __future__ import annotations

import argparse
import re
import sys
from typing import List, Optional, Sequence

from torch_trn3.hw.collectives import ALGORITHMS, COLLECTIVES, CollectiveCost, collective_cost
from torch_trn3.hw.topology import System, get_system, placement, system_names

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
#: Element size for nccl-tests' "count" column (float32).
_ELEMENT_BYTES = 4
#: Exit status when --plot cannot be honoured.
EXIT_NO_PLOT = 3


def parse_size(text: str) -> int:
    """``"16K"`` -> 16384: binary units K, M, G as nccl-tests' -b/-e take."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 512, 16K, 1M, 1G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def format_size(nbytes: int) -> str:
    for unit in ("G", "M", "K"):
        if nbytes >= _UNITS[unit] and nbytes % _UNITS[unit] == 0:
            return f"{nbytes // _UNITS[unit]} {unit}iB"
    return f"{nbytes} B"


def sizes(min_bytes: int, max_bytes: int) -> List[int]:
    """Doubling sizes from min to max inclusive (nccl-tests' -f 2)."""
    out, size = [], max(1, min_bytes)
    while size <= max_bytes:
        out.append(size)
        size *= 2
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m torch_trn3.topology",
        description="Modelled collective time and bus bandwidth on Trainium "
                    "scale-up systems (nccl-tests style), computed, not run.")
    p.add_argument("--system", required=True, choices=system_names())
    p.add_argument("--switch-gen", type=int, choices=(1, 2, 3),
                   help="switch generation of a switched Trainium3 system (default 1)")
    p.add_argument("--collective", default="all_reduce", choices=COLLECTIVES)
    p.add_argument("--world-size", type=int,
                   help="ranks; chips unless --lnc is given (default: the whole domain)")
    p.add_argument("--lnc", type=int, choices=(1, 2, 8),
                   help="ranks are logical devices of LNC cores (8 // LNC per chip)")
    p.add_argument("--algorithm", choices=sorted({a for v in ALGORITHMS.values() for a in v}),
                   help="force one algorithm (default: the fastest, per size)")
    p.add_argument("--efa-gbps", type=int, help="per-chip scale-out rate (Trainium3: 200 or 400)")
    p.add_argument("--min-bytes", type=parse_size, default=parse_size("16K"))
    p.add_argument("--max-bytes", type=parse_size, default=parse_size("1G"))
    p.add_argument("--compare", choices=system_names(),
                   help="a second system at the same world size, e.g. trn2-nl64")
    p.add_argument("--compare-switch-gen", type=int, choices=(1, 2, 3))
    p.add_argument("--plot", metavar="PNG", help="save busbw vs size (needs matplotlib)")
    return p


def _columns(cost: CollectiveCost) -> str:
    return (f"{cost.time_s * 1e6:11.2f} {cost.algbw / 1e9:9.2f} {cost.busbw / 1e9:9.2f} "
            f"{cost.algorithm:>12} {cost.hops:4d}")


_HEAD = f"{'time(us)':>11} {'algbw':>9} {'busbw':>9} {'algorithm':>12} {'hops':>4}"


def run(args: argparse.Namespace, out=None) -> int:
    """Print the table for parsed ``args`` to ``out`` (default: stdout)."""
    out = sys.stdout if out is None else out
    system = get_system(args.system, args.switch_gen, args.efa_gbps)
    other: Optional[System] = (get_system(args.compare, args.compare_switch_gen)
                               if args.compare else None)
    world = args.world_size or system.num_chips
    pl = placement(world, args.lnc, system.cores_per_chip)
    grid = sizes(args.min_bytes, args.max_bytes)
    if not grid:
        raise SystemExit(f"--min-bytes {args.min_bytes} is larger than --max-bytes {args.max_bytes}")

    def sweep(s: System) -> List[CollectiveCost]:
        return [collective_cost(s, args.collective, n, world, lnc=args.lnc,
                                algorithm=args.algorithm) for n in grid]

    mine = sweep(system)
    theirs = sweep(other) if other else None

    print(f"# {system.describe()}", file=out)
    if other:
        print(f"# compare: {other.describe()}", file=out)
    print(f"# {args.collective}: {world} ranks on {pl.num_chips} chips, "
          f"{pl.ranks_per_chip} per chip (LNC={pl.lnc}); modelled, no processes run; "
          f"GB/s = 1e9 B/s", file=out)
    head = f"{'size(B)':>12} {'count':>11}  {_HEAD}"
    if other:
        head += f"  | {_HEAD}  | {'ratio':>6}"
        width = len(_HEAD)
        print(f"#{'':25}{system.name:^{width}}  | {other.name:^{width}}  | {'time':>6}", file=out)
    print("#" + head[1:], file=out)
    for i, n in enumerate(grid):
        line = f"{n:12d} {n // _ELEMENT_BYTES:11d}  {_columns(mine[i])}"
        if theirs:
            ratio = theirs[i].time_s / mine[i].time_s
            line += f"  | {_columns(theirs[i])}  | {ratio:6.2f}"
        print(line, file=out)
    for s, costs in ((system, mine), (other, theirs)):
        if s:
            print(f"# notes, {s.name} at {format_size(grid[-1])}: " + "; ".join(costs[-1].notes),
                  file=out)
    if other:
        picks = [i for i, n in enumerate(grid) if n in (16 << 10, 1 << 20)] + [len(grid) - 1]
        trend = " -> ".join(f"{theirs[i].time_s / mine[i].time_s:.2f} at {format_size(grid[i])}"
                            for i in sorted(set(picks)))
        print(f"# time ratio {other.name} / {system.name}: {trend}", file=out)
    if args.plot:
        return _plot(args, grid, [(system, mine)] + ([(other, theirs)] if other else []), out)
    return 0


def _plot(args, grid, series, out) -> int:
    """Save busbw against size; matplotlib is optional."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"error: --plot needs matplotlib, which is not installed; the table above is "
              f"complete. Install it with `pip install matplotlib` to write {args.plot}.",
              file=sys.stderr)
        return EXIT_NO_PLOT
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, costs in series:
        ax.plot(grid, [c.busbw / 1e9 for c in costs], marker="o", label=s.describe().split(":")[0])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("busbw (GB/s, modelled)")
    ax.set_title(f"{args.collective}, {args.world_size or series[0][0].num_chips} ranks")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot)
    plt.close(fig)
    print(f"# plot written to {args.plot}", file=out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:  # bad combinations the parser cannot see
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
