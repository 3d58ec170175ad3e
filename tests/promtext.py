"""Reading Prometheus' text format, as a scrape sees it (the webhook's and the API server's
/metrics)."""

from __future__ import annotations

import re

SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)")


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(metric, labels, value) of each sample."""
    out = []
    for line in text.splitlines():
        if (m := SAMPLE.match(line)) and not line.startswith("#"):
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def total(text: str, metric: str, **labels: str) -> float:
    """The sum of the samples of `metric` whose labels include these."""
    return sum(
        value
        for name, found, value in samples(text)
        if name == metric and labels.items() <= found.items()
    )
