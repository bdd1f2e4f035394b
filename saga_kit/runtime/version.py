"""The runtime refuses to run under a state machine synthesized by another Saga Kit version.

The ``Saga`` construct stamps every function with ``SAGA_KIT_VERSION``, the version that wrote its
state machine, its payloads and its message formats; the runtime layer it ships carries the same
version. A function that ends up with another runtime (a hand-made layer, a vendored old copy in
the team's code shadowing the layer) would misread those formats silently, so it fails loudly at
cold start and on every invocation instead.
"""

from __future__ import annotations

import os

import saga_kit
from saga_kit.contract import Env
from saga_kit.runtime.errors import RuntimeVersionMismatch


def check_kit_version() -> None:
    """Raises :class:`RuntimeVersionMismatch` when the function was synthesized by another
    Saga Kit version than this runtime's. Outside a kit-built function (no stamp) it passes."""
    expected = os.environ.get(Env.KIT_VERSION)
    if expected and expected != saga_kit.__version__:
        raise RuntimeVersionMismatch(
            f"this function was synthesized by Saga Kit {expected}, but its runtime is Saga Kit "
            f"{saga_kit.__version__} (from {os.path.dirname(saga_kit.__file__)}). Redeploy with "
            "one version: the Saga construct ships its own runtime as a layer, so remove any "
            "copy of saga_kit from the function's code asset.")
