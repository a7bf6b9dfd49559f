"""Where a transformers model runs and in which dtype.

The choice is a pure function of the caller's options, the environment and three availability checks, so it is
unit-tested on any machine by passing fake checks:

```python
from llmclient.drivers.local.device import Accelerator, select_placement

gpu = Accelerator(cuda_available=lambda: True, bf16_supported=lambda: True, device_count=lambda: 2)
assert select_placement(accelerator=gpu, environ={}).dtype == "bfloat16"
assert select_placement(accelerator=gpu, environ={"CUDA_VISIBLE_DEVICES": ""}).device == "cpu"
```
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmclient.errors import ConfigurationError

DeviceMap = str | dict[str, Any]

_DTYPES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


@dataclass(frozen=True)
class Accelerator:
    """The machine's availability checks, called only when the choice depends on them."""

    cuda_available: Callable[[], bool]
    bf16_supported: Callable[[], bool]
    device_count: Callable[[], int]

    @classmethod
    def probe(cls) -> Accelerator:
        """The real checks, through torch (imported here, on first use)."""
        import torch

        return cls(
            cuda_available=torch.cuda.is_available,
            bf16_supported=lambda: bool(torch.cuda.is_bf16_supported()),
            device_count=torch.cuda.device_count,
        )


@dataclass(frozen=True)
class Placement:
    """Where a model is loaded: `device` ("cpu", "cuda", "cuda:1", "mps"), `dtype` and accelerate's `device_map`."""

    device: str
    dtype: str
    device_map: DeviceMap | None
    reason: str

    def load_kwargs(self) -> dict[str, Any]:
        """The `from_pretrained` keyword arguments for this placement."""
        import torch

        dtype: Any = "auto" if self.dtype == "auto" else getattr(torch, self.dtype)
        kwargs: dict[str, Any] = {"dtype": dtype}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        return kwargs


def select_placement(
    device: str | None = None,
    dtype: str | None = None,
    device_map: DeviceMap | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    accelerator: Accelerator | None = None,
) -> Placement:
    """Choose device, dtype and device map.

    - No `device`: CUDA when a GPU is visible (`device_map="auto"` spreads the model over the visible GPUs; bf16
      where supported, else fp16), else the CPU in float32. `CUDA_VISIBLE_DEVICES=""` means no GPU, whatever
      torch would say.
    - `device="cpu"`, `"cuda"`, `"cuda:N"` or `"mps"`: the whole model on that device (N counts the *visible*
      devices, as torch does); asking for CUDA where there is none raises `ConfigurationError`.
    - `dtype` overrides the dtype ("auto" keeps the checkpoint's); `device_map` overrides the map.
    """
    env = os.environ if environ is None else environ
    checks = accelerator or Accelerator.probe()
    chosen_dtype = _dtype(dtype)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    hidden = visible is not None and visible.strip() in ("", "-1")

    def gpu_dtype() -> str:
        return chosen_dtype or ("bfloat16" if checks.bf16_supported() else "float16")

    if device is None or device == "auto":
        if not hidden and checks.cuda_available():
            return Placement(
                "cuda",
                gpu_dtype(),
                device_map if device_map is not None else "auto",
                f"CUDA available (CUDA_VISIBLE_DEVICES={visible!r})" if visible else "CUDA available",
            )
        why = "CUDA_VISIBLE_DEVICES hides every GPU" if hidden else "no CUDA device"
        return Placement("cpu", chosen_dtype or "float32", device_map, why)
    if device == "cpu":
        return Placement("cpu", chosen_dtype or "float32", device_map, "device='cpu' given")
    if device.startswith("cuda"):
        index_text = device.partition(":")[2]
        if device != "cuda" and not index_text.isdigit():
            raise ConfigurationError(f"device={device!r} is not a device; use 'cpu', 'cuda' or 'cuda:N'")
        if hidden or not checks.cuda_available():
            detail = f"CUDA_VISIBLE_DEVICES={visible!r}" if hidden else "torch sees no CUDA device"
            raise ConfigurationError(f"device={device!r} was asked for but no GPU is visible ({detail})")
        index = int(index_text or 0)
        count = checks.device_count()
        if index >= count:
            hint = f"; indices count the devices in CUDA_VISIBLE_DEVICES={visible!r}" if visible else ""
            raise ConfigurationError(f"device={device!r} but only {count} GPU(s) are visible{hint}")
        target = f"cuda:{index}"
        return Placement(target, gpu_dtype(), device_map or {"": target}, f"device={device!r} given")
    return Placement(device, chosen_dtype or "float32", device_map or {"": device}, f"device={device!r} given")


def _dtype(value: str | None) -> str | None:
    if value is None:
        return None
    name = str(value).removeprefix("torch.")
    if name not in _DTYPES:
        raise ConfigurationError(f"dtype={value!r} is not one of {', '.join(sorted(set(_DTYPES.values())))}")
    return _DTYPES[name]
