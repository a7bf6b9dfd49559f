"""Sentence encoders for the transformers driver: pooling and normalisation as sentence-transformers configures them
(read from the model's files), and batched encoding. torch is imported on first use, never here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmclient.drivers.local.runtime import Stop
from llmclient.errors import LLMClientError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from llmclient.drivers.local.hf_models import Source


@dataclass(frozen=True)
class SentenceConfig:
    """How sentence-transformers turns token states into one vector (read from the model folder when present)."""

    modes: tuple[str, ...] = ("mean_tokens",)
    normalize: bool = True
    max_seq_length: int | None = None
    lowercase: bool = False
    transformer_path: str = ""


def read_sentence_config(source: Source) -> SentenceConfig:
    """Pooling, normalisation and the sequence limit from `modules.json`, `1_Pooling/config.json` and
    `sentence_bert_config.json`; a plain encoder without them gets mean pooling and L2 normalisation."""
    modules = read_model_json(source, "modules.json")
    if not isinstance(modules, list):
        return SentenceConfig()
    kinds = {str(module.get("type", "")).rsplit(".", 1)[-1]: str(module.get("path", "")) for module in modules}
    transformer = kinds.get("Transformer", "")
    pooling = read_model_json(source, f"{kinds['Pooling']}/config.json") if "Pooling" in kinds else None
    # sentence-transformers concatenates the enabled poolings in this order (models/Pooling.py).
    order = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")
    modes = tuple(mode for mode in order if isinstance(pooling, dict) and pooling.get(f"pooling_mode_{mode}"))
    bert = read_model_json(source, f"{transformer}/sentence_bert_config.json".lstrip("/")) or {}
    return SentenceConfig(
        modes=modes or ("mean_tokens",),
        normalize="Normalize" in kinds,
        max_seq_length=bert.get("max_seq_length"),
        lowercase=bool(bert.get("do_lower_case", False)),
        transformer_path=transformer,
    )


def read_model_json(source: Source, relative: str) -> Any:
    """A JSON file of the model's files, or None when there is none (hub ids: from the local cache only)."""
    if source.local:
        path = Path(source.location) / relative
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.location, relative, revision=source.revision)
        if not isinstance(found, str):
            return None
        path = Path(found)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


class Encoder:
    """A sentence encoder: token states pooled as sentence-transformers pools them, in batches."""

    def __init__(self, model: Any, tokenizer: Any, config: SentenceConfig, max_length: int, batch_size: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.max_length = max_length
        self.batch_size = batch_size
        self.dimensions = int(model.config.hidden_size) * len(config.modes)

    def encode(self, texts: list[str], stop: Stop) -> tuple[npt.NDArray[np.float32], int]:
        """Vectors in input order (float32) and the tokens processed, special tokens included."""
        import numpy as np
        import torch

        texts = [text.lower() for text in texts] if self.config.lowercase else texts
        # Longest first, as sentence-transformers does: batches of similar lengths waste less padding.
        order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        processed = 0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                if stop:
                    raise LLMClientError("embedding cancelled", provider="transformers")
                indices = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[index] for index in indices],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.model.device)
                states = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"]
                processed += int(mask.sum())
                pooled = torch.cat([_pool(mode, states, mask) for mode in self.config.modes], dim=1)
                if self.config.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                vectors[indices] = pooled.cpu().numpy()
        return vectors, processed


def _pool(mode: str, states: Any, mask: Any) -> Any:
    """One of sentence-transformers' poolings (sentence_transformer/modules/pooling.py) over the attention mask."""
    import torch

    rows = torch.arange(states.shape[0], device=states.device)
    first = mask.to(torch.int32).argmax(dim=1)  # the first real token, whichever side the padding is on
    weights = mask.unsqueeze(-1).to(states.dtype)
    if mode == "cls_token":
        return states[rows, first]
    if mode == "max_tokens":
        return states.masked_fill(weights == 0, float("-inf")).max(dim=1).values
    if mode == "lasttoken":
        return states[rows, mask.shape[1] - 1 - mask.flip(dims=[1]).to(torch.int32).argmax(dim=1)]
    if mode == "weightedmean_tokens":  # token i of the text weighs i (1, 2, ...), as in SGPT
        positions = torch.arange(1, states.shape[1] + 1, device=states.device, dtype=states.dtype)
        weights = weights * (positions.view(1, -1, 1) - first.view(-1, 1, 1))
    summed = (states * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    if mode == "mean_sqrt_len_tokens":
        return summed / counts.sqrt()
    return summed / counts  # mean_tokens, weightedmean_tokens
