"""What embedding a book's description costs against what the query cost charges for it.

    .venv/bin/python -m bench.description_embedding [--runs 3] [--rounds 3] [--batch 50]

``upsertBooks`` prices each description it embeds like a search text (schema/limits/cost.py:
``TEXT_MODEL_RUN`` and a unit per two characters). This measures, with the text model on the
threads the server gives it (``LOOKALIKE_TEXT_MODEL_THREADS``), the time of one batch of the
shipped catalogue's descriptions (what ``upsertBooks`` sends to the model) per description,
and the baseline: one short search text (what ``TEXT_MODEL_RUN`` alone prices), the two
interleaved round by round. Each run reports the medians over its rounds; the table shows min
/ median / max over the runs, and the ratio of a description's time to the search text's next
to the ratio the cost model charges.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from lookalike.services.books.loading.changes import embedding_cost
from lookalike.services.books.loading.shipped import read_shipped
from lookalike.services.embeddings.text_model import text_embedder

SEARCH_TEXT = "a story of love and war"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    descriptions = [r["description"] for r in read_shipped().records if r["description"].strip()]
    model = text_embedder()
    model.encode([SEARCH_TEXT])  # loaded before anything is timed
    per_description, per_search, charged = [], [], []
    for run in range(args.runs):
        picked = random.Random(run).sample(descriptions, args.batch * args.rounds)
        batches, singles = [], []
        for n in range(args.rounds):
            batch = picked[n * args.batch : (n + 1) * args.batch]
            started = time.perf_counter()
            model.encode([SEARCH_TEXT])
            singles.append(time.perf_counter() - started)
            started = time.perf_counter()
            model.encode(batch)
            batches.append((time.perf_counter() - started) / len(batch))
        per_description.append(statistics.median(batches))
        per_search.append(statistics.median(singles))
        charged.append(embedding_cost(picked) / len(picked) / embedding_cost([SEARCH_TEXT]))
    ratios = [d / s for d, s in zip(per_description, per_search, strict=True)]
    print("| figure | min | median | max |")
    print("| --- | --- | --- | --- |")
    for name, values, unit in (
        (f"a description in a batch of {args.batch}", per_description, "ms"),
        ("a short search text alone", per_search, "ms"),
        ("description / search text, measured", ratios, "x"),
        ("description / search text, charged", charged, "x"),
    ):
        scale = 1000 if unit == "ms" else 1
        shown = [f"{v * scale:.1f} {unit}" for v in sorted(values)]
        print(f"| {name} | {shown[0]} | {shown[len(shown) // 2]} | {shown[-1]} |")


if __name__ == "__main__":
    main()
