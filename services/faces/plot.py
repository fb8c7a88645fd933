"""A picture of an evaluation's distances, to choose a face threshold from.

Two histograms on one axis: the distance from each enrolled person's other photos to their
nearest enrolled face (genuine) and from each stranger's photo to the nearest enrolled face
(impostor), the threshold as a vertical line, and the false-accept and false-reject rates as
curves over every threshold, with their values at the configured one. Drawn with matplotlib's
Agg backend: a file, no display needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.services.faces.evaluation import EvalReport


def plot_distances(report: EvalReport, path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o = report.open_set
    genuine = [d for ok, d in o.known if ok]
    wrong = [d for ok, d in o.known if not ok]  # nearest face is someone else: rejected anyway
    impostor = o.strangers
    top = max([*genuine, *wrong, *impostor, report.threshold]) * 1.1
    bins = [float(b) for b in np.linspace(0, top, 60)]
    thresholds = np.linspace(0, top, 400)
    rates = np.array([o.error_rates(t) for t in thresholds])
    far, frr = o.error_rates(report.threshold)
    best = o.best_threshold()

    figure, counts = plt.subplots(figsize=(9, 6.2), dpi=110)
    counts.hist(genuine, bins=bins, alpha=0.6, color="tab:green",
                label=f"genuine: enrolled person's other photo ({len(genuine)})")  # fmt: skip
    counts.hist(impostor, bins=bins, alpha=0.6, color="tab:red",
                label=f"impostor: stranger's photo ({len(impostor)})")  # fmt: skip
    if wrong:
        counts.hist(wrong, bins=bins, alpha=0.8, color="tab:orange",
                    label=f"enrolled, nearest is someone else ({len(wrong)})")  # fmt: skip
    counts.set_xlabel("cosine distance to the nearest enrolled face")
    counts.set_ylabel("photos")
    rate = counts.twinx()
    rate.plot(thresholds, 100 * rates[:, 0], color="tab:red", linestyle="--",
              label="false accepts (% of strangers)")  # fmt: skip
    rate.plot(thresholds, 100 * rates[:, 1], color="tab:green", linestyle="--",
              label="false rejects (% of enrolled people's photos)")  # fmt: skip
    rate.set_ylabel("error rate at this threshold (%)")
    rate.set_ylim(0, 101)
    counts.axvline(report.threshold, color="black", linewidth=1.5)
    counts.axvline(best, color="grey", linewidth=1, linestyle=":")
    counts.annotate(
        f"threshold {report.threshold:.3f}\nfalse accepts {100 * far:.1f}%\n"
        f"false rejects {100 * frr:.1f}%\n(best separating: {best:.3f})",
        xy=(report.threshold, 0.97), xycoords=("data", "axes fraction"),
        xytext=(8, 0), textcoords="offset points", va="top", fontsize=9,
    )  # fmt: skip
    lines = counts.get_legend_handles_labels()
    curves = rate.get_legend_handles_labels()
    counts.legend(
        lines[0] + curves[0], lines[1] + curves[1],
        loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False,
    )  # fmt: skip
    counts.set_title(
        f"{title}\n{o.enrolled_people} people enrolled, {o.stranger_people} strangers; "
        f"layout {report.layout}",
        fontsize=10,
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
