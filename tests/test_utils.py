"""Seeding and device choice."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from course_lib import REQUIRE_CUDA_ENV, set_seed, try_gpu


def draw():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), torch.randint(0, 100, (4,)).tolist()


def test_set_seed_makes_all_three_generators_repeat():
    set_seed(123)
    first = draw()
    set_seed(123)
    assert draw() == first
    set_seed(124)
    assert draw() != first


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "0", True])
def test_set_seed_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="set_seed expects"):
        set_seed(bad)


def test_try_gpu_agrees_with_d2l(d2l):
    assert try_gpu() == d2l.try_gpu()
    assert try_gpu(7) == d2l.try_gpu(7)


def test_try_gpu_falls_back_to_cpu_without_cuda(monkeypatch):
    monkeypatch.delenv(REQUIRE_CUDA_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert try_gpu() == torch.device("cpu")


def test_try_gpu_picks_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert try_gpu() == torch.device("cuda:0")
    assert try_gpu(1) == torch.device("cuda:1")


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_require_cuda_fails_loudly_on_cpu(monkeypatch, value):
    monkeypatch.setenv(REQUIRE_CUDA_ENV, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=f"{REQUIRE_CUDA_ENV}=1 is set but CUDA device 0 is not available"):
        try_gpu()


def test_require_cuda_off_values(monkeypatch):
    monkeypatch.setenv(REQUIRE_CUDA_ENV, "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert try_gpu() == torch.device("cpu")


def test_try_gpu_rejects_negative_index():
    with pytest.raises(ValueError, match="GPU index >= 0"):
        try_gpu(-1)
