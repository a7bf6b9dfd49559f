"""Loading for the transformers driver: where a model id's files are, the dequantized-GGUF cache, and the loaded
objects (tokenizer, causal LM, sentence encoder; the encoder itself is in `hf_encoder`). torch and transformers are
imported on first load, never here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from llmclient.drivers.local.device import Accelerator, DeviceMap, Placement, select_placement
from llmclient.drivers.local.hf_encoder import Encoder, SentenceConfig, read_model_json, read_sentence_config
from llmclient.drivers.local.runtime import TRANSFORMERS_EXTRA, minilm_folder, smollm2_gguf
from llmclient.errors import ConfigurationError, MissingExtraError

CACHE_ENV = "LLMCLIENT_CACHE"
"""Where dequantized GGUF models are kept (default `~/.cache/llmclient`)."""

INSTALL = "pip install 'llmclient[transformers]'"


@dataclass(frozen=True)
class ModelOptions:
    """Options of one model, from `Client(providers={"transformers": {...}})` (top level or under `models`)."""

    path: str | None = None
    device: str | None = None
    dtype: str | None = None
    device_map: DeviceMap | None = None
    max_batch_size: int = 8
    batch_window_ms: float = 10.0
    gguf_file: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    max_seq_length: int | None = None
    embed_batch_size: int = 32


OPTION_NAMES = frozenset(option.name for option in fields(ModelOptions))


def _smollm2() -> dict[str, Any]:
    gguf = smollm2_gguf(TRANSFORMERS_EXTRA)
    return {"path": str(gguf.parent), "gguf_file": gguf.name}


# The embedded defaults, from PyPI wheels (found without importing the packages).
BUILTIN_MODELS: dict[str, Callable[[], dict[str, Any]]] = {
    "smollm2": _smollm2,
    "all-MiniLM-L6-v2": lambda: {"path": str(minilm_folder())},
}


@dataclass
class BatchStats:
    """How generation requests were batched: `batches` engine calls served `requests`, the largest held `largest`."""

    requests: int = 0
    batches: int = 0
    largest: int = 0


@dataclass(frozen=True)
class Source:
    """Where a model's files are: a local folder, or a hub id found in the local Hugging Face cache."""

    location: str
    local: bool
    gguf_file: str | None = None
    gguf_path: Path | None = None
    revision: str | None = None
    subfolder: str = ""


def require(*, gguf: bool = False) -> None:
    """Import the heavy libraries, or say which extra installs them."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"the transformers driver needs torch and transformers: {INSTALL}") from exc
    if gguf and not all(importlib.util.find_spec(name) for name in ("gguf", "accelerate")):
        raise MissingExtraError(f"loading a GGUF file with transformers needs gguf and accelerate: {INSTALL}")


def resolve_source(name: str, options: ModelOptions) -> Source:
    """The files of `name`: a local folder or `.gguf` file, else a hub id that must already be in the cache."""
    target = options.path or name
    path = Path(target).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return Source(str(path.parent), True, path.name, path)
    if path.is_dir():
        gguf_path = path / options.gguf_file if options.gguf_file else None
        if gguf_path is not None and not gguf_path.is_file():
            raise ConfigurationError(f"no GGUF file {gguf_path}", provider="transformers", model=name)
        return Source(str(path), True, options.gguf_file, gguf_path)
    from huggingface_hub import constants, try_to_load_from_cache

    # Never downloaded: a hub id resolves from the local cache only (as with HF_HUB_OFFLINE=1).
    wanted = options.gguf_file or "config.json"
    found = try_to_load_from_cache(target, wanted, revision=options.revision)
    if not isinstance(found, str):
        raise ConfigurationError(
            f"{target!r} is neither a local folder nor in the Hugging Face cache ({constants.HF_HUB_CACHE}); "
            f"llmclient never downloads weights: fetch it once with `hf download {target}` "
            "(or `huggingface-cli download`), or give a local path",
            provider="transformers",
            model=name,
        )
    return Source(target, False, options.gguf_file, Path(found) if options.gguf_file else None, options.revision)


def cache_root() -> Path:
    """The folder llmclient caches into: `$LLMCLIENT_CACHE`, else `~/.cache/llmclient`."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "llmclient"


def dequantized_folder(gguf_path: Path) -> Path:
    """The cache folder of a GGUF file, keyed by its name, size, mtime and the transformers version."""
    import transformers

    stat = gguf_path.stat()
    identity = f"{gguf_path.name}|{stat.st_size}|{stat.st_mtime_ns}|transformers {transformers.__version__}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return cache_root() / "transformers" / f"{gguf_path.stem}-{key}"


def _from_pretrained(loader: Any, source: Source, options: ModelOptions, **kwargs: Any) -> Any:
    hf_logging: Any = importlib.import_module("transformers.utils.logging")

    if source.subfolder:
        kwargs["subfolder"] = source.subfolder
    # transformers draws a "Loading weights" bar on stderr; a library call should not, so it is off while loading
    # and restored afterwards (the user's own setting stands).
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(
            source.location,
            revision=source.revision,
            local_files_only=True,
            trust_remote_code=options.trust_remote_code,
            **kwargs,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigurationError(
            f"could not load {source.location!r} with {loader.__name__}: {type(exc).__name__}: {str(exc)[:300]}",
            provider="transformers",
            model=source.location,
        ) from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def build_dequantized(source: Source, options: ModelOptions) -> Path:
    """Dequantize a GGUF model once into a safetensors folder (with its tokenizer) and return the folder."""
    assert source.gguf_path is not None
    folder = dequantized_folder(source.gguf_path)
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra: dict[str, Any] = {}
    try:  # transformers 5 can keep GGUF blocks packed; a folder to save needs plain tensors
        from transformers import GgufConfig

        extra["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # transformers 4 always dequantizes
        pass
    model = _from_pretrained(
        AutoModelForCausalLM, source, options, gguf_file=source.gguf_file, dtype=torch.float32, **extra
    )
    tokenizer = _from_pretrained(AutoTokenizer, source, options, gguf_file=source.gguf_file)
    # The weights are plain tensors now, but the GGUF quantizer stays attached and save_pretrained refuses a
    # "quantized" model; detach it so the folder loads as an ordinary checkpoint.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{threading.get_ident()}")
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(folder)  # atomic: a reader never sees a half-written folder
        except OSError:
            if not (folder / "config.json").is_file():  # not lost to a concurrent writer: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _transformer_source(source: Source, config: SentenceConfig) -> Source:
    """A sentence-transformers folder may keep its transformer in a subfolder (`0_Transformer`)."""
    if not config.transformer_path:
        return source
    return Source(source.location, source.local, revision=source.revision, subfolder=config.transformer_path)


@dataclass
class LocalModel:
    """One configured model: its options, files, placement and whatever has been loaded so far.

    Loading is blocking (callers run it on a thread) and happens once; `engine` is held by whichever thread runs
    the model, so event loops that share this object still never run it twice at once.
    """

    name: str
    options: ModelOptions
    accelerator: Accelerator | None = None
    source: Source | None = None
    placement: Placement | None = None
    tokenizer: Any = field(default=None, repr=False)
    lm: Any = field(default=None, repr=False)
    encoder: Encoder | None = field(default=None, repr=False)
    stats: BatchStats = field(default_factory=BatchStats)
    engine: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _loading: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _source(self) -> Source:
        if self.source is None:
            require()
            self.source = resolve_source(self.name, self.options)
            require(gguf=self.source.gguf_file is not None)
        return self.source

    def _placement(self) -> Placement:
        if self.placement is None:
            options = self.options
            self.placement = select_placement(
                options.device, options.dtype, options.device_map, accelerator=self.accelerator
            )
        return self.placement

    def _checkpoint(self) -> Source:
        """The folder to load weights from: the dequantized cache for a GGUF file."""
        source = self._source()
        if source.gguf_file is None:
            return source
        return Source(str(build_dequantized(source, self.options)), True)

    def load_tokenizer(self) -> Any:
        """The tokenizer (from the dequantized folder once it exists, else straight from the GGUF file)."""
        with self._loading:
            if self.tokenizer is None:
                source = self._source()
                from transformers import AutoTokenizer

                if source.gguf_path is not None and (dequantized_folder(source.gguf_path) / "config.json").is_file():
                    source = Source(str(dequantized_folder(source.gguf_path)), True)
                elif source.gguf_file is None:
                    source = _transformer_source(source, read_sentence_config(source))
                self.tokenizer = _from_pretrained(AutoTokenizer, source, self.options, gguf_file=source.gguf_file)
            return self.tokenizer

    def load_lm(self) -> Any:
        """The causal language model, on its device, in eval mode."""
        if self.lm is not None:
            return self.lm
        with self._loading:
            checkpoint = self._checkpoint()  # first, so that a GGUF's tokenizer loads from the dequantized folder
        self.load_tokenizer()
        with self._loading:
            if self.lm is None:
                from transformers import AutoModelForCausalLM

                placement = self._placement()
                model = _from_pretrained(AutoModelForCausalLM, checkpoint, self.options, **placement.load_kwargs())
                if placement.device_map is None and placement.device != "cpu":
                    model = model.to(placement.device)
                self.lm = model.eval()
            return self.lm

    def load_encoder(self) -> Encoder:
        """The sentence encoder, with its pooling read from the model folder."""
        with self._loading:
            if self.encoder is None:
                from transformers import AutoModel, AutoTokenizer

                config = read_sentence_config(self._source())
                source = _transformer_source(self._source(), config)
                tokenizer = _from_pretrained(AutoTokenizer, source, self.options)
                model = _from_pretrained(AutoModel, source, self.options, **self._placement().load_kwargs()).eval()
                limits = [self.options.max_seq_length or config.max_seq_length, tokenizer.model_max_length]
                limits.append(getattr(model.config, "max_position_embeddings", None))
                self.tokenizer = self.tokenizer or tokenizer
                length = min(int(limit) for limit in limits if limit)
                self.encoder = Encoder(model, tokenizer, config, length, self.options.embed_batch_size)
            return self.encoder

    def is_chat(self) -> bool:
        """Whether the model generates text (a GGUF file or a causal-LM architecture) rather than encodes it."""
        source = self._source()
        if source.gguf_file is not None:
            return True
        if isinstance(read_model_json(source, "modules.json"), list):
            return False
        config = read_model_json(source, "config.json") or {}
        heads = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
        return any(str(name).endswith(heads) for name in config.get("architectures") or [])

    def describe(self) -> dict[str, Any]:
        """Device, dtype, parameters and memory of what is loaded."""
        loaded = self.lm if self.lm is not None else (self.encoder.model if self.encoder else None)
        placement = self._placement()
        info: dict[str, Any] = {
            "model": self.name,
            "source": self.source.location if self.source else None,
            "gguf_file": self.source.gguf_file if self.source else None,
            "kind": "chat" if self.lm is not None else "embed",
            "device": placement.device,
            "dtype": placement.dtype,
            "device_map": placement.device_map,
            "reason": placement.reason,
            "max_batch_size": self.options.max_batch_size,
        }
        if loaded is not None:
            info["device"] = str(loaded.device)
            info["dtype"] = str(loaded.dtype).removeprefix("torch.")
            info["device_map"] = getattr(loaded, "hf_device_map", None) or placement.device_map
            info["parameters"] = sum(parameter.numel() for parameter in loaded.parameters())
            info["memory_bytes"] = int(loaded.get_memory_footprint())
        if self.source is not None and self.source.gguf_path is not None:
            info["dequantized_cache"] = str(dequantized_folder(self.source.gguf_path))
        return info

    def unload(self) -> None:
        """Drop the loaded objects (and CUDA's cached blocks), so their memory can be reused."""
        self.lm = self.encoder = self.tokenizer = None
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def merge_options(base: Mapping[str, Any], override: Mapping[str, Any], *, model: str) -> ModelOptions:
    """Top-level options overridden by one model's, checked by name."""
    merged = {**base, **override}
    unknown = sorted(set(merged) - OPTION_NAMES)
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) for transformers/{model}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(OPTION_NAMES))}",
            provider="transformers",
            model=model,
        )
    return ModelOptions(**merged)
