"""torchtitan options trn cannot honour fail at start-up, through
torchtitan's own entry point, with an error naming the option and why
(:mod:`torch_trn3.titan_checks`) -- never a hang or a crash mid-run."""
import pytest

pytest.importorskip("torchtitan", reason="torchtitan is not installed (pip install -e '.[titan]' or '.[test]')")

import titan_run  # noqa: E402

SMALL = ["--training.steps", "2", "--training.seq_len", "64", "--training.local_batch_size", "1"]

CASES = {
    # unchecked: trains into the first forward and dies in aten::_flash_attention_forward
    "varlen": (["--module", "llama3", "--config", "llama3_debugmodel_varlen_attn"],
               ["attention backend 'varlen'", "varlen_attn", "CUDA", "'flex'"]),
    "flex_flash": (["--module", "qwen3", "--config", "qwen3_debugmodel_flex_flash"],
                   ["attention backend 'flex_flash'", "BACKEND=FLASH", "CUDA", "'flex'"]),
    "float8": (["--module", "llama3", "--config", "llama3_debugmodel_float8"],
               ["float8 model converter", "recipe 'rowwise'", "CUDA SM89+", "emulate=True"]),
}

_pending = {}


def _start_all(workdir):
    if not _pending:  # all three start together; each is a short start-up
        for name, (args, _) in CASES.items():
            _pending[name] = titan_run.start(workdir, f"check_{name}", [*args, *SMALL], timeout=240)
    return _pending


@pytest.mark.parametrize("name", list(CASES))
def test_unsupported_option_fails_at_startup(titan_workdir, name):
    run = _start_all(titan_workdir)[name].wait()
    assert run.returncode not in (0, None), run.log[-3000:]
    assert "killed after" not in run.log
    assert "torch_trn3.titan_checks.TitanOptionError: torchtitan " in run.log, run.log[-3000:]
    message = run.log[run.log.index("TitanOptionError: torchtitan "):].splitlines()[0]
    assert "cannot run on trn" in message, message
    for part in CASES[name][1]:
        assert part in message, (part, message)
    assert "Training starts" not in run.log and "step:" not in run.log, run.log[-3000:]
