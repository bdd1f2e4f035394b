"""Self-test Lambda that imports from its layers: ``selftest_extra`` (the stack's own layer) and
``aws_lambda_powertools`` (the AWS-managed Powertools layer)."""

from __future__ import annotations

from typing import Any

import aws_lambda_powertools
from selftest_extra import GREETING


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer with what came from the layers."""
    return {"greeting": GREETING, "powertools": aws_lambda_powertools.__name__}
