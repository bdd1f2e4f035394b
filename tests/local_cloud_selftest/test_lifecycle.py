"""start() and stop() leave the process as they found it, also when deployment fails."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from selftest_app import STACK_NAME

from saga_kit.local_cloud import DeployError, LocalCloud


def _process_state() -> list[Any]:
    from moto.awslambda.models import LambdaFunction
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.cloudformation import parsing
    from moto.stepfunctions import models as sfn_models
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    return [
        type(os.environ),
        dict(os.environ),
        list(sys.path),
        LambdaFunction.__dict__["_invoke_lambda"],
        LambdaSimpleBackend.__dict__["invoke"],
        sfn_models.stepfunctions_backends,
        retrier_decl.time,
        parsing.parse_and_create_resource,
        sorted(name for name in sys.modules if name.startswith("selftest_handler")),
    ]


def test_stop_restores_everything(selftest_assembly: Path) -> None:
    before = _process_state()
    with LocalCloud(selftest_assembly, STACK_NAME) as cloud:
        assert (
            cloud.client("lambda").invoke(
                FunctionName=cloud.physical_id("Worker"), Payload=json.dumps({"id": "lifecycle"})
            )["StatusCode"]
            == 200
        )
        assert _process_state() != before
    assert _process_state() == before


def test_failed_deploy_names_the_resource_and_cleans_up(selftest_assembly: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(selftest_assembly, broken)
    template_path = broken / f"{STACK_NAME}.template.json"
    template = json.loads(template_path.read_text())
    machine = next(k for k in template["Resources"] if k.startswith("Machine") and "Role" not in k)
    template["Resources"][machine]["Properties"]["DefinitionString"] = '{"StartAt": "Nowhere"}'
    template_path.write_text(json.dumps(template))
    before = _process_state()

    with pytest.raises(DeployError, match=rf"{machine} \(AWS::StepFunctions::StateMachine\)"):
        LocalCloud(broken, STACK_NAME).start()
    assert _process_state() == before


def test_overlapping_clouds_share_one_moto(selftest_assembly: Path) -> None:
    before = _process_state()
    with LocalCloud(selftest_assembly, STACK_NAME) as first:
        with pytest.raises(DeployError, match="already exists"):
            LocalCloud(selftest_assembly, STACK_NAME).start()
        payload = first.client("lambda").invoke(
            FunctionName=first.physical_id("Worker"), Payload=json.dumps({"id": "overlap"})
        )["Payload"]
        assert json.loads(payload.read()) == {"id": "overlap"}  # the failed start undid nothing
    assert _process_state() == before
