"""The ratios a run is judged by, and the table, markdown report and chart that show them."""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """A ratio of two measurements of the same run, and the bound it should meet."""

    key: str
    description: str
    bound: float | None  # None: reported, with no bound to meet
    at_most: bool = False  # a latency ratio: lower is better

    def met(self, value: float) -> bool | None:
        """Whether `value` is within the bound (None when there is none)."""
        if self.bound is None:
            return None
        return value <= self.bound if self.at_most else value >= self.bound


TARGETS = (
    Target("users_vs_ceiling", "users service GET /users/{id} vs the raw ceiling", 0.5),
    Target("gateway_vs_users", "gateway GET /users/{id} vs the users service", 0.6),
    Target("users_with_posts_vs_gateway", "/users-with-posts?limit=20 vs gateway user read", 0.5),
    Target("gateway_256_vs_64", "gateway at 256 connections vs at 64", 0.9),
    Target("keyset_deep_vs_first", "keyset page at 90% depth vs first page (p50)", 1.5, True),
    Target("bulk_vs_executemany", "POST /products/bulk vs psycopg executemany (rows/s)", 0.5),
    Target(
        "signed_in_vs_anonymous",
        "gateway GET /users/{id} with a token vs without (the same public profiles)",
        0.9,
    ),
    Target(
        "reads_during_logins_vs_alone",
        "gateway GET /users/{id} while logins run alongside vs alone",
        0.5,
    ),
    *(
        Target(f"{variant}_vs_plain_{key}", f"11. {what}: {description} vs neither", bound)
        for variant, description, bound in (
            ("metrics", "metrics, tracing off", 0.97),
            ("sampled", "metrics and 10% of traces", 0.92),
            ("traced", "metrics and every trace", None),
        )
        for key, what in (("user", "gateway GET /users/{id}"), ("posts", "/users-with-posts"))
    ),
)


def _ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float | None:
    """The median of the rounds' own ratios, each of two runs made minutes apart at most.

    On a machine whose speed drifts (a shared host), a round's two runs drift alike while
    different rounds do not; pairing them keeps the drift out of the ratio. Without runs
    from the same rounds, the ratio of the two medians.
    """
    if not numerators or not denominators or not all(denominators):
        return None
    if len(numerators) == len(denominators):
        ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
        return round(statistics.median(ratios), 3)
    return round(statistics.median(numerators) / statistics.median(denominators), 3)


def _runs(entry: dict[str, Any] | None, runs: str, kept: float | None) -> list[float]:
    if entry is None or kept is None:
        return []
    return [float(value) for value in entry.get(runs) or [kept]]


def _rps(document: dict[str, Any], key: str) -> list[float]:
    entry = document.get("throughput", {}).get(key)
    return _runs(entry, "runs_rps", entry["rps"] if entry else None)


def _gateway_rps_at(document: dict[str, Any], connections: int) -> list[float]:
    for point in document.get("concurrency", {}).get("gateway", []):
        if point["connections"] == connections:
            return _runs(point, "runs_rps", point["rps"])
    return []


def _p50(document: dict[str, Any], key: str) -> list[float]:
    entry = document.get("latency", {}).get(key)
    return _runs(entry, "runs_p50", entry["latency_ms"]["p50"] if entry else None)


def _bulk(document: dict[str, Any], side: int, kept: str) -> list[float]:
    bulk = document.get("bulk") or {}
    if kept not in bulk:
        return []
    return [float(run[side]) for run in bulk.get("runs") or [[bulk[kept]] * 2]]


def targets(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its measured ratio (None when its scenarios did not run)."""
    values = {
        "users_vs_ceiling": _ratio(_rps(document, "users"), _rps(document, "ceiling")),
        "gateway_vs_users": _ratio(_rps(document, "gateway_user"), _rps(document, "users")),
        "users_with_posts_vs_gateway": _ratio(
            _rps(document, "users_with_posts"), _rps(document, "gateway_user")
        ),
        "gateway_256_vs_64": _ratio(_gateway_rps_at(document, 256), _gateway_rps_at(document, 64)),
        "keyset_deep_vs_first": _ratio(_p50(document, "keyset_deep"), _p50(document, "first_page")),
        "bulk_vs_executemany": _ratio(
            _bulk(document, 0, "service_rows_per_second"),
            _bulk(document, 1, "executemany_rows_per_second"),
        ),
        "signed_in_vs_anonymous": _ratio(
            _rps(document, "gateway_user_signed_in"), _rps(document, "gateway_user")
        ),
        "reads_during_logins_vs_alone": _ratio(
            _rps(document, "gateway_user_during_logins"), _rps(document, "gateway_user")
        ),
    }
    for variant in ("metrics", "sampled", "traced"):
        for key in ("user", "posts"):
            values[f"{variant}_vs_plain_{key}"] = _ratio(
                _rps(document, f"obs_{variant}_{key}"), _rps(document, f"obs_plain_{key}")
            )
    judged = []
    for target in TARGETS:
        value = values[target.key]
        judged.append(
            {
                "key": target.key,
                "description": target.description,
                "bound": ""
                if target.bound is None
                else ("<= " if target.at_most else ">= ") + str(target.bound),
                "value": value,
                "met": None if value is None else target.met(value),
            }
        )
    return judged


def _load_row(label: str, entry: dict[str, Any]) -> tuple[str, str, str, str, str]:
    return (
        label,
        f"{entry['rps']:,.0f} req/s",
        f"{entry['latency_ms']['p50']:.2f}",
        f"{entry['latency_ms']['p99']:.2f}",
        str(sum(entry["errors"].values())),
    )


def _scenario_rows(document: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    rows = [
        _load_row(entry["label"], entry)
        for group in ("throughput", "latency")
        for entry in document.get(group, {}).values()
    ]
    during = document.get("throughput", {}).get("gateway_user_during_logins")
    if during and during.get("alongside_rps"):
        logins = sorted(during["alongside_rps"])[len(during["alongside_rps"]) // 2]
        rows.append(("9. logins alongside those reads", f"{logins:,.0f} req/s", "", "", ""))
    bulk = document.get("bulk")
    if bulk:
        for label, key in (
            ("7. POST /products/bulk (1,000 rows), catalog", "service_rows_per_second"),
            ("7. psycopg executemany, same rows", "executemany_rows_per_second"),
        ):
            rows.append((label, f"{bulk[key]:,} rows/s", "", "", ""))
    for server, points in document.get("concurrency", {}).items():
        for point in points:
            label = f"8. {server} GET /users/{{id}}, {point['connections']} connections"
            rows.append(_load_row(label, point))
    return rows


def _target_rows(document: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    verdicts = {True: "met", False: "MISSED", None: "not run"}
    return [
        (
            target["description"],
            "" if target["value"] is None else f"{target['value']:.2f}",
            target["bound"],
            "reported"
            if target["met"] is None and target["value"] is not None
            else verdicts[target["met"]],
        )
        for target in document.get("targets", [])
    ]


def _markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


SCENARIO_HEADER = ("scenario", "throughput", "p50 ms", "p99 ms", "failed")


def table(document: dict[str, Any]) -> str:
    """The scenarios and targets as plain text for the terminal."""
    from rich.console import Console
    from rich.table import Table

    scenarios = Table(*SCENARIO_HEADER, title="scenarios")
    for row in _scenario_rows(document):
        scenarios.add_row(*row)
    ratios = Table("ratio", "value", "target", "", title="targets")
    for target_row in _target_rows(document):
        ratios.add_row(*target_row)
    console = Console(width=120, record=True)
    with console.capture() as capture:
        console.print(scenarios)
        console.print(ratios)
    return capture.get()


def write(document: dict[str, Any], folder: Path, name: str = "latest") -> None:
    """<name>.md and gateway-concurrency.png in `folder`."""
    machine = document["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    scale = document["scale"]
    markdown = f"""# Benchmark report

Run {document["started"]}: every load run {document["seconds"]} s after {document["warmup"]} s of
warm-up, {document.get("repeat", 1)} rounds of all runs interleaved, each run's median round
kept; a ratio is the median of the ratios within each round. {document["connections"]}
connections for scenarios 1-5; wrk with one thread; {machine["workers_per_server"]} uvicorn
worker(s) for every server.

Machine: {machine["cores"]} cores ({machine["cpu"]}), Python {machine["python"]},
PostgreSQL {machine["postgres"]}, {machine["wrk"]}. Packages: {packages}.

Data: {scale["users"]:,} users, {scale["posts"]:,} posts with tags, {scale["comments"]:,}
comments, {scale["products"]:,} products in 50 categories.

## Targets

{_markdown_table(("ratio", "value", "target", "verdict"), _target_rows(document))}

## Scenarios

{_markdown_table(SCENARIO_HEADER, _scenario_rows(document))}

![gateway throughput against concurrency](gateway-concurrency.png)
{_events_section(document.get("events"))}"""
    folder.joinpath(f"{name}.md").write_text(markdown)
    _chart(document, folder / "gateway-concurrency.png")


def _events_section(events: dict[str, Any] | None) -> str:
    if not events:
        return ""
    up, down, idle = events["lag_blog_up_s"], events["lag_after_blog_was_down"], events["idle_cost"]
    rows = [
        ("feed: events read per second (pages of 100)", f"{events['feed_events_per_s']:,.0f}"),
        ("blog: events applied per second", f"{events['applied_events_per_s']:,.0f}"),
        (
            f"deletion to content gone, blog up ({up['samples']} users)",
            f"median {up['median'] * 1000:.0f} ms, worst {up['max'] * 1000:.0f} ms",
        ),
        (
            f"deletions while blog was down ({down['users']} users): all gone after",
            f"{down['from_ready_s'] * 1000:.0f} ms from ready "
            f"({down['from_start_s']:.1f} s from start)",
        ),
        (
            "blog GET /posts/{id}, following the feed / not",
            f"{idle['rps_following']:,.0f} / {idle['rps_not_following']:,.0f} req/s "
            f"({idle['ratio']:.2f})",
        ),
    ]
    return f"""
## 10. Events

{_markdown_table(("measure", "value"), rows)}
"""


def _chart(document: dict[str, Any], path: Path) -> None:
    concurrency = document.get("concurrency")
    if not concurrency:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    names = {"gateway": "gateway (aiohttp pool)", "gateway-httpx": "gateway (httpx pool)"}
    for server, points in concurrency.items():
        axes.plot(
            [p["connections"] for p in points],
            [p["rps"] for p in points],
            marker="o",
            label=names.get(server, server),
        )
    users = document.get("throughput", {}).get("users")
    if users:
        axes.axhline(users["rps"], linestyle="--", color="grey", label="users service directly")
    axes.set_xscale("log", base=2)
    axes.set_xticks(
        [p["connections"] for p in next(iter(concurrency.values()))],
        labels=[str(p["connections"]) for p in next(iter(concurrency.values()))],
    )
    axes.set_xlabel("concurrent connections")
    axes.set_ylabel("requests per second")
    axes.set_title("GET /users/{id} through the gateway")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
