"""Device and dtype selection for the transformers driver, with the machine's checks faked (runs anywhere)."""

from __future__ import annotations

import pytest

from llmclient import ConfigurationError
from llmclient.drivers.local.device import Accelerator, select_placement


def machine(cuda: bool, bf16: bool = True, count: int = 1) -> Accelerator:
    return Accelerator(cuda_available=lambda: cuda, bf16_supported=lambda: bf16, device_count=lambda: count)


def unreachable() -> bool:
    raise AssertionError("this check must not run")


@pytest.mark.parametrize(
    ("accelerator", "environ", "expected"),
    [
        (machine(cuda=True, bf16=True), {}, ("cuda", "bfloat16", "auto")),
        (machine(cuda=True, bf16=False), {}, ("cuda", "float16", "auto")),  # e.g. a T4 or V100
        (machine(cuda=False), {}, ("cpu", "float32", None)),
        (machine(cuda=True, count=1), {"CUDA_VISIBLE_DEVICES": "1"}, ("cuda", "bfloat16", "auto")),
        # An empty CUDA_VISIBLE_DEVICES means no GPU: not even asked.
        (Accelerator(unreachable, unreachable, lambda: 0), {"CUDA_VISIBLE_DEVICES": ""}, ("cpu", "float32", None)),
        (Accelerator(unreachable, unreachable, lambda: 0), {"CUDA_VISIBLE_DEVICES": "-1"}, ("cpu", "float32", None)),
    ],
)
def test_automatic_choice(accelerator: Accelerator, environ: dict[str, str], expected: tuple[object, ...]) -> None:
    placement = select_placement(environ=environ, accelerator=accelerator)
    assert (placement.device, placement.dtype, placement.device_map) == expected
    assert placement.reason


@pytest.mark.parametrize(
    ("device", "accelerator", "expected"),
    [
        ("cpu", machine(cuda=True), ("cpu", "float32", None)),
        ("cuda", machine(cuda=True), ("cuda:0", "bfloat16", {"": "cuda:0"})),
        ("cuda:1", machine(cuda=True, bf16=False, count=2), ("cuda:1", "float16", {"": "cuda:1"})),
        ("mps", machine(cuda=False), ("mps", "float32", {"": "mps"})),
    ],
)
def test_explicit_device(device: str, accelerator: Accelerator, expected: tuple[object, ...]) -> None:
    placement = select_placement(device, environ={}, accelerator=accelerator)
    assert (placement.device, placement.dtype, placement.device_map) == expected


@pytest.mark.parametrize(
    ("device", "accelerator", "environ", "message"),
    [
        ("cuda", machine(cuda=False), {}, "no GPU is visible"),
        ("cuda:0", machine(cuda=True), {"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES=''"),
        ("cuda:1", machine(cuda=True, count=1), {"CUDA_VISIBLE_DEVICES": "1"}, "only 1 GPU"),
        ("cuda:x", machine(cuda=True), {}, "not a device"),
    ],
)
def test_impossible_devices_are_configuration_errors(
    device: str, accelerator: Accelerator, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        select_placement(device, environ=environ, accelerator=accelerator)


def test_dtype_and_device_map_overrides() -> None:
    gpu = machine(cuda=True)
    assert select_placement(dtype="fp32", environ={}, accelerator=gpu).dtype == "float32"
    assert select_placement(dtype="torch.float16", environ={}, accelerator=gpu).dtype == "float16"
    assert select_placement(dtype="auto", environ={}, accelerator=machine(cuda=False)).dtype == "auto"
    assert select_placement(device_map="balanced", environ={}, accelerator=gpu).device_map == "balanced"
    with pytest.raises(ConfigurationError, match="dtype='int3'"):
        select_placement(dtype="int3", environ={}, accelerator=gpu)
