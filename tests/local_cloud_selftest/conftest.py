"""Fixtures for LocalCloud's own self-test: synthesize the tiny app once, deploy it once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from selftest_app import STACK_NAME, synth_selftest_app

from saga_kit.local_cloud import LocalCloud


@pytest.fixture(scope="session")
def selftest_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The self-test app's cloud assembly, synthesized with ``app.synth()``."""
    return synth_selftest_app(tmp_path_factory.mktemp("selftest_cdk_out"))


@pytest.fixture(scope="module")
def selftest_cloud(selftest_assembly: Path) -> Iterator[LocalCloud]:
    """The self-test stack deployed into moto, with instant retries."""
    with LocalCloud(selftest_assembly, STACK_NAME) as cloud:
        yield cloud
