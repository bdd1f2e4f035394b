"""``saga prometheus``: the Prometheus artifacts of a CDK app's sagas.

It reads the sagas from a cloud assembly (``--assembly``, or one synthesized from ``--app`` the
way ``saga serve`` does it) and writes the prometheus/cloudwatch_exporter configuration, the alert
rules, their ``promtool test rules`` file and a Grafana dashboard (:mod:`saga_kit.prometheus`).
The generators are imported when the command runs, so the other ``saga`` commands start as
quickly as before.
"""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["prometheus", "register"]


OUT_OPTION = typer.Option(..., "--out", help="Directory to write the four files into.")
APP_OPTION = typer.Option(
    Path("app.py"), "--app",
    help="The CDK app: a Python file, synthesized as the cdk CLI does (cdk.json's context "
         "applied).")
ASSEMBLY_OPTION = typer.Option(
    None, "--assembly", help="Read this synthesized cloud assembly (a cdk.out directory) "
                             "instead of synthesizing --app.")
REGION_OPTION = typer.Option(
    None, "--region", help="AWS region written into the exporter configuration (default: "
                           "none, the exporter then uses the AWS SDK's default region).")


def prometheus(
    out: Path = OUT_OPTION,
    app_file: Path = APP_OPTION,
    assembly: Path | None = ASSEMBLY_OPTION,
    region: str | None = REGION_OPTION,
) -> None:
    """Write the CloudWatch exporter configuration, Prometheus alert rules (with their promtool
    tests) and a Grafana dashboard for the app's sagas.

    Run it again whenever a saga, a step or a queue changes: the files are generated from
    the synthesized templates, never edited (docs/prometheus.md: running the exporter).
    """
    from saga_kit.cli.main import _fail
    from saga_kit.cli.serve import ServeError, SynthError, cloud_assembly
    from saga_kit.prometheus import AssemblyError, sagas_from_assembly, write_artifacts

    try:
        with cloud_assembly(app_file, assembly) as assembly_dir:
            sagas = sagas_from_assembly(assembly_dir)
    except SynthError as error:
        _fail(str(error), code=1)
    except (ServeError, AssemblyError) as error:
        _fail(str(error))
    if not sagas:
        _fail(f"the app synthesizes no Saga Kit saga (no Lambda function of {assembly or app_file} "
              "has SAGA_TYPE in its environment)")
    written = write_artifacts(sagas, out, region=region)
    listed = ", ".join(f"{s.name} ({s.stack}, namespace {s.namespace})" for s in sagas)
    typer.echo(f"sagas: {listed}")
    for path in written:
        typer.echo(f"wrote {path}")
    rules = next(p for p in written if p.name.endswith(".rules.yml"))
    tests = next(p for p in written if p.name.endswith(".test.yml"))
    typer.echo(f"check: promtool check rules {rules} && promtool test rules {tests}")


def register(app: typer.Typer) -> None:
    """Adds ``saga prometheus`` to the ``saga`` command."""
    app.command("prometheus")(prometheus)
