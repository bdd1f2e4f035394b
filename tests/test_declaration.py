"""A bad saga declaration fails synthesis with a message naming the saga, the step and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_

from saga_kit.cdk import RetryPolicy, Saga, SagaDeclarationError, SagaDefinition, Step, StepKind


def step(name: str, **overrides: object) -> Step:
    fields: dict[str, object] = {
        "action": f"shop.{name}.do",
        "compensation": f"shop.{name}.undo",
    }
    fields.update(overrides)
    return Step(name, **fields)  # type: ignore[arg-type]


def declare(*steps: Step) -> SagaDefinition:
    return SagaDefinition(name="trip_booking", steps=list(steps))


def assert_rejected(*steps: Step, mentions: list[str]) -> str:
    with pytest.raises(SagaDeclarationError) as caught:
        declare(*steps)
    message = str(caught.value)
    assert "saga 'trip_booking'" in message
    for fragment in mentions:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    return message


def test_a_valid_declaration_is_accepted() -> None:
    saga = declare(
        step("book_flight"),
        step("book_hotel", kind=StepKind.PIVOT),
        step("email_itinerary", kind=StepKind.RETRIABLE, compensation=None),
    )
    assert saga.pivot_index == 1
    assert [s.name for s in saga.compensations_before(2)] == ["book_hotel", "book_flight"]


def test_duplicate_step_names() -> None:
    assert_rejected(step("book_flight"), step("book_flight"),
                    mentions=["step 'book_flight'", "duplicate step name", "unique name"])


def test_compensatable_step_without_compensation() -> None:
    assert_rejected(step("book_car", compensation=None),
                    mentions=["step 'book_car'", "has no compensation", "compensation='...'"])


def test_compensatable_step_after_the_pivot() -> None:
    assert_rejected(step("book_flight", kind=StepKind.PIVOT), step("book_hotel"),
                    mentions=["step 'book_hotel'", "after the pivot 'book_flight'",
                              "move it before the pivot"])


def test_more_than_one_pivot() -> None:
    assert_rejected(step("book_flight", kind=StepKind.PIVOT),
                    step("book_hotel", kind=StepKind.PIVOT),
                    mentions=["'book_flight', 'book_hotel' are all pivots", "at most one"])


def test_lambda_timeout_not_shorter_than_task_timeout() -> None:
    assert_rejected(step("book_flight", timeout_seconds=5, lambda_timeout_seconds=5),
                    mentions=["step 'book_flight'", "Lambda timeout 5s leaves less than 2s of the "
                              "task timeout 5s for a cold start",
                              "set lambda_timeout_seconds to at most 3"])


def test_lambda_timeout_must_leave_room_for_a_cold_start() -> None:
    # One second short of the task timeout was the old default: a cold start of over a second
    # timed the task out after its handler had succeeded.
    assert_rejected(step("book_flight", timeout_seconds=10, lambda_timeout_seconds=9),
                    mentions=["step 'book_flight'", "for a cold start",
                              "set lambda_timeout_seconds to at most 8"])
    assert Step("book_flight", action="trip.flights.book", compensation="trip.flights.cancel",
                timeout_seconds=10).effective_lambda_timeout == 8


def test_retry_worst_case_over_the_budget() -> None:
    greedy = RetryPolicy(max_attempts=20, interval_seconds=5, max_delay_seconds=60)
    message = assert_rejected(
        step("book_flight", timeout_seconds=30, retry=greedy),
        mentions=["step 'book_flight'", "action retry worst case", "over the step budget of 300s",
                  "lower max_attempts"],
    )
    worst = greedy.worst_case_seconds(30)
    assert f"{worst:.0f}s" in message


def test_worst_case_counts_every_attempt_and_capped_delay() -> None:
    policy = RetryPolicy(max_attempts=4, interval_seconds=2, backoff_rate=3, max_delay_seconds=10)
    assert policy.delays() == [2, 6, 10, 10]
    assert policy.worst_case_seconds(5) == 5 * 5 + 28


def test_retriable_step_with_a_compensation_or_before_the_pivot() -> None:
    assert_rejected(
        step("email_itinerary", kind=StepKind.RETRIABLE),
        step("book_flight", kind=StepKind.PIVOT),
        mentions=["retriable steps are never compensated", "retriable step before the pivot"],
    )


def test_every_problem_is_reported_at_once() -> None:
    message = assert_rejected(step("a", compensation=None), step("a"),
                              mentions=["has no compensation", "duplicate step name"])
    assert message.count("\n  - ") == 2


def test_bad_declaration_fails_cdk_synthesis() -> None:
    """The error surfaces while the CDK app is built, i.e. at ``cdk synth``."""
    app = App()
    stack = Stack(app, "Bad")
    with pytest.raises(SagaDeclarationError, match="step 'book_car'"):
        Saga(stack, "Trip", definition=declare(step("book_car", compensation=None)),
             code=lambda_.Code.from_inline("def handler(e, c): return e"))


def test_kind_may_be_a_string_and_a_bad_kind_is_refused() -> None:
    saga = declare(step("book_flight", kind="pivot"), step("mail", kind="retriable",
                                                            compensation=None))
    assert saga.pivot_index == 0
    assert saga.steps[1].kind is StepKind.RETRIABLE
    with pytest.raises(SagaDeclarationError, match="kind 'banana' is not one of"):
        step("book_flight", kind="banana")
    assert_rejected(step("a", kind="pivot"), step("b", kind="pivot"), mentions=["all pivots"])


def test_pivot_without_compensation() -> None:
    assert_rejected(step("book_car", kind=StepKind.PIVOT, compensation=None),
                    mentions=["step 'book_car'", "the pivot has no compensation"])


def test_non_transient_errors_in_an_action_retry() -> None:
    assert_rejected(step("book_flight", retry=RetryPolicy(transient_errors=("States.ALL",))),
                    mentions=["step 'book_flight'", "States.ALL", "list only transient errors"])
    assert_rejected(step("book_flight", retry=RetryPolicy(transient_errors=("States.Timeout",))),
                    mentions=["States.Timeout"])


def test_transient_step_error_is_always_retried() -> None:
    policy = RetryPolicy(transient_errors=("AirlineBusy",))
    assert {"AirlineBusy", "TransientStepError", "Lambda.TooManyRequestsException"} <= set(
        policy.retried_errors)


def test_lambda_limits_and_compensation_retries() -> None:
    assert_rejected(step("book_flight", timeout_seconds=1000, budget_seconds=100_000),
                    mentions=["over Lambda's maximum of 900s"])
    assert_rejected(step("book_flight", memory_size=64), mentions=["memory_size=64"])
    assert_rejected(step("book_flight", compensation_retry=RetryPolicy(max_attempts=0)),
                    mentions=["compensation_retry.max_attempts must be at least 1"])


def test_names_that_collide_once_generated() -> None:
    assert_rejected(step("step_1"), step("step1"),
                    mentions=["collides with step 'step_1'", "Step1"])
    assert_rejected(step("a"), step("a_failed"), mentions=["collides with step 'a'"])


def test_handlers_must_exist_in_the_code_directory(tmp_path: Path) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "book_flight.py").write_text("def do(ctx):\n    return {}\n")
    app = App()
    stack = Stack(app, "Missing")
    with pytest.raises(SagaDeclarationError) as caught:
        Saga(stack, "Trip", definition=declare(step("book_flight")), handlers_dir=tmp_path,
             code=lambda_.Code.from_asset(str(tmp_path)))
    message = str(caught.value)
    assert "handler 'shop.book_flight.undo': book_flight.py defines no 'undo'" in message
    assert "'shop.book_flight.do'" not in message


def test_retriable_steps_are_retried_for_hours_by_default() -> None:
    mail = step("mail", kind=StepKind.RETRIABLE, compensation=None)
    assert mail.effective_retry.max_attempts >= 100
    assert mail.effective_retry.worst_case_seconds(mail.timeout_seconds) > 3600
    assert mail.effective_budget == 6 * 3600


BAD_APP = """
import os, sys
sys.path.insert(0, {root!r})
os.environ["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_
from saga_kit.cdk import Saga, SagaDefinition, Step
app = App()
Saga(Stack(app, "Bad"), "Trip", code=lambda_.Code.from_inline("x"), definition=SagaDefinition(
    name="trip_booking", steps=[Step("book_car", action="trip.cars.book")]))
app.synth()
"""


def test_cdk_synth_of_an_app_with_a_bad_declaration_fails_with_the_message(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    app = tmp_path / "app.py"
    app.write_text(BAD_APP.format(root=root))
    run = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, check=False,
                         cwd=tmp_path)
    assert run.returncode != 0
    assert "SagaDeclarationError: saga 'trip_booking' is not valid" in run.stderr
    assert "step 'book_car': compensatable step has no compensation" in run.stderr


def test_worst_case_state_over_the_step_functions_limit_fails_synth() -> None:
    # Ten steps at the default caps: 32 KiB input + 160 KiB results + 40 KiB compensation
    # results + 98 KiB of failure records is over 256 KiB.
    steps = [step(f"step_{i}") for i in range(10)]
    message = assert_rejected(*steps, mentions=[
        "saga 'trip_booking'", "worst-case execution state is 330 KiB",
        "States.DataLimitExceeded", "Lower max_result_bytes of the largest steps",
        "by 90 KiB"])
    assert "'step_0'" in message
    # Per-step caps are configurable, and lower ones fit.
    smaller = [step(f"step_{i}", max_result_bytes=4096, max_compensation_result_bytes=1024)
               for i in range(10)]
    saga = SagaDefinition(name="trip_booking", steps=smaller)
    assert saga.worst_case_state_bytes <= 240 * 1024


def test_a_saga_of_only_retriable_steps_is_a_clear_declaration_error() -> None:
    with pytest.raises(SagaDeclarationError) as raised:
        SagaDefinition(name="notify_only", steps=[
            Step("send_email", kind=StepKind.RETRIABLE, action="notify.mail.send")])
    assert "saga 'notify_only'" in str(raised.value)
    assert "no step has a compensation" in str(raised.value)
