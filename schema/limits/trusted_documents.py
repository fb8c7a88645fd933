"""Trusted documents: the operations the app ships with, the only ones a request without a
full API key may run (LOOKALIKE_TRUSTED_DOCUMENTS).

The manifest is what the client's build writes: Apollo's persisted query manifest
(``{"format": "apollo-persisted-query-manifest", "version": 1, "operations": [{"id",
"name", "type", "body"}]}``, from ``@apollo/generate-persisted-query-manifest``) or the
GraphQL Codegen client preset's ``persisted-documents.json`` (``{hash: body}``, with
``hashAlgorithm: "sha256"``). Every id must be the SHA-256 of its body, so that a request
naming an id and sending a text can be checked against it, and an operation is found the
same way whichever format listed it.

The list is read at start (a broken file stops the server with one sentence) and again on
SIGHUP; a reload that fails keeps the list it had and logs why, so a bad deploy of the
manifest never leaves the API open or empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from graphql import GraphQLError

from lookalike.services.core.errors import LookalikeError

log = logging.getLogger("lookalike.http")
APOLLO_FORMAT = "apollo-persisted-query-manifest"
_SHA256 = re.compile(r"[0-9a-f]{64}")
NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"  # as Apollo Router names it


class ManifestError(LookalikeError):
    """The trusted documents file cannot be used (the server does not start with it)."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def not_in_list() -> GraphQLError:
    return GraphQLError(
        "this operation is not one of the app's trusted documents; only those run without "
        "a full API key",
        extensions={"code": NOT_IN_LIST},
    )


def read_manifest(path: Path) -> dict[str, str]:
    """The documents of a manifest by their SHA-256, or ManifestError saying what is wrong."""
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ManifestError(f"cannot read the trusted documents {path}: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"the trusted documents {path} are not UTF-8 JSON: {exc}") from None
    if isinstance(raw, dict) and "format" in raw:
        pairs = _apollo_operations(raw, path)
    elif isinstance(raw, dict):
        pairs = list(raw.items())  # GraphQL Codegen's persisted-documents.json
    else:
        raise ManifestError(f"the trusted documents {path} are not a JSON object")
    documents: dict[str, str] = {}
    for digest, body in pairs:
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ManifestError(
                f"the trusted documents {path} list an id that is not a lowercase SHA-256 "
                f"({str(digest)[:72]!r}): generate them with sha256 ids"
            )
        if not isinstance(body, str) or sha256(body) != digest:
            raise ManifestError(
                f"the trusted documents {path} list id {digest} whose body does not hash to it"
            )
        documents[digest] = body
    return documents


def _apollo_operations(raw: dict[str, Any], path: Path) -> list[tuple[Any, Any]]:
    if raw.get("format") != APOLLO_FORMAT or raw.get("version") != 1:
        raise ManifestError(f"the trusted documents {path} are not an {APOLLO_FORMAT} of version 1")
    operations = raw.get("operations")
    if not isinstance(operations, list) or not all(isinstance(o, dict) for o in operations):
        raise ManifestError(f"the trusted documents {path} have no list of operations")
    return [(o.get("id"), o.get("body")) for o in operations]


class TrustedDocuments:
    """The list in force: ``documents`` (by SHA-256), replaced whole by ``reload``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.documents = read_manifest(path)
        log.info("trusted documents", extra={"documents": len(self.documents)})

    def reload(self) -> bool:
        """Read the file again (SIGHUP); a file that cannot be used leaves the list as it was."""
        try:
            documents = read_manifest(self.path)
        except ManifestError as exc:
            log.error(
                "trusted documents not reloaded: %s; the %d loaded before stay in force",
                exc.message,
                len(self.documents),
            )
            return False
        self.documents = documents
        log.info("trusted documents reloaded", extra={"documents": len(documents)})
        return True
