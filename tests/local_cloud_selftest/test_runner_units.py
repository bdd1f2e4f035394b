"""The Lambda runner's parts that need no deployment: env overlay, code conflicts, timeouts."""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from types import SimpleNamespace
from typing import Any

import pytest

from saga_kit.local_cloud import CodeConflictError
from saga_kit.local_cloud.env_overlay import installed_thread_local_environ
from saga_kit.local_cloud.lambda_runner import InProcessLambdaRunner


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _function(name: str, code: bytes, handler: str, timeout: float = 3) -> Any:
    """The attributes of moto's LambdaFunction that the runner reads."""
    return SimpleNamespace(
        function_name=name,
        code_bytes=code,
        code_digest="",
        code={},
        handler=handler,
        run_time="python3.11",
        timeout=timeout,
        memory_size=128,
        version="$LATEST",
        function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        logs_group_name=f"/aws/lambda/{name}",
        region="us-east-1",
        environment_vars={"GREETING": name},
    )


def test_env_overlay_is_per_thread() -> None:
    original = os.environ
    seen: dict[str, tuple[str | None, str | None]] = {}
    both_inside = threading.Barrier(2)

    with installed_thread_local_environ() as environ:

        def worker(value: str) -> None:
            with environ.overlay({"LC_SELFTEST_VAR": value}):
                both_inside.wait(timeout=5)
                seen[value] = (os.environ.get("LC_SELFTEST_VAR"), os.getenv("LC_SELFTEST_VAR"))
                both_inside.wait(timeout=5)

        threads = [threading.Thread(target=worker, args=(v,)) for v in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert "LC_SELFTEST_VAR" not in os.environ
    assert seen == {"a": ("a", "a"), "b": ("b", "b")}
    assert os.environ is original


def test_same_package_with_different_contents_is_refused() -> None:
    runner = InProcessLambdaRunner("us-east-1")
    shared_v1 = {"lc_shared_pkg/__init__.py": "VERSION = 1\n"}
    one = _function("one", _zip({**shared_v1, "lc_one.py": "def h(e, c):\n    return 1\n"}), "lc_one.h")
    same = _function("same", _zip({**shared_v1, "lc_two.py": "def h(e, c):\n    return 2\n"}), "lc_two.h")
    other = _function("other", _zip({"lc_shared_pkg/__init__.py": "VERSION = 2\n"}), "lc_shared_pkg.h")
    with runner.installed():
        runner.prepare(one)
        runner.prepare(same)  # identical copies of a shared package are fine
        with pytest.raises(CodeConflictError, match="lc_shared_pkg"):
            runner.prepare(other)


def test_results_errors_and_overrun_look_like_lambda() -> None:
    runner = InProcessLambdaRunner("us-east-1")
    code = _zip(
        {
            "lc_units/__init__.py": "",
            "lc_units/app.py": (
                "import os, time\n"
                "class Boom(Exception):\n    pass\n"
                "def ok(event, context):\n"
                "    return {'greeting': os.environ['GREETING'], 'event': event}\n"
                "def fail(event, context):\n    raise Boom('no')\n"
                "def slow(event, context):\n    time.sleep(0.2)\n"
            ),
        }
    )
    with runner.installed():
        payload, errored, _ = runner.invoke(_function("units", code, "lc_units.app.ok"), {"n": 1})
        assert not errored and json.loads(payload) == {"greeting": "units", "event": {"n": 1}}

        payload, errored, _ = runner.invoke(_function("units", code, "lc_units.app.fail"), {})
        assert errored and json.loads(payload)["errorType"] == "Boom"

        slow = _function("units", code, "lc_units.app.slow", timeout=0.05)
        payload, errored, _ = runner.invoke(slow, {})
        assert errored and json.loads(payload)["errorType"] == "Sandbox.Timedout"

        payload, errored, _ = runner.invoke(_function("units", code, "lc_units.app.nope"), {})
        assert errored and json.loads(payload)["errorType"] == "Runtime.HandlerNotFound"
    assert runner.running == 0
