"""IAM in the local cloud: every in-process invocation acts as its function's role, and the
requests it makes are authenticated and authorized against that role's policies.

On AWS a function's code signs its requests with its execution role's temporary credentials,
and a missing grant fails with ``AccessDenied``. In process, without this, every request is
signed with the harness's fake keys and moto lets it through, so a construct that forgets a
grant passes every local test. :class:`IamEnforcer` closes that gap in three parts:

1. **Credentials.** The runner asks moto's STS to assume the function's role (once per role and
   function) and puts the temporary keys into the invocation's environment overlay, as Lambda
   does (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``).
2. **Signing.** boto3 clients are shared across functions in one process (the kit caches one
   client per service, an action and its compensation live in one module, and boto3's default
   session caches the first credentials it finds). So botocore's
   ``RequestSigner.get_auth_instance`` is wrapped: a request made in a thread that is running an
   invocation is signed with that invocation's credentials, whatever client makes it. Invocations
   nest (the redrive Lambda invokes compensations synchronously), so each thread keeps a stack.
   Outside invocations, credentials this enforcer issued are replaced by the harness's fake keys,
   so a client that picked up a function's keys cannot make the harness's own requests fail.
3. **Authorization.** moto's access control (``ActionAuthenticatorMixin``) is global: switched on,
   it would reject the harness's fake keys, and it authorizes most services against resource
   ``"*"``, so a grant scoped to a table ARN would deny everything. Its
   ``_authenticate_and_authorize_action`` is wrapped instead: a request signed with credentials
   this enforcer issued has its signature checked by moto, then each (action, resource) it
   touches (see :func:`requested_permissions`) is evaluated against the role's policies here;
   every other request (harness, tests, CLI, Step Functions' own service integrations, which run
   as moto's fixed keys) goes to moto's original, which stays off unless someone switched it on.

What is and is not enforced is listed in ``saga_kit/local_cloud/README.md``.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from saga_kit.local_cloud._patching import patched
from saga_kit.local_cloud.errors import LocalCloudError

#: How long moto's STS makes the temporary credentials valid (moto does not check expiry).
_SESSION_SECONDS = 43_200
#: What the harness signs with (the values ``LocalCloud`` puts in the environment).
HARNESS_ACCESS_KEY = "testing"
_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/")

#: moto's action name -> the IAM action a policy must allow, per signing service.
_ACTION_ALIASES: dict[str, dict[str, str]] = {
    "lambda": {"Invoke": "InvokeFunction", "InvokeWithResponseStream": "InvokeFunction"},
    "sqs": {
        "SendMessageBatch": "SendMessage",
        "DeleteMessageBatch": "DeleteMessage",
        "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
    },
    "s3": {"HeadBucket": "ListBucket"},
}
#: The IAM action of each kind of ``TransactWriteItems`` / ``TransactGetItems`` entry: AWS has
#: no ``dynamodb:TransactWriteItems`` permission, it checks each item's own action on its table.
_TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
#: DynamoDB actions whose IAM resource is ``*``.
_DYNAMODB_ACCOUNT_ACTIONS = frozenset(
    {"ListTables", "DescribeLimits", "DescribeEndpoints", "ListBackups", "ListGlobalTables",
     "ListExports", "ListImports", "ListStreams"}
)
#: Step Functions request fields naming the resource, most specific first.
_STATES_RESOURCE_FIELDS = ("executionArn", "stateMachineArn", "activityArn", "mapRunArn", "resourceArn")


@dataclass(frozen=True)
class RoleCredentials:
    """Temporary credentials of one function's execution role, from moto's STS."""

    role_arn: str
    #: The assumed-role principal AWS names in errors: ``arn:aws:sts::<acct>:assumed-role/R/S``.
    principal_arn: str
    access_key_id: str
    secret_access_key: str
    session_token: str

    def environment(self) -> dict[str, str]:
        """The variables Lambda sets for the execution role's credentials."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }

    @functools.cached_property
    def botocore(self) -> Any:
        """The credentials as botocore's signer takes them."""
        from botocore.credentials import Credentials

        return Credentials(self.access_key_id, self.secret_access_key, self.session_token)


@dataclass(frozen=True)
class AccessDenial:
    """One request the enforcer refused: who, which action, on what (``None``: not resolved)."""

    principal_arn: str
    action: str
    resource: str | None
    explicit_deny: bool


# -- which permissions a request needs ------------------------------------------------------


def _json_body(response: Any) -> dict[str, Any]:
    raw = getattr(response, "raw_body", None) or b""
    try:
        body = json.loads(raw or b"{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _dynamodb_permissions(action: str, body: dict[str, Any], arn_prefix: str) -> list[tuple[str, str | None]]:
    def table_arn(name: str) -> str:
        return name if name.startswith("arn:") else f"{arn_prefix}:table/{name}"

    if action in ("TransactWriteItems", "TransactGetItems"):
        found: list[tuple[str, str | None]] = []
        for entry in body.get("TransactItems") or []:
            for kind, operation in (entry or {}).items():
                item_action = _TRANSACT_ITEM_ACTIONS.get(kind)
                if item_action and isinstance(operation, dict) and operation.get("TableName"):
                    found.append((f"dynamodb:{item_action}", table_arn(str(operation["TableName"]))))
        return found
    if action in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{action}", table_arn(str(name))) for name in body.get("RequestItems") or {}]
    if body.get("TableName"):
        resource = table_arn(str(body["TableName"]))
        if body.get("IndexName"):
            resource += f"/index/{body['IndexName']}"
        return [(f"dynamodb:{action}", resource)]
    for field_name in ("StreamArn", "ResourceArn", "BackupArn"):
        if body.get(field_name):
            return [(f"dynamodb:{action}", str(body[field_name]))]
    if action in _DYNAMODB_ACCOUNT_ACTIONS:
        return [(f"dynamodb:{action}", "*")]
    return [(f"dynamodb:{action}", None)]


def _states_permissions(action: str, body: dict[str, Any]) -> list[tuple[str, str | None]]:
    for field_name in _STATES_RESOURCE_FIELDS:
        if body.get(field_name):
            return [(f"states:{action}", str(body[field_name]))]
    if action.startswith("List"):
        return [(f"states:{action}", "*")]
    return [(f"states:{action}", None)]  # e.g. SendTaskSuccess: a task token, not an ARN


def _lambda_permissions(action: str, response: Any, partition: str, region: str,
                        account: str) -> list[tuple[str, str | None]]:
    iam_action = f"lambda:{action}"
    url = urlparse(getattr(response, "uri", "") or "")
    match = re.search(r"/functions/([^/]+)", unquote(url.path))
    if not match:
        return [(iam_action, "*" if action.startswith("List") else None)]
    name = match.group(1)
    if name.startswith("arn:"):
        arn = name
    elif ":function:" in name:  # "123456789012:function:name[:qualifier]"
        arn = f"arn:{partition}:lambda:{region}:{name}"
    else:  # "name" or "name:qualifier"
        arn = f"arn:{partition}:lambda:{region}:{account}:function:{name}"
    qualifier = (parse_qs(url.query).get("Qualifier") or [""])[0]
    if qualifier and arn.count(":") == 6:
        arn += f":{qualifier}"
    return [(iam_action, arn)]


def requested_permissions(service: str, action: str, response: Any, moto_resource: str,
                          partition: str, region: str, account: str) -> list[tuple[str, str | None]]:
    """The (IAM action, resource ARN) pairs a request needs, as AWS authorizes it.

    The resource is ``"*"`` for account-level actions (``ListTables``), and ``None`` when it is
    not resolved here (services other than DynamoDB, Step Functions, Lambda, SQS, S3, IAM and
    STS; or a request naming no resource ARN, such as ``SendTaskSuccess``'s task token): then
    only the action is checked (see :func:`is_allowed`).
    """
    action = _ACTION_ALIASES.get(service, {}).get(action, action)
    if service == "dynamodb":
        return _dynamodb_permissions(action, _json_body(response),
                                     f"arn:{partition}:dynamodb:{region}:{account}")
    if service == "states":
        return _states_permissions(action, _json_body(response))
    if service == "lambda":
        return _lambda_permissions(action, response, partition, region, account)
    if service in ("sqs", "iam", "sts", "s3"):
        # moto resolves these itself (queue ARN, role ARN, bucket/key ARN); its "*" means that
        # it found none, which for SQS and S3 is a request naming no existing resource.
        if moto_resource not in ("*", "arn:aws:s3:::*"):
            return [(f"{service}:{action}", moto_resource)]
        return [(f"{service}:{action}", "*" if action.startswith("List") else None)]
    return [(f"{service}:{action}", None)]


# -- policy evaluation ----------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    """An IAM wildcard (``*`` any run, ``?`` one character) as an anchored regex; everything
    else literal (moto's own matcher does not escape ``.``, ``+`` or ``(``)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{regex}$", re.IGNORECASE if ignore_case else 0)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _any_match(globs: list[str], value: str, ignore_case: bool) -> bool:
    return any(_pattern(glob, ignore_case).match(value) for glob in globs)


def _statement_applies(statement: dict[str, Any], action: str, resource: str | None) -> bool:
    if "Action" in statement:
        if not _any_match(_as_list(statement["Action"]), action, ignore_case=True):
            return False
    elif "NotAction" in statement:
        if _any_match(_as_list(statement["NotAction"]), action, ignore_case=True):
            return False
    else:
        return False
    if resource is None:
        # Unresolved resource: an Allow counts whatever it names; a Deny only when it names "*",
        # so that an unresolved request is never refused for a resource it may not touch.
        if statement.get("Effect") == "Deny":
            return "*" in _as_list(statement.get("Resource"))
        return True
    if "Resource" in statement:
        return _any_match(_as_list(statement["Resource"]), resource, ignore_case=False)
    if "NotResource" in statement:
        return not _any_match(_as_list(statement["NotResource"]), resource, ignore_case=False)
    return False


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            document = json.loads(unquote(document))
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    statements = statements if isinstance(statements, list) else [statements]
    return [s for s in statements if isinstance(s, dict)]


def evaluate(documents: list[Any], action: str, resource: str | None) -> str:
    """``"allow"``, ``"deny"`` (an explicit Deny) or ``"implicit"`` (nothing allows it).

    Identity-policy logic: an explicit Deny wins, otherwise one Allow suffices. Actions match
    case-insensitively, resources case-sensitively, with ``*`` and ``?`` wildcards. Conditions
    are not evaluated: a conditional Allow counts as an Allow and a conditional Deny is ignored,
    so the local cloud never refuses what AWS might allow (it may allow what AWS would refuse).
    """
    allowed = False
    for document in documents:
        for statement in _statements(document):
            if not _statement_applies(statement, action, resource):
                continue
            conditional = bool(statement.get("Condition"))
            if statement.get("Effect") == "Deny" and not conditional:
                return "deny"
            if statement.get("Effect") == "Allow":
                allowed = True
    return "allow" if allowed else "implicit"


def _role_policies(account: str, partition: str, role_arn: str) -> tuple[list[Any], list[Any]]:
    """(identity policies, permissions boundary policies) of a role in moto's IAM."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account][partition]
    try:
        role = backend.get_role(role_arn.rpartition("/")[2])
    except Exception:
        return [], []
    documents: list[Any] = list(role.policies.values())
    documents += [_default_document(policy) for policy in role.managed_policies.values()]
    boundary: list[Any] = []
    if role.permissions_boundary_arn:
        try:
            boundary = [_default_document(backend.get_policy(role.permissions_boundary_arn))]
        except Exception:
            boundary = [{"Statement": []}]  # a boundary that does not exist allows nothing
    return documents, boundary


def _default_document(policy: Any) -> Any:
    return next(version.document for version in policy.versions if version.is_default)


def is_allowed(account: str, partition: str, role_arn: str, action: str,
               resource: str | None) -> tuple[bool, bool]:
    """(allowed, explicitly denied) for the role's identity policies and permissions boundary."""
    documents, boundary = _role_policies(account, partition, role_arn)
    decision = evaluate(documents, action, resource)
    if decision == "allow" and boundary:
        decision = evaluate(boundary, action, resource)
    return decision == "allow", decision == "deny"


# -- the enforcer ---------------------------------------------------------------------------


class IamEnforcer:
    """Issues role credentials to invocations and authorizes the requests signed with them.

    One per running moto (shared by overlapping clouds, like the runner); :meth:`installed`
    patches botocore's signer and moto's access control for the ``with`` block.
    """

    def __init__(self) -> None:
        self._issued: dict[str, RoleCredentials] = {}
        self._sessions: dict[tuple[str, str], RoleCredentials] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        #: Every refused request, oldest first (see :attr:`LocalCloud.access_denials`).
        self.denials: list[AccessDenial] = []

    # -- credentials -------------------------------------------------------------------------

    def credentials_for(self, fn: Any) -> RoleCredentials:
        """The function's role credentials from moto's STS, assumed once per role and function.

        The session is named after the function, as Lambda names it, so an error names
        ``assumed-role/<role>/<function>``.
        """
        role_arn = str(getattr(fn, "role", "") or "")
        if not role_arn.startswith("arn:"):
            raise LocalCloudError(
                f"function {fn.function_name} has no execution role ARN ({role_arn!r}); "
                "LocalCloud needs one to enforce IAM (or start it with enforce_iam=False)"
            )
        session = str(fn.function_name)[:64]
        with self._lock:
            known = self._sessions.get((role_arn, session))
            if known is not None:
                return known
            from moto.sts.models import sts_backends
            from moto.utilities.utils import get_partition

            region = str(fn.region)
            assumed = sts_backends[str(fn.account_id)][get_partition(region)].assume_role(
                region_name=region, role_session_name=session, role_arn=role_arn,
                policy=None, duration=_SESSION_SECONDS, external_id=None,
            )
            credentials = RoleCredentials(
                role_arn=role_arn,
                principal_arn=assumed.arn,
                access_key_id=assumed.access_key_id,
                secret_access_key=assumed.secret_access_key,
                session_token=assumed.session_token,
            )
            self._sessions[(role_arn, session)] = credentials
            self._issued[credentials.access_key_id] = credentials
            return credentials

    def issued(self, access_key_id: str | None) -> RoleCredentials | None:
        """The credentials behind an access key id, if this enforcer issued them."""
        return self._issued.get(access_key_id) if access_key_id else None

    @contextmanager
    def acting_as(self, credentials: RoleCredentials | None) -> Iterator[None]:
        """Sign every request this thread makes with ``credentials`` until the block ends."""
        if credentials is None:
            yield
            return
        stack: list[RoleCredentials] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = []
            self._local.stack = stack
        stack.append(credentials)
        try:
            yield
        finally:
            stack.pop()

    def current(self) -> RoleCredentials | None:
        """The credentials of the innermost invocation running in this thread, if any."""
        stack: list[RoleCredentials] | None = getattr(self._local, "stack", None)
        return stack[-1] if stack else None

    # -- patches -----------------------------------------------------------------------------

    @contextmanager
    def installed(self) -> Iterator[IamEnforcer]:
        """Patch botocore's request signing and moto's access control for the ``with`` block."""
        from botocore.credentials import Credentials
        from botocore.signers import RequestSigner
        from moto.core.authorization import ActionAuthenticatorMixin

        enforcer = self
        original_auth = RequestSigner.get_auth_instance
        original_check = ActionAuthenticatorMixin._authenticate_and_authorize_action
        harness = Credentials(HARNESS_ACCESS_KEY, HARNESS_ACCESS_KEY, HARNESS_ACCESS_KEY)

        def get_auth_instance(signer: Any, signing_name: str, region_name: str,
                              signature_version: Any = None, request_credentials: Any = None,
                              **kwargs: Any) -> Any:
            acting = enforcer.current()
            if acting is not None:
                request_credentials = acting.botocore
            else:
                own = request_credentials or getattr(signer, "_credentials", None)
                if enforcer.issued(getattr(own, "access_key", None)) is not None:
                    request_credentials = harness
            return original_auth(signer, signing_name, region_name, signature_version,
                                 request_credentials, **kwargs)

        def authenticate_and_authorize(response: Any, iam_request_cls: type,
                                       resource: str = "*") -> None:
            scope = _CREDENTIAL_SCOPE.search(str(response.headers.get("Authorization") or ""))
            credentials = enforcer.issued(scope.group(1)) if scope else None
            if scope is None or credentials is None:
                return original_check(response, iam_request_cls, resource)
            enforcer._authorize(response, iam_request_cls, resource, credentials,
                                region=scope.group(2), service=scope.group(3))
            return None

        with ExitStack() as stack:
            stack.callback(self._forget)
            stack.enter_context(patched(RequestSigner, "get_auth_instance", get_auth_instance))
            stack.enter_context(patched(ActionAuthenticatorMixin, "_authenticate_and_authorize_action",
                                        authenticate_and_authorize))
            yield self

    def _forget(self) -> None:
        with self._lock:
            self._issued.clear()
            self._sessions.clear()

    def _authorize(self, response: Any, iam_request_cls: type, resource: str,
                   credentials: RoleCredentials, *, region: str, service: str) -> None:
        """Check the signature with moto, then every permission the request needs."""
        from moto.utilities.utils import get_partition

        path = response.raw_path
        query = urlparse(response.uri).query
        if query:
            path += "?" + query
        action = response._get_action()
        iam_request = iam_request_cls(
            account_id=response.current_account, method=response.method, path=path,
            data=response.data, body=response.raw_body, headers=response.headers, action=action,
        )
        iam_request.check_signature()  # raises SignatureDoesNotMatch / InvalidClientTokenId
        partition = get_partition(region)
        account = response.current_account
        for iam_action, arn in requested_permissions(service, str(action), response, resource,
                                                     partition, region, account):
            if iam_action == "sts:GetCallerIdentity":
                continue  # AWS answers it whatever the policies say, even with a Deny
            allowed, denied = is_allowed(account, partition, credentials.role_arn, iam_action, arn)
            if allowed:
                continue
            with self._lock:
                self.denials.append(AccessDenial(credentials.principal_arn, iam_action, arn, denied))
            raise _access_denied(response, iam_request, service, credentials.principal_arn,
                                 iam_action, arn, denied)


def _access_denied(response: Any, iam_request: Any, service: str, principal: str, action: str,
                   resource: str | None, denied: bool) -> Exception:
    """The error AWS answers a refused request with, in the service's own protocol."""
    from moto.core.exceptions import AccessDeniedError, JsonRESTError

    target = f" on resource: {resource}" if resource else ""
    why = ("with an explicit deny in an identity-based policy" if denied
           else f"because no identity-based policy allows the {action} action")
    if service == "s3":
        try:
            iam_request._raise_access_denied()
        except Exception as exc:  # moto's S3 errors carry the bucket in S3's XML shape
            return exc
    content_type = str(response.headers.get("Content-Type") or "")
    if service == "lambda" or "json" in content_type:
        code = "AccessDenied" if service == "sqs" else "AccessDeniedException"
        error = JsonRESTError(code, f"User: {principal} is not authorized to perform: {action}{target} {why}")
        error.code = 403 if service in ("lambda", "sqs") else 400
        return error
    return AccessDeniedError(user_arn=principal, action=f"{action}{target} {why}")
