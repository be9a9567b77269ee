"""Fixtures for the operator tests."""

from __future__ import annotations

import pytest

from dicomweb_operator.config import OperatorConfig


@pytest.fixture()
def config() -> OperatorConfig:
    return OperatorConfig(stow_image="registry.test/stow:1", wado_image="registry.test/wado:1")
