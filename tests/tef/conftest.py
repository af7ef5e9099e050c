"""TEF fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from tef_support import lesion_onnx_package


@pytest.fixture(scope="session")
def onnx_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lesion_onnx_package(tmp_path_factory.mktemp("algorithms") / "lesion-lr")
