"""Hugging Face ``transformers`` models on trn: training losses and greedy
``generate()`` equal CPU's.

Small models built from their configs (nothing downloaded): a dense Llama and
Qwen3, a Qwen3-MoE, whose experts take transformers' grouped-GEMM path on
any non-CPU device (``torch.histc`` on int32 expert ids, ``_grouped_mm``),
and a GPT-OSS (MoE, attention sinks, sliding-window layers).
"""
from __future__ import annotations

import copy

import pytest
import torch

import torch_trn3

transformers = pytest.importorskip("transformers", minversion="5")

DEV = torch_trn3.DEVICE_NAME  # "trn", or "neuron" with TORCH_TRN3_DEVICE=neuron

VOCAB = 96
STEPS = 3


def _small(config_cls, **extra):
    return config_cls(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      max_position_embeddings=64, tie_word_embeddings=False, **extra)


def llama():
    return transformers.LlamaForCausalLM(_small(transformers.LlamaConfig))


def qwen3():
    return transformers.Qwen3ForCausalLM(_small(transformers.Qwen3Config))


def qwen3_moe():
    config = _small(transformers.Qwen3MoeConfig, num_experts=4, num_experts_per_tok=2,
                    moe_intermediate_size=16, decoder_sparse_step=1, output_router_logits=True,
                    router_aux_loss_coef=0.01)
    return transformers.Qwen3MoeForCausalLM(config)


def gpt_oss():
    """MoE with attention sinks and alternating sliding-window layers."""
    config = _small(transformers.GptOssConfig, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
                    output_router_logits=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    return transformers.GptOssForCausalLM(config)


MODELS = {"llama": llama, "qwen3": qwen3, "qwen3_moe": qwen3_moe, "gpt_oss": gpt_oss}


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request):
    torch.manual_seed(0)
    model = MODELS[request.param]().float()
    ids = torch.randint(0, VOCAB, (STEPS, 2, 16), generator=torch.Generator().manual_seed(1))
    return request.param, model, ids


def _train(model, ids, device, dtype=torch.float32):
    model = copy.deepcopy(model).to(device=device, dtype=dtype).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=False)
    losses = []
    batch = ids[0].to(device)  # one batch, several steps: the loss must fall
    for _ in range(STEPS):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_losses_equal_cpu(built, dtype):
    name, model, ids = built
    cpu, trn = _train(model, ids, "cpu", dtype), _train(model, ids, DEV, dtype)
    assert cpu[-1] < cpu[0]  # it trains
    # trn runs the CPU kernels (the MoE's _grouped_mm too): bit-equal.
    assert trn == cpu, name


def test_greedy_generate_equals_cpu(built):
    _, model, ids = built
    prompt = ids[0, :, :8]
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        cpu = model.generate(prompt, **kwargs)
        trn = model.to(DEV).generate(prompt.to(DEV), **kwargs)
    assert trn.device.type == DEV
    assert cpu.shape == (2, 14)
    assert torch.equal(trn.cpu(), cpu)


def test_sampled_generate_with_the_same_seed_equals_cpu():
    """trn's generator draws CPU's numbers: top-k sampling picks the same tokens."""
    torch.manual_seed(0)
    model = qwen3_moe().float().eval()
    prompt = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(2))
    kwargs = dict(max_new_tokens=6, do_sample=True, top_k=20, temperature=0.9, pad_token_id=0)
    with torch.no_grad():
        torch.manual_seed(5)
        cpu = model.generate(prompt, **kwargs)
        torch.manual_seed(5)
        trn = model.to(DEV).generate(prompt.to(DEV), **kwargs)
    assert torch.equal(trn.cpu(), cpu)


def test_left_padded_batch_generate_equals_cpu():
    torch.manual_seed(0)
    model = llama().float().eval()
    prompt = torch.randint(1, VOCAB, (2, 8), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(prompt)
    prompt[1, :3], mask[1, :3] = 0, 0  # the second row is 3 tokens shorter, left-padded
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cpu = model.generate(prompt, attention_mask=mask, **kwargs)
        trn = model.to(DEV).generate(prompt.to(DEV), attention_mask=mask.to(DEV), **kwargs)
    assert torch.equal(trn.cpu(), cpu)


def test_moe_experts_take_the_grouped_mm_path_on_trn():
    """transformers' grouped-GEMM path histc's int32 expert ids on non-CPU devices."""
    torch.manual_seed(0)
    model = qwen3_moe().float().to(DEV)
    experts = model.model.layers[0].mlp.experts
    calls = []
    from torch.utils._python_dispatch import TorchDispatchMode

    class Seen(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            calls.append((str(func), [a.dtype for a in args if isinstance(a, torch.Tensor)]))
            return func(*args, **(kwargs or {}))

    ids = torch.randint(0, VOCAB, (1, 8)).to(DEV)
    with Seen(), torch.no_grad():
        model(input_ids=ids)
    assert experts is not None
    assert ("aten.histc.default", [torch.int32]) in calls
    assert any(name.startswith("aten._grouped_mm") for name, _ in calls)
