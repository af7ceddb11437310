"""Text classifiers seen from their input word embeddings.

G of a text classifier is taken with respect to the *input word embeddings*: the output of the
model's word-embedding layer (``model.get_input_embeddings()``), before position and token-type
embeddings are added, i.e. what a Hugging Face model takes as ``inputs_embeds``. A text of L
tokens (special tokens included, as the tokenizer saved with the model makes them; no padding)
is a point of dimension L × E.

:class:`TextClassifier` wraps a sequence classifier and its tokenizer:

* ``model(texts)`` (a list of strings, or a :class:`~leafscope.data.text.TextBatch`):
  tokenise, embed, classify → logits (N, C);
* ``model(embeddings)`` (float ``(N, L, E)``): logits from input embeddings, every token
  attended (the map whose input Jacobian gives G);
* :meth:`TextClassifier.tokenize` (one text at a time, no padding) and
  :meth:`TextClassifier.embed`.

So ``DataInformation(model, model.embed_text("a text"))`` is G of one text, and
:func:`leafscope.information.sequence_spectra` takes many texts of different lengths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from leafscope.errors import InputError

__all__ = ["TextClassifier", "TokenizedText", "is_texts"]


def is_texts(value: Any) -> bool:
    """A string or a list/tuple of strings (what a text point set's ``take`` gives)."""
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


@dataclasses.dataclass(frozen=True)
class TokenizedText:
    """One text as the model's tokenizer splits it.

    Attributes:
        input_ids: ``(L,)`` int64 token ids (special tokens included, no padding).
        tokens: the L token strings.
    """

    input_ids: Tensor
    tokens: list[str]

    def __len__(self) -> int:
        return len(self.tokens)


class TextClassifier(nn.Module):
    """A Hugging Face sequence classifier with its tokenizer, differentiable in its input word
    embeddings (see the module docstring).

    Args:
        model: a ``*ForSequenceClassification`` model (``inputs_embeds`` and
            ``attention_mask`` keyword arguments, an output holding the logits).
        tokenizer: its tokenizer (called on single texts; truncation at ``max_length``).
        output: attribute or key of the logits in the model's output.
        max_length: tokens per text at most (default: the tokenizer's ``model_max_length``,
            capped by the model's ``max_position_embeddings``).
        source: where the model came from (for messages).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        output: str = "logits",
        max_length: int | None = None,
        source: str = "",
    ):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.output = output
        self.source = source
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        own = getattr(tokenizer, "model_max_length", None)
        candidates = [v for v in (max_length, own, limit) if isinstance(v, int) and v < 10**6]
        self.max_length = min(candidates) if candidates else 512
        self._notes: list[str] = [
            "G is taken in the input word embeddings (the word-embedding layer's output, "
            "before position and token-type embeddings), over the tokens of each text, special "
            "tokens included, no padding"
        ]

    # -- tokens and embeddings --------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
        """E, the width of a word embedding."""
        return int(self.model.get_input_embeddings().weight.shape[1])

    def tokenize(self, text: str) -> TokenizedText:
        """One text → its token ids (special tokens included, truncated at ``max_length``)."""
        if not isinstance(text, str):
            raise InputError(f"a text must be a string (got {type(text).__name__})")
        encoded = self.tokenizer(
            text, truncation=True, max_length=self.max_length, add_special_tokens=True
        )
        ids = list(encoded["input_ids"])
        if not ids:
            raise InputError(f"the tokenizer makes no tokens of the text {text[:40]!r}")
        tokens = list(self.tokenizer.convert_ids_to_tokens(ids))
        return TokenizedText(torch.tensor(ids, dtype=torch.long), tokens)

    def embed(self, input_ids: Tensor) -> Tensor:
        """Word embeddings ``(..., L, E)`` of token ids ``(..., L)`` (on the model's device and
        in its dtype; no gradient)."""
        layer = self.model.get_input_embeddings()
        with torch.no_grad():
            return layer(input_ids.to(layer.weight.device)).detach()

    def embed_text(self, text: str) -> Tensor:
        """``(1, L, E)``: the input word embeddings of one text (a batch of one point)."""
        return self.embed(self.tokenize(text).input_ids)[None]

    # -- logits --------------------------------------------------------------------------------
    def logits_from_embeddings(
        self, embeds: Tensor, attention_mask: Tensor | None = None
    ) -> Tensor:
        """Logits ``(N, C)`` of input embeddings ``(N, L, E)`` (``attention_mask`` (N, L):
        None attends every token)."""
        out = self.model(inputs_embeds=embeds, attention_mask=attention_mask)
        logits = getattr(out, self.output, None)
        if logits is None and isinstance(out, dict):
            logits = out.get(self.output)
        if logits is None and isinstance(out, (tuple, list)):
            logits = out[0]
        if not isinstance(logits, Tensor):
            raise InputError(
                f"the text model's output has no {self.output!r}: pass the attribute holding "
                "the logits as `output`"
            )
        return logits

    def forward(self, inputs: Any, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``(N, C)`` of texts (a list of strings: tokenised one at a time, then
        padded with an attention mask), token ids ``(N, L)`` or input embeddings
        ``(N, L, E)``."""
        if is_texts(inputs):
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            if not texts:
                raise InputError("no texts given")
            tokenized = [self.tokenize(t) for t in texts]
            length = max(len(t) for t in tokenized)
            pad = getattr(self.tokenizer, "pad_token_id", None) or 0
            ids = torch.full((len(texts), length), int(pad), dtype=torch.long)
            mask = torch.zeros((len(texts), length), dtype=torch.long)
            for i, t in enumerate(tokenized):
                ids[i, : len(t)] = t.input_ids
                mask[i, : len(t)] = 1
            device = self.model.get_input_embeddings().weight.device
            return self.logits_from_embeddings(
                self.model.get_input_embeddings()(ids.to(device)), mask.to(device)
            )
        if not isinstance(inputs, Tensor):
            raise InputError(
                "a text classifier takes texts, token ids (N, L) or input embeddings (N, L, E) "
                f"(got {type(inputs).__name__})"
            )
        if not inputs.is_floating_point():
            if inputs.dim() != 2:
                raise InputError(f"token ids must be (N, L) (got shape {tuple(inputs.shape)})")
            inputs = self.model.get_input_embeddings()(inputs)
        elif inputs.dim() != 3 or inputs.shape[-1] != self.embedding_dim:
            raise InputError(
                f"input embeddings must be (N, L, E) with E = {self.embedding_dim} (got shape "
                f"{tuple(inputs.shape)}): a text classifier takes texts or word embeddings, "
                "not images or vectors"
            )
        return self.logits_from_embeddings(inputs, attention_mask)

    def extra_repr(self) -> str:
        return f"source={self.source!r}, max_length={self.max_length}"


def tokenize_all(model: TextClassifier, texts: Sequence[str]) -> list[TokenizedText]:
    """Every text tokenised by ``model`` (one at a time, no padding)."""
    return [model.tokenize(t) for t in texts]
