"""A REST API of the synthesized template, served locally: routes, validation, Lambda proxy.

moto creates an API Gateway REST API from the template but cannot invoke a Lambda proxy
integration (it answers "not yet supported"), and skips request models, validators and gateway
responses. :class:`LocalRestApi` reads those from the very template that is deployed and does
what API Gateway does with a request, in the same order:

1. find the resource and method (a literal path part wins over ``{param}``, as in API Gateway),
   else ``403 Missing Authentication Token``;
2. require an ``x-api-key`` header where the method requires an API key (its value is not
   checked: usage-plan keys are not emulated), else ``403 Forbidden``;
3. with the method's request validator: required request parameters, else
   ``BAD_REQUEST_PARAMETERS``; the JSON body against the method's model (JSON Schema draft 4),
   else ``BAD_REQUEST_BODY``; each shaped by the template's gateway response, if it has one;
4. invoke the integration's Lambda with the REST proxy event and turn its answer into the HTTP
   response (``502`` if the function fails or answers malformed).

IAM (SigV4) authorization is not checked locally: any caller may call. There is no stage prefix:
``http://<host>:<port>/sagas/...`` locally is ``https://<api>/<stage>/sagas/...`` on AWS.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from saga_kit.local_cloud.errors import LocalCloudError

logger = logging.getLogger(__name__)

#: API Gateway's own payload limit.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": (403, '{"message":"Missing Authentication Token"}'),
    "INVALID_API_KEY": (403, '{"message":"Forbidden"}'),
    "BAD_REQUEST_PARAMETERS": (400, '{"message": "$context.error.message"}'),
    "BAD_REQUEST_BODY": (400, '{"message": "$context.error.validationErrorString"}'),
    "REQUEST_TOO_LARGE": (413, '{"message": "$context.error.message"}'),
    "INTEGRATION_FAILURE": (502, '{"message": "Internal server error"}'),
    "THROTTLED": (429, '{"message":"Too Many Requests"}'),
}
#: How long a request waits for one of the integration slots before it is answered 429, as a
#: throttled stage answers: a client retries with the same Idempotency-Key, instead of hanging
#: on a queue that a burst on a busy machine can make minutes long.
SLOT_WAIT_SECONDS = 10.0
_CONTEXT_ERROR = re.compile(r"(\$util\.escapeJavaScript\()?\$context\.error\.(\w+)(\))?")


@dataclass
class HttpResponse:
    """What the local API answers: status, headers and body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body or b"null")


@dataclass
class _Method:
    http_method: str
    resource_path: str
    function_logical_id: str
    api_key_required: bool
    authorization: str
    required_parameters: dict[str, bool] = field(default_factory=dict)
    validate_body: bool = False
    validate_parameters: bool = False
    model: dict[str, Any] | None = None


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    return None


def _find_get_att(value: Any, attribute: str) -> str | None:
    """The logical id of the first ``Fn::GetAtt: [<id>, <attribute>]`` inside ``value``."""
    if isinstance(value, dict):
        get_att = value.get("Fn::GetAtt")
        if isinstance(get_att, list) and len(get_att) == 2 and get_att[1] == attribute:
            return str(get_att[0])
        values = list(value.values())
    elif isinstance(value, list):
        values = value
    else:
        return None
    for inner in values:
        found = _find_get_att(inner, attribute)
        if found:
            return found
    return None


class LocalRestApi:
    """One ``AWS::ApiGateway::RestApi`` of a template, answering HTTP requests locally.

    Args:
        template: The synthesized CloudFormation template (as deployed).
        invoke: Calls a Lambda by logical id with an event; returns (payload JSON text, errored).
        rest_api_logical_id: Which REST API, when the template has several.
        stage: The stage name put into the proxy events' request context.
        max_concurrent_invocations: Integration calls that run at once; the others wait their
            turn (waiting does not count towards a Lambda's timeout), and one that waits over
            ``SLOT_WAIT_SECONDS`` is answered ``429``, as a throttled stage is. Default 1:
            Powertools' event handler keeps the request it is resolving in a module global
            (``app.current_event``), which on AWS belongs to one execution environment serving
            one request at a time, and here to the one process every invocation shares; two
            requests resolved at once would read each other's headers and bodies.
    """

    def __init__(self, template: dict[str, Any], invoke: Any, *,
                 rest_api_logical_id: str | None = None, stage: str = "local",
                 max_concurrent_invocations: int = 1) -> None:
        resources: dict[str, Any] = template.get("Resources", {})
        apis = [k for k, r in resources.items() if r.get("Type") == "AWS::ApiGateway::RestApi"]
        if rest_api_logical_id is None:
            if len(apis) != 1:
                raise LocalCloudError(f"the template has {len(apis)} REST APIs ({', '.join(apis)}); "
                                      "name one with rest_api_logical_id")
            rest_api_logical_id = apis[0]
        self.api_id = rest_api_logical_id
        self.stage = stage
        self._invoke = invoke
        self._invocation_slots = threading.BoundedSemaphore(max_concurrent_invocations)
        mine = {k: r for k, r in resources.items()
                if _ref(r.get("Properties", {}).get("RestApiId")) == rest_api_logical_id}
        self._paths = self._resource_paths(mine, rest_api_logical_id)
        self.methods = self._methods(mine, resources)
        self.responses = dict(DEFAULT_RESPONSES)
        for resource in mine.values():
            if resource["Type"] == "AWS::ApiGateway::GatewayResponse":
                props = resource["Properties"]
                status = int(props.get("StatusCode") or DEFAULT_RESPONSES.get(
                    props["ResponseType"], (400, ""))[0])
                body = (props.get("ResponseTemplates") or {}).get("application/json")
                if body is None:
                    body = DEFAULT_RESPONSES.get(props["ResponseType"], (status, "{}"))[1]
                self.responses[props["ResponseType"]] = (status, body)

    @staticmethod
    def _resource_paths(mine: dict[str, Any], api_id: str) -> dict[str, str]:
        parents = {k: r["Properties"] for k, r in mine.items()
                   if r["Type"] == "AWS::ApiGateway::Resource"}
        paths: dict[str, str] = {api_id: "/"}

        def path_of(logical_id: str) -> str:
            if logical_id not in paths:
                props = parents[logical_id]
                parent = _ref(props["ParentId"]) or api_id  # GetAtt RootResourceId: the root
                base = path_of(parent)
                paths[logical_id] = f"{base.rstrip('/')}/{props['PathPart']}"
            return paths[logical_id]

        for logical_id in parents:
            path_of(logical_id)
        return paths

    def _methods(self, mine: dict[str, Any], resources: dict[str, Any]) -> list[_Method]:
        methods = []
        for logical_id, resource in mine.items():
            if resource["Type"] != "AWS::ApiGateway::Method":
                continue
            props = resource["Properties"]
            integration = props.get("Integration", {})
            function = _find_get_att(integration.get("Uri"), "Arn")
            if integration.get("Type") != "AWS_PROXY" or function is None:
                raise LocalCloudError(f"method {logical_id}: only Lambda proxy integrations "
                                      "(AWS_PROXY) are served locally")
            method = _Method(
                http_method=props["HttpMethod"],
                resource_path=self._paths[_ref(props.get("ResourceId")) or self.api_id],
                function_logical_id=function,
                api_key_required=bool(props.get("ApiKeyRequired")),
                authorization=props.get("AuthorizationType", "NONE"),
                required_parameters={k: bool(v) for k, v in
                                     (props.get("RequestParameters") or {}).items()},
            )
            validator = _ref(props.get("RequestValidatorId"))
            if validator:
                v = resources[validator]["Properties"]
                method.validate_body = bool(v.get("ValidateRequestBody"))
                method.validate_parameters = bool(v.get("ValidateRequestParameters"))
            model = _ref((props.get("RequestModels") or {}).get("application/json"))
            if model:
                method.model = resources[model]["Properties"]["Schema"]
            methods.append(method)
        return methods

    # -- requests --------------------------------------------------------------------------

    def _match(self, method: str, path: str) -> tuple[_Method, dict[str, str]] | None:
        parts = [p for p in path.split("/") if p]
        best: tuple[tuple[int, ...], _Method, dict[str, str]] | None = None
        for candidate in self.methods:
            if candidate.http_method not in (method, "ANY"):
                continue
            template = [p for p in candidate.resource_path.split("/") if p]
            if len(template) != len(parts):
                continue
            params: dict[str, str] = {}
            rank: list[int] = []
            for want, got in zip(template, parts, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    params[want[1:-1]] = got
                    rank.append(1)
                elif want == got:
                    rank.append(0)
                else:
                    break
            else:
                key = tuple(rank)
                if best is None or key < best[0]:
                    best = (key, candidate, params)
        return (best[1], best[2]) if best else None

    def gateway_response(self, kind: str, **error: str) -> HttpResponse:
        """API Gateway's own answer of type ``kind`` (the template's gateway response if it
        defines one), with ``$context.error.<name>`` filled from ``error``."""
        status, template = self.responses[kind]

        def fill(match: re.Match[str]) -> str:
            value = error.get(match.group(2), "")
            if match.group(1):  # $util.escapeJavaScript(...)
                return json.dumps(value)[1:-1]
            return value

        body = _CONTEXT_ERROR.sub(fill, template)
        return HttpResponse(status, {"Content-Type": "application/json",
                                     "x-amzn-ErrorType": kind}, body.encode())

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes,
               source_ip: str = "127.0.0.1") -> HttpResponse:
        """Answers one HTTP request the way the deployed API would."""
        path, _, query = raw_path.partition("?")
        if len(body) > MAX_PAYLOAD_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE",
                                          message="Request Too Long")
        matched = self._match(method.upper(), path)
        if matched is None:
            return self.gateway_response("MISSING_AUTHENTICATION_TOKEN")
        route, path_params = matched
        lower = {k.lower(): v for k, v in headers.items()}
        if route.api_key_required and not lower.get("x-api-key"):
            return self.gateway_response("INVALID_API_KEY")
        if route.validate_parameters:
            missing = [name.rsplit(".", 1)[-1] for name, required in route.required_parameters.items()
                       if required and name.startswith("method.request.header.")
                       and name.rsplit(".", 1)[-1].lower() not in lower]
            if missing:
                return self.gateway_response(
                    "BAD_REQUEST_PARAMETERS",
                    message=f"Missing required request parameters: [{', '.join(missing)}]")
        text = body.decode("utf-8", errors="replace") if body else None
        if route.validate_body and route.model is not None:
            problem = _validate_body(route.model, text)
            if problem:
                return self.gateway_response("BAD_REQUEST_BODY", validationErrorString=problem)
        # API Gateway tells the integration how the client connected.
        forwarded = {"X-Forwarded-Proto": "http", "X-Forwarded-For": source_ip}
        headers = {**{k: v for k, v in forwarded.items() if k.lower() not in lower}, **headers}
        event = self._proxy_event(route, path, query, headers, text, path_params, source_ip)
        if not self._invocation_slots.acquire(timeout=SLOT_WAIT_SECONDS):
            return self.gateway_response("THROTTLED")
        try:
            payload, errored = self._invoke(route.function_logical_id, event)
        finally:
            self._invocation_slots.release()
        return _proxy_response(payload, errored, self)

    def _proxy_event(self, route: _Method, path: str, query: str, headers: dict[str, str],
                     body: str | None, path_params: dict[str, str], source_ip: str) -> dict[str, Any]:
        from urllib.parse import parse_qs

        queries = parse_qs(query, keep_blank_values=True) if query else {}
        host = {k.lower(): v for k, v in headers.items()}.get("host", "localhost")
        return {
            "resource": route.resource_path,
            "path": path,
            "httpMethod": route.http_method,
            "headers": dict(headers),
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in queries.items()} or None,
            "multiValueQueryStringParameters": queries or None,
            "pathParameters": path_params or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.resource_path,
                "httpMethod": route.http_method,
                "path": path,
                "stage": self.stage,
                "domainName": host,
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "apiId": self.api_id,
                "protocol": "HTTP/1.1",
                "identity": {"sourceIp": source_ip,
                             "userAgent": {k.lower(): v for k, v in headers.items()}.get(
                                 "user-agent")},
            },
            "body": body,
            "isBase64Encoded": False,
        }


def _validate_body(schema: dict[str, Any], text: str | None) -> str | None:
    """API Gateway's body check: JSON, valid against the model; the problems, or ``None``."""
    import jsonschema

    try:
        document = json.loads(text) if text else {}
    except ValueError:
        return "Invalid request body"
    problems = sorted(jsonschema.Draft4Validator(schema).iter_errors(document),
                      key=lambda e: list(e.absolute_path))
    if not problems:
        return None
    return "[" + ", ".join(
        f"{'/'.join(str(p) for p in e.absolute_path) or 'body'}: {_short(e.message)}"
        for e in problems
    ) + "]"


def _short(message: str, limit: int = 160) -> str:
    # jsonschema quotes the offending value, which may be the whole oversized field.
    return message if len(message) <= limit else f"{message[:limit]}..."


def _proxy_response(payload: str, errored: bool, api: LocalRestApi) -> HttpResponse:
    try:
        answer = json.loads(payload)
        if errored or not isinstance(answer, dict) or "statusCode" not in answer:
            raise ValueError("not a proxy response")
        headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
        for key, values in (answer.get("multiValueHeaders") or {}).items():
            headers[str(key)] = ", ".join(str(v) for v in values)
        body = answer.get("body") or ""
        data = base64.b64decode(body) if answer.get("isBase64Encoded") else str(body).encode()
        return HttpResponse(int(answer["statusCode"]), headers, data)
    except (ValueError, TypeError):
        # What API Gateway would write to its execution log.
        logger.warning("Lambda proxy answer is an error or malformed: %s", payload[:2000])
        return api.gateway_response("INTEGRATION_FAILURE")
