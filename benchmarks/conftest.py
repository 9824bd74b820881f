"""Session fixtures: the trained baselines, built once per session (and once per cache)."""

from __future__ import annotations

import pytest

from compress.baselines import Context
from compress.pytest_plugin import make_context


@pytest.fixture(scope="session")
def ctx(pytestconfig: pytest.Config) -> Context:
    return make_context(pytestconfig)


@pytest.fixture(scope="session")
def input_shape(ctx: Context) -> tuple[int, int, int, int]:
    return (1, ctx.data.channels, ctx.data.image_size, ctx.data.image_size)


@pytest.fixture(scope="session")
def distilled(ctx: Context):
    """The student distilled from the scratch teacher (row d): what compression starts from."""
    return ctx.distilled(pretrained_teacher=False)
