"""Reading a GraphQL-over-HTTP request, whatever bytes arrive, into one checked shape.

GET carries ``query``, ``variables``, ``operationName`` and ``extensions`` in the URL (JSON in
the last two); POST carries them as a JSON object, or as a GraphQL multipart request (the
uploads spec Apollo's upload clients speak). Anything else is refused here with a status and
a code before GraphQL sees it: a body that is not JSON or not UTF-8, JSON that is a number or
a list (batches are not supported), nesting deeper than anyone needs, text no UTF-8 encoder
can write (lone surrogates), lists longer than any argument takes, a multipart request whose
``operations`` or ``map`` has the wrong shape, too many parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

MAX_DEPTH = 32  # JSON nesting: BookFilter inside variables is 3 deep
MAX_LIST = 1000  # longest list a variable may hold (recommend's exclude takes 500)
MAX_PARTS = 8  # multipart: operations, map and a few files


class Refused(Exception):
    """A request GraphQL cannot be asked to run; answered as JSON with this status and code.

    ``spec_status`` is the status the GraphQL-over-HTTP spec asks for when the client accepts
    ``application/graphql-response+json`` (422 for a request that is JSON but not a
    well-formed GraphQL request); ``application/json`` clients keep the older 400.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        spec_status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.spec_status = spec_status or status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str, *, malformed: bool = False) -> Refused:
    """400; a JSON body that is not a well-formed GraphQL request is 422 under the spec."""
    return Refused(400, "BAD_REQUEST", message, spec_status=422 if malformed else 400)


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    method: Literal["GET", "POST"]
    query: str | None
    variables: dict[str, Any] = field(default_factory=dict)
    operation_name: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    document_id: str | None = None  # GraphQL-over-HTTP persisted documents: "sha256:<hash>"


async def read_request(request: Request) -> GraphQLRequest:
    if request.method in ("GET", "HEAD"):  # HEAD: GET's answer without its body
        return _from_url(request)
    content_type = request.headers.get("content-type", "")
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media == "application/json":
        charset = _charset(parameters)
        if charset not in (None, "utf-8", "utf8"):
            raise Refused(415, "UNSUPPORTED_MEDIA_TYPE", "JSON bodies must be UTF-8")
        return _from_json(await request.body())
    if media == "multipart/form-data":
        return await _from_multipart(request)
    raise Refused(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "send application/json (or multipart/form-data for uploads)",
    )


def _charset(parameters: str) -> str | None:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _from_url(request: Request) -> GraphQLRequest:
    params = request.query_params
    return _shaped(
        "GET",
        {
            "query": params.get("query") or None,
            "variables": _json_param(params.get("variables"), "variables"),
            "operationName": params.get("operationName") or None,
            "extensions": _json_param(params.get("extensions"), "extensions"),
            "documentId": params.get("documentId") or None,
        },
    )


def _json_param(raw: str | None, name: str) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise bad_request(f"{name} is not valid JSON") from None


def _from_json(body: bytes) -> GraphQLRequest:
    return _shaped("POST", _decode(body, "the body"))


def _decode(raw: bytes | str, what: str) -> Any:
    """JSON in UTF-8 and nothing else (json.loads would also take UTF-16 and a BOM)."""
    if not raw:
        raise bad_request(f"{what} is empty")
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise bad_request(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise bad_request(f"{what} is not valid UTF-8 JSON") from None


def _shaped(method: Literal["GET", "POST"], body: Any) -> GraphQLRequest:
    if isinstance(body, list):
        raise bad_request(
            "batched operations (a JSON array) are not supported: send one", malformed=True
        )
    if not isinstance(body, dict):
        raise bad_request("a GraphQL request is a JSON object with a query", malformed=True)
    check_values(body)
    query, variables = body.get("query"), body.get("variables")
    operation_name, extensions = body.get("operationName"), body.get("extensions")
    document_id = body.get("documentId")
    if query is not None and not isinstance(query, str):
        raise bad_request("query must be a string", malformed=True)
    if variables is not None and not isinstance(variables, dict):
        raise bad_request("variables must be an object", malformed=True)
    if operation_name is not None and not isinstance(operation_name, str):
        raise bad_request("operationName must be a string", malformed=True)
    if extensions is not None and not isinstance(extensions, dict):
        raise bad_request("extensions must be an object", malformed=True)
    if document_id is not None and not isinstance(document_id, str):
        raise bad_request("documentId must be a string", malformed=True)
    return GraphQLRequest(
        method, query, variables or {}, operation_name, extensions or {}, document_id
    )


def check_values(value: Any) -> None:
    """Refuse what no argument needs and what would cost work before GraphQL refuses it: deep
    nesting, long lists, and strings UTF-8 cannot encode (they would fail later, in Redis or
    in the response)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise bad_request(f"the request nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, list):
            if len(item) > MAX_LIST:
                raise Refused(
                    400,
                    "QUERY_TOO_COMPLEX",
                    f"a list of {len(item):,} values; lists hold at most {MAX_LIST:,}",
                    spec_status=422,  # as the document's own cost limits
                )
            stack.extend((v, depth + 1) for v in item)
        else:
            for key, v in item.items():
                _check_text(key)
                stack.append((v, depth + 1))


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request("the request holds text that is not valid Unicode") from None


async def _from_multipart(request: Request) -> GraphQLRequest:
    """The GraphQL multipart request spec: ``operations`` (the request with null where files
    go), ``map`` (file part -> the paths it fills), then the files."""
    try:
        form = await request.form(max_files=MAX_PARTS, max_fields=MAX_PARTS)
    except HTTPException as exc:  # python-multipart could not read it, or too many parts
        raise bad_request(f"the multipart body could not be read: {exc.detail}") from None
    operations, mapping = form.get("operations"), form.get("map")
    if not isinstance(operations, str) or not isinstance(mapping, str):
        raise bad_request("a multipart request needs 'operations' and 'map' fields")
    request_body = _decode(operations, "operations")
    paths = _decode(mapping, "map")
    if not isinstance(request_body, dict):
        raise bad_request("operations must be one JSON object (batches are not supported)")
    if not isinstance(paths, dict) or not all(
        isinstance(targets, list) and all(isinstance(t, str) for t in targets)
        for targets in paths.values()
    ):
        raise bad_request('map must be an object of lists of paths: {"0": ["variables.image"]}')
    variables = request_body.get("variables")
    if not isinstance(variables, dict):
        raise bad_request("operations.variables must be an object holding the files' places")
    for part, targets in paths.items():
        upload = form.get(part)
        if not isinstance(upload, UploadFile):
            raise bad_request(f"map names a file part {part[:32]!r} that is not in the request")
        for target in targets:
            _place(variables, target, upload)
    return _shaped("POST", request_body)


def _place(variables: dict[str, Any], path: str, upload: UploadFile) -> None:
    """Put a file where its path points (``variables.image``, ``variables.images.0``); the
    place must be there and hold null, as the spec's clients leave it."""
    head, _, rest = path.partition(".")
    if head != "variables" or not rest:
        raise bad_request(f"a map path must start with 'variables.': {path[:64]!r}")
    keys = rest.split(".")
    container: Any = variables
    for key in keys[:-1]:
        container = _step(container, key, path)
    last = keys[-1]
    if isinstance(container, dict) and last in container and container[last] is None:
        container[last] = upload
    elif isinstance(container, list) and (index := _index(last, container)) is not None:
        if container[index] is not None:
            raise bad_request(f"map path {path[:64]!r} does not point at a null")
        container[index] = upload
    else:
        raise bad_request(f"map path {path[:64]!r} does not point at a null in operations")


def _step(container: Any, key: str, path: str) -> Any:
    if isinstance(container, dict) and key in container:
        return container[key]
    if isinstance(container, list) and (index := _index(key, container)) is not None:
        return container[index]
    raise bad_request(f"map path {path[:64]!r} does not exist in operations")


def _index(key: str, items: list[Any]) -> int | None:
    """A list index in a map path that is in the list (ASCII digits, at most six), or None:
    ``²`` is a digit to ``str.isdigit`` and not to ``int``."""
    if key.isascii() and key.isdigit() and len(key) <= 6 and int(key) < len(items):
        return int(key)
    return None
