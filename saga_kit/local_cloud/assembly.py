"""Reading a synthesized CDK cloud assembly and publishing its file assets.

What ``cdk deploy`` does before it calls CloudFormation, reduced to what moto needs: find the
stack's template and asset manifest through ``manifest.json``, and put each file asset into its
destination bucket (zipping directory assets, uploading file assets as they are).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saga_kit.local_cloud.errors import LocalCloudError

STACK_ARTIFACT = "aws:cloudformation:stack"
ASSET_MANIFEST_ARTIFACT = "cdk:asset-manifest"
NESTED_ASSEMBLY_ARTIFACT = "cdk:cloud-assembly"
DEFAULT_BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"


@dataclass(frozen=True)
class FileAsset:
    """One file asset destination: where the bytes come from and where they go."""

    source_path: Path
    packaging: str
    bucket_name: str
    object_key: str


@dataclass(frozen=True)
class StackArtifact:
    """What LocalCloud needs to deploy one stack of a cloud assembly."""

    artifact_id: str
    stack_name: str
    template: dict[str, Any]
    assembly_dir: Path
    asset_manifest: Path | None
    bootstrap_parameter: str
    required_bootstrap_version: int


def resolve_placeholders(value: str, account_id: str, region: str, partition: str = "aws") -> str:
    """Replace the ``${AWS::...}`` placeholders that asset manifests use with concrete values."""
    return (
        value.replace("${AWS::AccountId}", account_id)
        .replace("${AWS::Region}", region)
        .replace("${AWS::Partition}", partition)
    )


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LocalCloudError(f"{path} does not exist: is this a synthesized cloud assembly?") from exc


def _stack_artifacts(assembly_dir: Path) -> list[tuple[Path, str, dict[str, Any], dict[str, Any]]]:
    """(assembly dir, artifact id, artifact, all artifacts) for every stack, nested stages included."""
    manifest = _load_json(assembly_dir / "manifest.json")
    artifacts: dict[str, dict[str, Any]] = manifest.get("artifacts", {})
    found: list[tuple[Path, str, dict[str, Any], dict[str, Any]]] = []
    for artifact_id, artifact in artifacts.items():
        if artifact.get("type") == STACK_ARTIFACT:
            found.append((assembly_dir, artifact_id, artifact, artifacts))
        elif artifact.get("type") == NESTED_ASSEMBLY_ARTIFACT:
            nested = artifact.get("properties", {}).get("directoryName")
            if nested:
                found.extend(_stack_artifacts(assembly_dir / nested))
    return found


def load_stack(assembly_dir: Path, stack_name: str) -> StackArtifact:
    """Find ``stack_name`` (artifact id or deployed stack name) in the assembly.

    Falls back to ``<stack>.template.json`` / ``<stack>.assets.json`` beside each other when the
    directory has no ``manifest.json`` entry for it.
    """
    assembly_dir = Path(assembly_dir)
    candidates = [
        entry
        for entry in _stack_artifacts(assembly_dir)
        if stack_name in (entry[1], entry[2].get("properties", {}).get("stackName"))
    ]
    if not candidates:
        template_path = assembly_dir / f"{stack_name}.template.json"
        assets_path = assembly_dir / f"{stack_name}.assets.json"
        if not template_path.exists():
            names = sorted(entry[1] for entry in _stack_artifacts(assembly_dir))
            raise LocalCloudError(
                f"stack {stack_name!r} is not in the cloud assembly {assembly_dir} "
                f"(stacks there: {', '.join(names) or 'none'})"
            )
        return StackArtifact(
            artifact_id=stack_name,
            stack_name=stack_name,
            template=_load_json(template_path),
            assembly_dir=assembly_dir,
            asset_manifest=assets_path if assets_path.exists() else None,
            bootstrap_parameter=DEFAULT_BOOTSTRAP_PARAMETER,
            required_bootstrap_version=0,
        )
    if len(candidates) > 1:
        ids = ", ".join(entry[1] for entry in candidates)
        raise LocalCloudError(f"stack name {stack_name!r} matches several artifacts: {ids}")

    directory, artifact_id, artifact, artifacts = candidates[0]
    properties = artifact.get("properties", {})
    asset_manifest: Path | None = None
    bootstrap_parameter = properties.get("bootstrapStackVersionSsmParameter", DEFAULT_BOOTSTRAP_PARAMETER)
    required = int(properties.get("requiresBootstrapStackVersion", 0))
    for dependency in artifact.get("dependencies", []):
        dep = artifacts.get(dependency, {})
        if dep.get("type") == ASSET_MANIFEST_ARTIFACT:
            asset_manifest = directory / dep["properties"]["file"]
            required = max(required, int(dep["properties"].get("requiresBootstrapStackVersion", 0)))
    return StackArtifact(
        artifact_id=artifact_id,
        stack_name=properties.get("stackName", artifact_id),
        template=_load_json(directory / properties["templateFile"]),
        assembly_dir=directory,
        asset_manifest=asset_manifest,
        bootstrap_parameter=bootstrap_parameter,
        required_bootstrap_version=required,
    )


def file_assets(
    stack: StackArtifact, account_id: str, region: str, partition: str = "aws"
) -> list[FileAsset]:
    """Every file asset destination of the stack, placeholders resolved.

    Docker image assets are refused: LocalCloud runs only zip-packaged Python code.
    """
    if stack.asset_manifest is None:
        return []
    manifest = _load_json(stack.asset_manifest)
    if manifest.get("dockerImages"):
        names = ", ".join(sorted(manifest["dockerImages"]))
        raise LocalCloudError(f"Docker image assets are not supported by LocalCloud: {names}")
    assets: list[FileAsset] = []
    for asset_id, asset in manifest.get("files", {}).items():
        source = asset.get("source", {})
        if "path" not in source:
            raise LocalCloudError(
                f"asset {asset_id} has no source path (executable assets are not supported)"
            )
        for destination in asset.get("destinations", {}).values():
            assets.append(
                FileAsset(
                    source_path=stack.asset_manifest.parent / source["path"],
                    packaging=source.get("packaging", "file"),
                    bucket_name=resolve_placeholders(
                        destination["bucketName"], account_id, region, partition
                    ),
                    object_key=resolve_placeholders(destination["objectKey"], account_id, region, partition),
                )
            )
    return assets


def zip_directory(directory: Path) -> bytes:
    """Zip a directory the way the CDK CLI does for ``zip`` assets: paths relative to its root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def asset_bytes(asset: FileAsset) -> bytes:
    """The bytes to upload for an asset: a zipped directory, or a file as it is."""
    path = asset.source_path
    if not path.exists():
        raise LocalCloudError(f"asset source {path} does not exist")
    if asset.packaging in ("zip", "zipdirectory") and path.is_dir():
        return zip_directory(path)
    if asset.packaging in ("zip", "zipdirectory", "file") and path.is_file():
        return path.read_bytes()
    raise LocalCloudError(f"asset {path} has packaging {asset.packaging!r}, which is not supported")
