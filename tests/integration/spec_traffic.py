"""Validation of recorded HTTP traffic (what a real client sent and got back) against the spec.

    check_exchanges(exchanges) -> SpecReport
        exchanges: iterable of dicts {"method", "path", "status", "body"} (path as sent, percent-
        encoded, no query string). Each response body is validated against the response schema
        of the operation in data/api/client-server/*.yaml that matches the method and path
        (assert_matches_spec of myelin_harness). An error status the operation does not list is
        validated against definitions/errors/error.yaml.
    SpecReport: .checked (list of "METHOD path status" validated), .failures (messages),
        .unknown (exchanges whose path no spec file has, e.g. unstable endpoints),
        .undocumented (200s of an operation that gives no JSON schema).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterable, Mapping

import jsonschema

import myelin_harness as h


@dataclasses.dataclass
class SpecReport:
    checked: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    unknown: list[str] = dataclasses.field(default_factory=list)
    undocumented: list[str] = dataclasses.field(default_factory=list)


@functools.lru_cache(maxsize=1)
def _operations() -> list[tuple[str, list[str], Mapping]]:
    """(file name, base paths, paths) for every client-server API file of the spec."""
    root = h.spec_dir() / "data" / "api" / "client-server"
    out = []
    for f in sorted(root.glob("*.yaml")):
        doc = h.load_yaml(f)
        if isinstance(doc, Mapping) and isinstance(doc.get("paths"), Mapping):
            out.append((f.name, h._openapi_base_paths(doc), doc["paths"]))
    assert out, f"no client-server API files under {root}"
    return out


def spec_file_for(method: str, path: str) -> str | None:
    """The spec file with an operation for `method` on the concrete `path`, or None."""
    for name, bases, paths in _operations():
        try:
            key = h._match_path(paths, h._path_candidates(path, bases))
        except LookupError:
            continue
        if method.lower() in (paths[key] or {}):
            return name
    return None


@functools.lru_cache(maxsize=1)
def _error_validator():
    error_file = h.spec_dir() / "data" / "api" / "client-server" / "definitions" / "errors" / \
        "error.yaml"
    schema = h.load_yaml(error_file)
    return jsonschema.Draft202012Validator(schema, resolver=h._resolver(error_file))


def check_exchanges(exchanges: Iterable[Mapping[str, Any]]) -> SpecReport:
    report = SpecReport()
    for x in exchanges:
        method, path, status, body = x["method"], x["path"], int(x["status"]), x.get("body")
        what = f"{method} {path} {status}"
        file = spec_file_for(method, path)
        if file is None:
            report.unknown.append(what)
            continue
        try:
            h.assert_matches_spec(body, file, path, method, status)
            report.checked.append(what)
        except LookupError as e:
            if status >= 400:
                # An error status the operation does not list: the spec's standard error body.
                try:
                    h._schema_failure(body, f"{file} (error.yaml)", _error_validator())
                    report.checked.append(what)
                except AssertionError as failure:
                    report.failures.append(f"{what}: {failure}")
            else:
                report.undocumented.append(f"{what}: {e}")
        except AssertionError as failure:
            report.failures.append(f"{what}: {failure}")
    return report

