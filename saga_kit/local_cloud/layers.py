"""What a Lambda function can import: its code zip, its layers, the runtime, the standard library.

On AWS a Python function imports from its code (``/var/task``), from the ``python/`` directory of
each layer it declares (``/opt/python``), from the Lambda Python runtime and from the standard
library; a package found nowhere else fails the import with ``Runtime.ImportModuleError``. In
process every function shares one ``sys.path``, and the test environment has everything
installed, so a function that forgot a layer would still import what the layer provides. This
module holds the rules the runner checks instead (see :class:`ImportCheck`), and the helpers that
read code zips for them.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Account that publishes the AWS-managed "Powertools for AWS Lambda (Python)" layers.
POWERTOOLS_LAYER_ACCOUNT = "017000801446"
_POWERTOOLS_LAYER_ARN = re.compile(
    rf"^arn:aws[\w-]*:lambda:[\w-]+:{POWERTOOLS_LAYER_ACCOUNT}:layer:AWSLambdaPowertoolsPythonV3[\w-]*:\d+$"
)
#: Top-level packages the AWS-managed Powertools V3 layer ships (Powertools with its ``all``
#: extras). moto does not have that layer; these come from the test environment instead.
POWERTOOLS_LAYER_PROVIDES = frozenset(
    {
        "aws_lambda_powertools",
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
        "aws_xray_sdk",
        "wrapt",
        "jmespath",
        "fastjsonschema",
    }
)
#: Top-level packages the Lambda Python runtime itself provides to every function.
LAMBDA_RUNTIME_PROVIDES = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six", "awslambdaric"}
)
#: Suffixes of native extension modules, which count as importable top-level names.
NATIVE_SUFFIXES = (".so", ".pyd")
#: Where a layer's Python code lives in its zip: ``python/`` and, for pip-installed layouts,
#: ``python/lib/pythonX.Y/site-packages/`` (Lambda puts both on ``sys.path``).
_LAYER_SITE_PACKAGES = re.compile(r"^python/lib/python3\.\d+/site-packages/")


def is_powertools_layer(arn: str) -> bool:
    """Whether ``arn`` is a version of the AWS-managed Powertools for AWS Lambda (Python) V3 layer."""
    return bool(_POWERTOOLS_LAYER_ARN.match(arn))


def layer_arn(value: Any) -> str:
    """The ARN of one entry of a function's ``Layers`` property, as moto's CloudFormation resolved it.

    ``Fn::Join`` gives a string; a ``Ref`` to a ``AWS::Lambda::LayerVersion`` of the same template
    gives moto's ``LayerVersion`` object itself (it has no physical resource id), whose ``arn``
    is what CloudFormation's ``Ref`` returns on AWS.
    """
    arn = getattr(value, "arn", value)
    if not isinstance(arn, str):
        raise TypeError(f"cannot read a layer ARN from {value!r}")
    return arn


def layer_roots(archive: zipfile.ZipFile) -> list[str]:
    """The directories of a layer zip that Lambda puts on ``sys.path``, as zip member prefixes."""
    roots = {"python/"}
    for name in archive.namelist():
        match = _LAYER_SITE_PACKAGES.match(name)
        if match:
            roots.add(match.group(0))
    return sorted(roots)


def top_level_names(archive: zipfile.ZipFile, root: str = "") -> dict[str, str]:
    """Importable top-level names under ``root`` in a zip, each with a hash of the files under it.

    A directory counts when it holds Python code somewhere below; single files count when they
    are modules (``.py``) or native extensions. ``__pycache__`` and ``.pyc`` files are ignored, and
    file names are hashed relative to ``root``, so that byte-identical sources compare equal
    whether they come from a function's code zip (``saga_kit/...``) or a layer
    (``python/saga_kit/...``).
    """
    members: dict[str, list[tuple[str, zipfile.ZipInfo]]] = {}
    has_code: set[str] = set()
    for info in archive.infolist():
        if info.is_dir() or not info.filename.startswith(root):
            continue
        relative = info.filename[len(root):]
        if "__pycache__" in relative.split("/") or relative.endswith(".pyc"):
            continue
        if root == "python/" and _LAYER_SITE_PACKAGES.match(info.filename):
            continue  # its own root
        first, sep, _rest = relative.partition("/")
        if sep:
            name = first
        elif first.endswith(".py"):
            name = first[: -len(".py")]
        elif first.endswith(NATIVE_SUFFIXES):
            name = first.split(".", 1)[0]
        else:
            continue
        if not name.isidentifier():
            continue
        members.setdefault(name, []).append((relative, info))
        if relative.endswith((".py", *NATIVE_SUFFIXES)):
            has_code.add(name)
    hashes: dict[str, str] = {}
    for name in has_code:
        digest = hashlib.sha256()
        for relative, info in sorted(members[name], key=lambda item: item[0]):
            digest.update(relative.encode())
            digest.update(b"\0")
            digest.update(archive.read(info))
            digest.update(b"\0")
        hashes[name] = digest.hexdigest()
    return hashes


def belongs_to(relative: str, name: str) -> bool:
    """Whether a path (relative to a zip root) is (part of) the top-level module or package ``name``."""
    first, sep, _ = relative.partition("/")
    if sep:
        return first == name
    return first == f"{name}.py" or (first.endswith(NATIVE_SUFFIXES) and first.split(".", 1)[0] == name)


def module_level_imports(source: str) -> set[str]:
    """Top-level names a module's own body imports absolutely (``import a.b``, ``from a import b``).

    Only statements directly in the module body count: those run whenever the module is
    imported. Imports inside functions, ``if TYPE_CHECKING:`` blocks and ``try/except
    ImportError`` fallbacks may never run, so counting them could fail a function that works on
    AWS. Relative imports stay inside the package. A file that does not parse yields nothing
    (its real import would fail on its own).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def package_imports(directory: Path, name: str) -> set[str]:
    """What the ``.py`` files of top-level package (or module) ``name`` under ``directory`` import
    at module level, as top-level names, without ``name`` itself."""
    package = directory / name
    files = sorted(package.rglob("*.py")) if package.is_dir() else [directory / f"{name}.py"]
    found: set[str] = set()
    for path in files:
        if "__pycache__" in path.parts or not path.is_file():
            continue
        found |= module_level_imports(path.read_text(encoding="utf-8", errors="replace"))
    found.discard(name)
    return found


@dataclass(frozen=True)
class Provider:
    """One place a function imports from: a directory (code zip root or layer root) and the
    top-level names it provides; ``directory`` is ``None`` for the Powertools layer."""

    label: str
    names: frozenset[str]
    directory: Path | None = None


class ImportCheck:
    """Which top-level name, if any, a function's handler package imports that nothing provides.

    The handler's top-level package (``order_fulfillment`` for
    ``order_fulfillment.inventory.reserve``) is looked up in the providers in Lambda's order
    (code, then layers); every name its ``.py`` files import at module level must be provided by
    one of the providers, the standard library or the Lambda Python runtime. Only that package
    is scanned, not the packages it imports: a vendored library often has a module importing an
    optional dependency (pydantic's ``mypy`` plugin imports ``mypy``) that is never imported.
    """

    def __init__(self, providers: Iterable[Provider]) -> None:
        self.providers = list(providers)

    def provided(self) -> set[str]:
        """Every top-level name the function can import."""
        names: set[str] = set(sys.stdlib_module_names) | LAMBDA_RUNTIME_PROVIDES
        for provider in self.providers:
            names |= provider.names
        return names

    def missing(self, handler_module: str) -> str | None:
        """The first name (sorted) that the handler's package needs and nothing provides."""
        top = handler_module.partition(".")[0]
        available = self.provided()
        if top not in available:
            return top
        home = next((p for p in self.providers if top in p.names and p.directory is not None), None)
        if home is None or home.directory is None:
            return None  # the runtime, the standard library or Powertools: nothing to scan
        for name in sorted(package_imports(home.directory, top)):
            if name not in available:
                return name
        return None
