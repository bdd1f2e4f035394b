"""Benchmark handlers that run the full Saga Kit runtime around no business work at all.

``@saga_step`` gives them Powertools idempotency, the late-action barrier, logging and metrics;
the handler itself only echoes, like the bare baseline. Comparing the two isolates what the kit's
runtime costs per step, apart from the simulated participants' own DynamoDB transactions.
"""

from typing import Any

from saga_kit.runtime import BusinessError, StepContext, saga_step


class InjectedBusinessError(BusinessError):
    """The benchmark's business error, to measure the compensated path."""


def _echo(ctx: StepContext) -> dict[str, Any]:
    if ctx.phase == "action" and any(f.get("step") == ctx.step for f in ctx.input.get("faults") or []):
        raise InjectedBusinessError(f"benchmark failure at {ctx.step}")
    return {"step": ctx.step, "saga_id": ctx.saga_id}


echo = saga_step(_echo)
