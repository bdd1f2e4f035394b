"""The README's declaration example is a valid saga (an example that does not run is a defect)."""

from __future__ import annotations

import re
from pathlib import Path

from saga_kit.cdk import SagaDefinition, StepKind

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_declaration_example_is_valid() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    declaration = next(b for b in blocks if "SagaDefinition(" in b)
    namespace: dict[str, object] = {}
    exec(declaration.split("# in your Stack")[0], namespace)
    trip = namespace["TRIP"]
    assert isinstance(trip, SagaDefinition)
    assert [s.kind for s in trip.steps] == [StepKind.COMPENSATABLE, StepKind.COMPENSATABLE,
                                            StepKind.PIVOT, StepKind.RETRIABLE]
