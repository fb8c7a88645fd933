"""What a document costs before it runs: the shape limits' walk against graphql-core's
validation, for documents at and over the field limits.

    .venv/bin/python -m bench.validation [--runs 3] [--repeat 5]

No server or Redis: the schema is built from the default settings. Each figure is the best of
``--repeat`` timings (this machine's speed drifts), per run; the runs show the spread.
"""

from __future__ import annotations

import argparse
import time

from graphql import DocumentNode, get_introspection_query, parse, validate

from lookalike.schema.execution.schema import build_schema
from lookalike.schema.execution.strawberry_compat import graphql_schema
from lookalike.services.core.settings import Settings


def titles(count: int) -> str:
    return " ".join(["title"] * count)


DOCUMENTS = {
    "GraphiQL's introspection": get_introspection_query(
        input_value_deprecation=True, schema_description=True
    ),
    "title x100 (at the limit)": f'{{ book(id: "1") {{ {titles(100)} }} }}',
    "5 books x 99 titles (500 fields)": "{ "
    + " ".join(f'b{n}: book(id: "1") {{ {titles(99)} }}' for n in range(5))
    + " }",
    "25 books x 19 titles (500 fields)": "{ "
    + " ".join(f'b{n}: book(id: "1") {{ {titles(19)} }}' for n in range(25))
    + " }",
    "title x1000 (refused)": f'{{ book(id: "1") {{ {titles(1000)} }} }}',
}


def best(repeat: int, work: object) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        timings.append(time.perf_counter() - started)
    return min(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    schema = build_schema(Settings.model_construct())
    rules = (*schema.rules,)
    core = graphql_schema(schema)
    parsed: dict[str, DocumentNode] = {name: parse(text) for name, text in DOCUMENTS.items()}
    for run in range(1, args.runs + 1):
        print(f"run {run}")
        for name, document in parsed.items():
            refused = schema.limits.refusal(document)
            check = best(args.repeat, lambda d=document: schema.limits.refusal(d))
            validation = best(args.repeat, lambda d=document: validate(core, d, rules))
            errors = validate(core, document, rules)
            verdict = refused.message if refused else (errors[0].message if errors else "valid")
            print(
                f"  {name:36} limits {check:6.2f} ms   validation {validation:7.1f} ms   "
                f"{verdict[:60]}"
            )


if __name__ == "__main__":
    main()
