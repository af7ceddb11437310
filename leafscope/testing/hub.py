"""Tiny Hugging Face classifiers built from configs and saved to folders (random weights, no
download), for tests, examples and benchmarks of the ``hf:`` model source. They need the
optional ``transformers`` package (``pip install 'leafscope[hf]'``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["TINY_VOCAB", "save_tiny_bert", "save_tiny_vit"]

#: The vocabulary of :func:`save_tiny_bert` (WordPiece; the special tokens first).
TINY_VOCAB = (
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "a", "cat", "dog", "sat", "on", "mat", "good", "bad", "movie", "was", "very", "not",
    "film", "great", "terrible", "plot", "acting", "loved", "hated", "it", "and", "but", "is",
)  # fmt: skip


def save_tiny_vit(
    folder: str | Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    num_labels: int = 10,
    mean: Sequence[float] = (0.5, 0.4, 0.3),
    std: Sequence[float] = (0.2, 0.25, 0.3),
    seed: int = 0,
) -> Path:
    """A ``ViTForImageClassification`` with random weights and its image processor config
    (``image_mean``, ``image_std``, ``size``) saved with ``save_pretrained`` to ``folder``."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden_size,
        num_labels=num_labels,
    )
    folder = Path(folder)
    ViTForImageClassification(config).eval().save_pretrained(folder)
    processor = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "rescale_factor": 1 / 255,
        "resample": 2,
        "image_mean": list(mean),
        "image_std": list(std),
        "size": {"height": image_size, "width": image_size},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder


def save_tiny_bert(
    folder: str | Path,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    num_labels: int = 3,
    vocab: Sequence[str] = TINY_VOCAB,
    seed: int = 0,
) -> Path:
    """A ``BertForSequenceClassification`` with random weights and a WordPiece tokenizer over
    ``vocab``, saved with ``save_pretrained`` to ``folder``."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(str(vocab_file))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden_size,
        num_labels=num_labels,
        max_position_embeddings=64,
    )
    BertForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
