"""Build the ``tests/assets`` folder torchtitan 0.3.0 reads, from nothing.

torchtitan's debug configs load a Hugging Face tokenizer from
``./tests/assets/tokenizer`` (``tokenizer.json`` + ``tokenizer_config.json``)
and the ``c4_test`` dataset with ``load_dataset("tests/assets/c4_test",
split="train")`` (a folder of JSON lines with a ``text`` field). The wheel
ships neither, so the tests write both: a byte-level BPE trained with the
``tokenizers`` package on a few thousand lines of deterministic text, padded
with special tokens to the 2048-entry vocabulary of the debug models.
"""

import json
import os
import random

VOCAB_SIZE = 2048  # llama3 / qwen3 debug models
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"]

_WORDS = (
    "the of and to in is was for on that with as by at from his her an were "
    "are which this be or has had not but first one their its new after who "
    "they have two been she he also more other all into time may during most "
    "year years can city world school part later over three when between "
    "tensor engine chip memory core training model layer token batch vector "
    "scalar matrix device kernel stream collective gradient optimizer step "
    "river mountain village music album film game team season league player "
    "north south east west house church station road bridge market garden"
).split()


def corpus_lines(n_lines: int = 3000, seed: int = 0) -> list[str]:
    """Deterministic pseudo-English lines (same on every machine)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        n = rng.randint(20, 80)
        words = [rng.choice(_WORDS) for _ in range(n)]
        words[0] = words[0].capitalize()
        lines.append(f"{' '.join(words)}. Line {i} ends here.")
    return lines


def write_c4_test(folder: str, lines: list[str]) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "c4-train.00000-of-00001.json"), "w") as f:
        for line in lines:
            f.write(json.dumps({"text": line}) + "\n")


def write_tokenizer(folder: str, lines: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    # The corpus is small: fill the vocabulary up to the model's size with
    # reserved special tokens so every id the model can emit decodes.
    n = tok.get_vocab_size()
    tok.add_special_tokens(
        [f"<|reserved_{i}|>" for i in range(VOCAB_SIZE - n)]
    )
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    config = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>",
        "pad_token": "<|pad|>",
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)


def build_assets(root: str) -> str:
    """Write ``root/tests/assets/{tokenizer,c4_test}``; return ``root``."""
    lines = corpus_lines()
    assets = os.path.join(root, "tests", "assets")
    write_c4_test(os.path.join(assets, "c4_test"), lines)
    write_tokenizer(os.path.join(assets, "tokenizer"), lines)
    return root
