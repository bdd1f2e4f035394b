"""Errors a step handler raises to tell the saga what kind of failure happened.

Step Functions sees the exception's class name as the error name (Lambda's ``errorType``), so
the class names below are part of the contract with the state machine: ``TransientStepError``
is in every step's default retry list, everything else goes straight to compensation.
"""

from __future__ import annotations


class StepError(Exception):
    """Base class of every error the saga runtime raises on purpose."""


class BusinessError(StepError):
    """A definitive "no" from a participant (out of stock, card declined).

    Never retried: the saga compensates at once.
    """


class TransientStepError(StepError):
    """A failure worth retrying (a dependency briefly down, throttling).

    Retried with the step's retry policy; compensates when the retries are exhausted.
    """


class LateActionRefused(StepError):
    """The action arrived after its compensation had already run, so it does nothing.

    This happens when Step Functions gave up on an attempt (timeout) that was still running;
    nobody waits for its answer any more, and doing its side effect now would leak it.
    """


class MalformedStepEvent(StepError):
    """The event the handler received is not a saga step event (wiring or input mistake)."""


class RuntimeVersionMismatch(StepError):
    """The function runs a different Saga Kit runtime than the one that synthesized its state
    machine (see :mod:`saga_kit.runtime.version`). Redeploy with one version."""


class CallbackTaskClosed(StepError):
    """Step Functions no longer waits for this callback step: it timed out, missed a heartbeat,
    was stopped with its parallel group, or was already answered.

    Raised by :meth:`StepContext.heartbeat`. Stop working: the saga has moved on (and will
    compensate the step if it has not succeeded); an effect made anyway is refused by the
    late-action barrier or undone by the compensation.
    """


class MalformedCommand(StepError):
    """A callback command on the step's queue is not one the state machine sent; it is left
    for the queue's dead-letter queue, never dropped."""
