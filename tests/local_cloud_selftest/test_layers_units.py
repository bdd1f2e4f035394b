"""Layers without a deployment: layer versions published in moto, functions as plain objects."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from saga_kit.local_cloud import CodeConflictError, LocalCloudError
from saga_kit.local_cloud.lambda_runner import InProcessLambdaRunner
from saga_kit.local_cloud.layers import is_powertools_layer, module_level_imports
from saga_kit.local_cloud.moto_patches import DECLARED_LAYERS_ATTRIBUTE

REGION = "us-east-1"
POWERTOOLS = f"arn:aws:lambda:{REGION}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-x86_64:27"
KIT = {"lc_kit/__init__.py": "VERSION = 1\n",
       "lc_kit/step.py": "import json\nimport boto3\ndef h(e, c):\n    return 'own'\n"}


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _layer(name: str, files: dict[str, str]) -> str:
    """Publish a layer version in moto; returns its ARN."""
    published = boto3.client("lambda", region_name=REGION).publish_layer_version(
        LayerName=name, Content={"ZipFile": _zip(files)})
    return str(published["LayerVersionArn"])


def _function(name: str, code: dict[str, str], handler: str, layers: list[str]) -> Any:
    """The attributes of moto's LambdaFunction that the runner reads."""
    return SimpleNamespace(
        function_name=name, code_bytes=_zip(code), code_digest="", code={}, handler=handler,
        run_time="python3.14", timeout=3, memory_size=128, version="$LATEST",
        function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:{name}",
        logs_group_name=f"/aws/lambda/{name}", region=REGION, account_id="123456789012",
        environment_vars={}, **{DECLARED_LAYERS_ATTRIBUTE: layers},
    )


@pytest.fixture()
def runner(monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessLambdaRunner]:
    import moto

    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    with moto.mock_aws():
        running = InProcessLambdaRunner(REGION)
        with running.installed():
            yield running


def _run(runner: InProcessLambdaRunner, fn: Any) -> tuple[dict[str, Any], bool]:
    payload, errored, _ = runner.invoke(fn, {})
    return json.loads(payload), errored


def test_module_level_imports_are_what_always_runs() -> None:
    source = (
        "from __future__ import annotations\n"
        "import os.path, lc_a.sub\n"
        "from lc_b.x import y\n"
        "from . import sibling\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import lc_typing_only\n"
        "try:\n    import lc_optional\nexcept ImportError:\n    lc_optional = None\n"
        "def f():\n    import lc_lazy\n"
    )
    assert module_level_imports(source) == {"__future__", "os", "lc_a", "lc_b", "typing"}
    assert module_level_imports("def broken(:\n") == set()


def test_powertools_layer_arns() -> None:
    assert is_powertools_layer(POWERTOOLS)
    assert is_powertools_layer(POWERTOOLS.replace("python314-x86_64:27", "python311-arm64:3"))
    assert not is_powertools_layer(POWERTOOLS.replace("017000801446", "123456789012"))
    assert not is_powertools_layer(POWERTOOLS.replace("PythonV3", "PythonV2"))


def test_the_kit_in_its_code_and_in_its_layer_is_no_conflict(runner: InProcessLambdaRunner) -> None:
    # The kit's own functions: the kit as their code zip, and the same files as their layer.
    layer = _layer("lc-runtime", {f"python/{path}": text for path, text in KIT.items()})
    own = _function("own", KIT, "lc_kit.step.h", [POWERTOOLS, layer])
    team = _function("team", {"lc_team/__init__.py": "import lc_kit.step\ndef h(e, c):\n    return 'team'\n"},
                     "lc_team.h", [POWERTOOLS, layer])
    assert _run(runner, own) == ("own", False)
    assert _run(runner, team) == ("team", False)

    other = _layer("lc-other", {"python/lc_kit/__init__.py": "VERSION = 2\n"})
    with pytest.raises(CodeConflictError, match=rf"layer {other} .* 'lc_kit'"):
        runner.prepare(_function("stale", {"lc_x.py": ""}, "lc_x.h", [other]))


def test_a_layer_in_site_packages_layout(runner: InProcessLambdaRunner) -> None:
    layer = _layer("lc-pip", {"python/lib/python3.14/site-packages/lc_pip/__init__.py": "NAME = 'pip'\n"})
    fn = _function("pip", {"lc_uses_pip.py": "import lc_pip\ndef h(e, c):\n    return lc_pip.NAME\n"},
                   "lc_uses_pip.h", [layer])
    assert _run(runner, fn) == ("pip", False)


def test_powertools_comes_from_its_layer_only(runner: InProcessLambdaRunner) -> None:
    code = {"lc_pt/__init__.py": "", "lc_pt/app.py": (
        "from aws_lambda_powertools import Logger\nimport boto3\n"
        "def h(e, c):\n    return type(Logger()).__name__\n")}
    assert _run(runner, _function("with", code, "lc_pt.app.h", [POWERTOOLS])) == ("Logger", False)

    payload, errored = _run(runner, _function("without", code, "lc_pt.app.h", []))
    assert errored
    assert payload["errorType"] == "Runtime.ImportModuleError"
    assert payload["errorMessage"] == (
        "Unable to import module 'lc_pt.app': No module named 'aws_lambda_powertools'")


def test_a_handler_package_only_a_layer_has(runner: InProcessLambdaRunner) -> None:
    layer = _layer("lc-handlers", {"python/lc_in_layer/__init__.py": "import requests_lc_missing\n"
                                                                    "def h(e, c):\n    return 1\n"})
    payload, errored = _run(runner, _function("in-layer", {"other.py": ""}, "lc_in_layer.h", [layer]))
    assert errored and payload["errorMessage"].endswith("No module named 'requests_lc_missing'")
    payload, errored = _run(runner, _function("no-layer", {"other.py": ""}, "lc_in_layer.h", []))
    assert errored and payload["errorMessage"].endswith("No module named 'lc_in_layer'")


def test_an_unknown_layer_is_a_harness_error(runner: InProcessLambdaRunner) -> None:
    unknown = f"arn:aws:lambda:{REGION}:999999999999:layer:SomeoneElses:4"
    fn = _function("orphan", {"lc_orphan.py": "def h(e, c):\n    return 1\n"}, "lc_orphan.h", [unknown])
    with pytest.raises(LocalCloudError, match=rf"function orphan declares layer {unknown}"):
        runner.prepare(fn)
    with pytest.raises(LocalCloudError):
        runner.invoke(fn, {})
    assert runner.harness_errors


def test_the_runner_puts_motos_cloudformation_handler_back() -> None:
    from moto.awslambda.models import LambdaFunction

    before = LambdaFunction.__dict__["create_from_cloudformation_json"]
    with InProcessLambdaRunner(REGION).installed():
        assert LambdaFunction.__dict__["create_from_cloudformation_json"] is not before
    assert LambdaFunction.__dict__["create_from_cloudformation_json"] is before
