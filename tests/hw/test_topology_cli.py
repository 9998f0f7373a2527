"""``python -m torch_trn3.topology``: the nccl-tests style table."""
import importlib.util
import subprocess
import sys

import pytest

from torch_trn3.topology import EXIT_NO_PLOT, main, parse_size

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def rows(text):
    """Data rows of the table: lines that do not start with '#'."""
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


def test_sizes_parse_like_nccl_tests():
    assert parse_size("16K") == 16384
    assert parse_size("1M") == 1 << 20
    assert parse_size("1G") == 1 << 30
    assert parse_size("512") == 512


def test_default_sweep_is_16k_to_1g(capsys):
    assert main(["--system", "trn3-nl32x2", "--collective", "all_reduce",
                 "--world-size", "16"]) == 0
    table = rows(capsys.readouterr().out)
    assert [int(r[0]) for r in table] == [16384 << i for i in range(17)]
    size, _, time_us, algbw, busbw = (float(x) for x in table[-1][:5])
    assert algbw == pytest.approx(size / time_us / 1e3, rel=1e-3)  # GB/s = B/us / 1e3
    assert busbw == pytest.approx(algbw * 2 * 15 / 16, rel=1e-3)


def test_compare_shows_torus_all_to_all_falling_behind(capsys):
    assert main(["--system", "trn3-nl72x2", "--collective", "all_to_all", "--world-size", "64",
                 "--compare", "trn2-nl64", "--max-bytes", "1M"]) == 0
    out = capsys.readouterr().out
    assert "4x4x4 3D torus" in out and "torus oversubscription" in out
    ratios = [float(r[-1]) for r in rows(out)]  # trn2-nl64 time / trn3-nl72x2 time
    assert len(ratios) == 7  # 16 KiB .. 1 MiB
    assert ratios == sorted(ratios) and ratios[-1] > ratios[0]


def test_lnc_ranks_and_switch_generation(capsys):
    assert main(["--system", "trn3-nl72x2", "--switch-gen", "2", "--lnc", "2",
                 "--world-size", "32", "--collective", "all_gather", "--max-bytes", "64K"]) == 0
    out = capsys.readouterr().out
    assert "Gen2" in out and "32 ranks on 8 chips, 4 per chip (LNC=2)" in out


def test_plot_without_matplotlib_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    code = main(["--system", "trn2-nl16", "--max-bytes", "32K", "--plot",
                 str(tmp_path / "out.png")])
    captured = capsys.readouterr()
    assert code == EXIT_NO_PLOT
    assert "matplotlib, which is not installed" in captured.err
    assert len(rows(captured.out)) == 2  # the table is still printed


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib not installed")
def test_plot_is_written(tmp_path):
    out = tmp_path / "out.png"
    assert main(["--system", "trn2-nl16", "--max-bytes", "32K", "--plot", str(out)]) == 0
    assert out.stat().st_size > 0


def test_bad_options_fail_with_a_message(capsys):
    with pytest.raises(SystemExit):
        main(["--system", "trn9"])
    assert main(["--system", "trn2-nl16", "--switch-gen", "2"]) == 2
    assert "no switch generation" in capsys.readouterr().err


def test_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "torch_trn3.topology", "--system", "trn3-nl72x2",
         "--collective", "all_to_all", "--world-size", "144", "--max-bytes", "32K"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(rows(done.stdout)) == 2
