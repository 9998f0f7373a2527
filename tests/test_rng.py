"""trn random numbers: seeding, the 16-byte (seed, offset) state, CPU parity."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
import torch_trn3  # noqa: F401

from trn_testing import requires_devices


def make_state(seed: int, offset: int) -> torch.Tensor:
    """The state layout DTensor's RNG tracker builds: uint64 seed, uint64 offset, as bytes."""
    return torch.tensor([seed, offset], dtype=torch.int64).view(torch.uint8)


def state_offset(state: torch.Tensor) -> int:
    return int(state.view(torch.int64)[1])


def state_seed(state: torch.Tensor) -> int:
    return int(state.view(torch.int64)[0])


# ---------------------------------------------------------------- seeding
def test_torch_manual_seed_seeds_trn_generators():
    torch.manual_seed(1234)
    assert torch.trn.initial_seed() == 1234
    assert state_seed(torch.trn.get_rng_state()) == 1234


@requires_devices(2)
def test_torch_manual_seed_seeds_every_trn_device():
    torch.manual_seed(99)
    for index in range(torch.trn.device_count()):
        assert state_seed(torch.trn.get_rng_state(index)) == 99
        assert state_offset(torch.trn.get_rng_state(index)) == 0


def test_rand_on_trn_equals_rand_on_cpu_after_same_seed():
    torch.manual_seed(2024)
    expected = torch.rand(1000)
    torch.manual_seed(2024)
    actual = torch.rand(1000, device="trn")
    assert torch.equal(actual.cpu(), expected)


def test_randn_on_trn_equals_randn_on_cpu_after_same_seed():
    torch.manual_seed(3)
    expected = torch.randn(257, 3)
    torch.manual_seed(3)
    actual = torch.randn(257, 3, device="trn")
    assert torch.equal(actual.cpu(), expected)


def test_dropout_on_trn_draws_the_cpu_stream():
    x = torch.randn(64, 33)
    torch.manual_seed(11)
    expected = F.dropout(x, p=0.3, training=True)
    torch.manual_seed(11)
    actual = F.dropout(x.to("trn"), p=0.3, training=True)
    assert torch.equal(actual.cpu(), expected)


def test_generator_argument_draws_from_that_generator():
    g_trn = torch.Generator("trn").manual_seed(77)
    g_cpu = torch.Generator().manual_seed(77)
    actual = torch.randint(0, 100, (50,), device="trn", generator=g_trn)
    expected = torch.randint(0, 100, (50,), generator=g_cpu)
    assert torch.equal(actual.cpu(), expected)


def test_generator_argument_does_not_touch_default_generator():
    torch.manual_seed(5)
    before = torch.trn.get_rng_state()
    g = torch.Generator("trn").manual_seed(6)
    torch.rand(10, device="trn", generator=g)
    assert torch.equal(torch.trn.get_rng_state(), before)


def test_cpu_generator_for_trn_op_is_refused():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(RuntimeError, match="generator"):
        torch.rand(3, device="trn", generator=g)


# ---------------------------------------------------------------- the 16-byte state
def test_rng_state_round_trip_repeats_draws():
    torch.trn.manual_seed(8)
    torch.rand(17, device="trn")  # move away from the start of the stream
    state = torch.trn.get_rng_state()
    first = torch.rand(100, device="trn").cpu()
    torch.trn.set_rng_state(state)
    second = torch.rand(100, device="trn").cpu()
    assert torch.equal(first, second)


def test_generator_get_state_set_state_round_trip():
    g = torch.Generator("trn").manual_seed(21)
    state = g.get_state()
    assert state.numel() == 16
    first = torch.randn(40, device="trn", generator=g).cpu()
    g.set_state(state)
    second = torch.randn(40, device="trn", generator=g).cpu()
    assert torch.equal(first, second)


def test_offset_advances_by_words_drawn():
    """float32 uniform draws one 32-bit word per element (as the CPU kernel does)."""
    torch.trn.manual_seed(0)
    assert state_offset(torch.trn.get_rng_state()) == 0
    torch.rand(5, device="trn")
    assert state_offset(torch.trn.get_rng_state()) == 5
    torch.rand(1000, device="trn")  # crosses the 624-word mt19937 block boundary
    assert state_offset(torch.trn.get_rng_state()) == 1005


def test_seed_stays_in_state_after_draws():
    torch.trn.manual_seed(424242)
    torch.rand(700, device="trn")
    assert state_seed(torch.trn.get_rng_state()) == 424242


@pytest.mark.parametrize("offset", [0, 1, 623, 624, 625, 1248, 2000])
def test_offset_jump_reproduces_stream_position(offset):
    """DTensor sets (seed, offset) directly; that must land where drawing
    ``offset`` words would have."""
    seed = 31337
    torch.trn.manual_seed(seed)
    if offset:
        torch.rand(offset, device="trn")
    expected = torch.rand(50, device="trn").cpu()

    torch.trn.manual_seed(0)  # somewhere else entirely
    torch.rand(3, device="trn")
    torch.trn.set_rng_state(make_state(seed, offset))
    assert state_offset(torch.trn.get_rng_state()) == offset
    actual = torch.rand(50, device="trn").cpu()
    assert torch.equal(actual, expected)


def test_offset_after_jump_keeps_counting():
    torch.trn.set_rng_state(make_state(5, 600))
    torch.rand(30, device="trn")  # crosses word 624
    assert state_offset(torch.trn.get_rng_state()) == 630


def test_set_rng_state_rejects_wrong_size():
    with pytest.raises(RuntimeError, match="16"):
        torch.trn.set_rng_state(torch.zeros(8, dtype=torch.uint8))


@requires_devices(2)
def test_rng_state_is_per_device():
    torch.manual_seed(1)
    torch.rand(10, device="trn:1")
    assert state_offset(torch.trn.get_rng_state(0)) == 0
    assert state_offset(torch.trn.get_rng_state(1)) == 10
    assert state_offset(torch.trn.get_rng_state("trn:1")) == 10


def test_fork_rng_restores_trn_state():
    torch.manual_seed(10)
    with torch.random.fork_rng(device_type="trn"):
        torch.rand(100, device="trn")
    after_fork = torch.rand(5, device="trn").cpu()
    torch.manual_seed(10)
    assert torch.equal(torch.rand(5, device="trn").cpu(), after_fork)


# ---------------------------------------------------------------- activation checkpointing
class DropoutBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 16)
        self.drop = torch.nn.Dropout(0.25)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpoint_with_dropout_gives_same_grads(use_reentrant):
    torch.manual_seed(0)
    model = DropoutBlock().to("trn")
    x = torch.randn(8, 16, device="trn", requires_grad=True)

    torch.manual_seed(100)
    model(x).square().sum().backward()
    plain = [p.grad.cpu().clone() for p in model.parameters()] + [x.grad.cpu().clone()]

    model.zero_grad()
    x.grad = None
    torch.manual_seed(100)
    out = torch.utils.checkpoint.checkpoint(model, x, use_reentrant=use_reentrant)
    out.square().sum().backward()
    ckpt = [p.grad.cpu() for p in model.parameters()] + [x.grad.cpu()]

    for a, b in zip(plain, ckpt):
        assert torch.equal(a, b)
