"""The ratios a run is judged by, and the table, markdown report and chart that show them."""

import statistics
from collections.abc import Callable, Iterator, Sequence
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
    # Retired as a target: a page of 20 users with their posts against one user's row compares
    # two amounts of work. The view is judged against the monolith's answer to the same page.
    Target("users_with_posts_vs_gateway", "/users-with-posts?limit=20 vs gateway user read", None),
    Target(
        "users_with_posts_vs_monolith",
        "gateway /users-with-posts?limit=20 vs the monolith's, in one SQL round trip",
        0.5,
    ),
    Target("gateway_vs_nginx", "gateway GET /users/{id} vs nginx proxying to users", 0.8),
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


# Every gateway run at these connections: its p99 at most TAIL_BOUND times its p50.
TAIL_CONNECTIONS = (64, 256)
TAIL_BOUND = 4.0


def _ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float | None:
    """The median of the rounds' own ratios, each of two runs made minutes apart at most.

    On a machine whose speed drifts (a shared host), a round's two runs drift alike while
    different rounds do not; pairing them keeps the drift out of the ratio. Without runs
    from the same rounds, the ratio of the two medians.
    """
    if not numerators or not denominators or not all(denominators):
        return None
    if ratios := _paired(numerators, denominators):
        return round(statistics.median(ratios), 3)
    return round(statistics.median(numerators) / statistics.median(denominators), 3)


def _paired(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Each round's ratio of its two runs; none unless both sides ran in the same rounds."""
    if len(numerators) != len(denominators) or not all(denominators):
        return []
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def _runs(entry: dict[str, Any] | None, runs: str, kept: float | None) -> list[float]:
    if entry is None or kept is None:
        return []
    return [float(value) for value in entry.get(runs) or [kept]]


def _rps(document: dict[str, Any], key: str) -> list[float]:
    entry = document.get("throughput", {}).get(key)
    return _runs(entry, "runs_rps", entry["rps"] if entry else None)


def _reference_rps(document: dict[str, Any], variant: str, key: str) -> list[float]:
    """What scenario 11's `variant` is compared with: the reference's throughput beside each of
    its runs, where the run drove the two in turns, else the reference's own runs."""
    entry = document.get("throughput", {}).get(f"obs_{variant}_{key}")
    if entry is not None and entry.get("reference_rps"):
        return [float(value) for value in entry["reference_rps"]]
    return _rps(document, f"obs_plain_{key}")


def _gateway_rps_at(document: dict[str, Any], connections: int) -> list[float]:
    for point in document.get("concurrency", {}).get("gateway", []):
        if point["connections"] == connections:
            return _runs(point, "runs_rps", point["rps"])
    return []


def _p50(document: dict[str, Any], key: str) -> list[float]:
    entry = document.get("latency", {}).get(key)
    return _p50_runs(entry) if entry else []


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
        "users_with_posts_vs_monolith": _ratio(
            _rps(document, "users_with_posts"), _rps(document, "monolith")
        ),
        "gateway_vs_nginx": _ratio(_rps(document, "gateway_user"), _rps(document, "nginx")),
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
                _rps(document, f"obs_{variant}_{key}"), _reference_rps(document, variant, key)
            )
    judged = [_judged(target, values[target.key]) for target in TARGETS]
    for key, run in _gateway_runs(document):
        if run["connections"] not in TAIL_CONNECTIONS:
            continue
        tail = _ratio(_runs(run, "runs_p99", run["latency_ms"]["p99"]), _p50_runs(run))
        label = run["label"]
        if "connections" not in label:
            label += f", {run['connections']} connections"
        target = Target(f"tail_{key}", f"p99 / p50: {label}", TAIL_BOUND, at_most=True)
        judged.append(
            {
                **_judged(target, tail),
                "tail": {"rps": run["rps"], **run["latency_ms"]},
            }
        )
    return judged


def _judged(target: Target, value: float | None) -> dict[str, Any]:
    return {
        "key": target.key,
        "description": target.description,
        "bound": ""
        if target.bound is None
        else ("<= " if target.at_most else ">= ") + str(target.bound),
        "value": value,
        "met": None if value is None else target.met(value),
    }


def _is_gateway(server: str) -> bool:
    """Whether the bench's server `server` is a gateway: `gateway`, `gateway-httpx`, or a copy
    of scenario 11 (`<variant>-gateway`)."""
    return "gateway" in server.split("-")


def _gateway_runs(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every load run of a gateway, by a key of its own."""
    for key, entry in document.get("throughput", {}).items():
        if _is_gateway(entry.get("server", "")):
            yield key, entry
    for server, points in document.get("concurrency", {}).items():
        if _is_gateway(server):
            for point in points:
                label = point.get("label") or f"8. {server} GET /users/{{id}}"
                yield f"{server}_{point['connections']}", {**point, "label": label}


def _p50_runs(entry: dict[str, Any]) -> list[float]:
    return _runs(entry, "runs_p50", entry["latency_ms"]["p50"])


PERCENTILES = ("p50", "p90", "p99", "max")
Row = tuple[str, ...]


def _latencies(latency_ms: dict[str, float]) -> Row:
    return tuple(f"{latency_ms[name]:.2f}" for name in PERCENTILES)


def _load_row(label: str, entry: dict[str, Any]) -> Row:
    return (
        label,
        f"{entry['rps']:,.0f} req/s",
        *_latencies(entry["latency_ms"]),
        str(sum(entry["errors"].values())),
    )


def _rate_row(label: str, rate: str) -> Row:
    return (label, rate, *("" for _ in PERCENTILES), "")


def _scenario_rows(document: dict[str, Any]) -> list[Row]:
    rows = [
        _load_row(entry["label"], entry)
        for group in ("throughput", "latency")
        for entry in document.get(group, {}).values()
    ]
    during = document.get("throughput", {}).get("gateway_user_during_logins")
    if during and during.get("alongside_rps"):
        logins = sorted(during["alongside_rps"])[len(during["alongside_rps"]) // 2]
        rows.append(_rate_row("9. logins alongside those reads", f"{logins:,.0f} req/s"))
    bulk = document.get("bulk")
    if bulk:
        for label, key in (
            ("7. POST /products/bulk (1,000 rows), catalog", "service_rows_per_second"),
            ("7. psycopg executemany, same rows", "executemany_rows_per_second"),
        ):
            rows.append(_rate_row(label, f"{bulk[key]:,} rows/s"))
    for server, points in document.get("concurrency", {}).items():
        for point in points:
            label = f"8. {server} GET /users/{{id}}, {point['connections']} connections"
            rows.append(_load_row(label, point))
    return rows


OBSERVABILITY_HEADER = (
    "11. run",
    "throughput",
    "vs neither",
    "middle half of rounds",
    "CPU/request",
)


def _observability_rows(document: dict[str, Any]) -> list[Row]:
    """Scenario 11's runs: each variant's median throughput, the median and middle half of its
    rounds' ratios to `plain`'s beside it in the same round, and its servers' median CPU per
    request."""
    rows: list[Row] = []
    throughput = document.get("throughput", {})
    for key in ("user", "posts"):
        for variant in ("plain", "metrics", "sampled", "traced"):
            entry = throughput.get(f"obs_{variant}_{key}")
            if entry is None:
                continue
            measured = _rps(document, f"obs_{variant}_{key}")
            reference = measured if variant == "plain" else _reference_rps(document, variant, key)
            ratios = _paired(measured, reference)
            middle = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else []
            cpu = entry.get("runs_cpu_us")
            rows.append(
                (
                    entry["label"].removeprefix("11. gateway "),
                    f"{statistics.median(measured):,.0f} req/s",
                    f"{statistics.median(ratios):.3f}" if ratios else "",
                    f"{middle[0]:.3f} to {middle[2]:.3f}" if middle else "",
                    f"{statistics.median(cpu):,.0f} µs" if cpu else "",
                )
            )
    return rows


def _verdict(target: dict[str, Any]) -> str:
    if target["met"] is None:
        return "not run" if target["value"] is None else "reported"
    return "met" if target["met"] else "MISSED"


def _value(target: dict[str, Any]) -> str:
    return "" if target["value"] is None else f"{target['value']:.2f}"


def _target_rows(document: dict[str, Any]) -> list[Row]:
    return [
        (target["description"], _value(target), target["bound"], _verdict(target))
        for target in document.get("targets", [])
        if "tail" not in target
    ]


def _tail_rows(document: dict[str, Any]) -> list[Row]:
    return [
        (
            target["description"].removeprefix("p99 / p50: "),
            f"{target['tail']['rps']:,.0f} req/s",
            *_latencies(target["tail"]),
            _value(target),
            _verdict(target),
        )
        for target in document.get("targets", [])
        if "tail" in target
    ]


def _markdown_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


SCENARIO_HEADER = ("scenario", "throughput", *(f"{name} ms" for name in PERCENTILES), "failed")
TAIL_HEADER = (
    "gateway run",
    "throughput",
    *(f"{name} ms" for name in PERCENTILES),
    "p99/p50",
    "verdict",
)


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
    tails = Table(*TAIL_HEADER, title=f"tail latency: p99 at most {TAIL_BOUND:g} times p50")
    for tail_row in _tail_rows(document):
        tails.add_row(*tail_row)
    observability = Table(*OBSERVABILITY_HEADER, title="11. what observability costs")
    for observability_row in _observability_rows(document):
        observability.add_row(*observability_row)
    console = Console(width=140, record=True)
    with console.capture() as capture:
        console.print(scenarios)
        console.print(ratios)
        console.print(tails)
        if observability.rows:
            console.print(observability)
    return capture.get()


def write(document: dict[str, Any], folder: Path, name: str = "latest") -> None:
    """<name>.md in `folder`, and beside it the charts of the gateway's throughput and latency
    against concurrency (gateway-concurrency.png and gateway-latency.png for the full run,
    prefixed with `name` for others)."""
    machine = document["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    scale = document["scale"]
    prefix = "" if name == "latest" else f"{name}-"
    charts = ""
    if document.get("concurrency"):
        throughput_chart, latency_chart = (
            f"{prefix}gateway-concurrency.png",
            f"{prefix}gateway-latency.png",
        )
        _chart(document, folder / throughput_chart)
        _latency_chart(document, folder / latency_chart)
        charts = (
            f"\n![gateway throughput against concurrency]({throughput_chart})\n"
            f"![gateway latency percentiles against concurrency]({latency_chart})\n"
        )
    nginx = f", nginx {machine['nginx']}" if machine.get("nginx") else ""
    markdown = f"""# Benchmark report

Run {document["started"]}: every load run {document["seconds"]} s after {document["warmup"]} s of
warm-up, {_rounds(document)}, each run's median round
kept with its latencies (wrk's); a ratio is the median of the ratios within each round.
{document["connections"]} connections for scenarios 1-5, 9, 12 and 13 (4 and 5 at
{TAIL_CONNECTIONS[-1]} as well); wrk with one thread; {machine["workers_per_server"]} worker(s)
for every server (uvicorn's; nginx's).

Machine: {machine["cores"]} cores ({machine["cpu"]}), Python {machine["python"]},
PostgreSQL {machine["postgres"]}, {machine["wrk"]}{nginx}. Packages: {packages}.

Data: {scale["users"]:,} users, {scale["posts"]:,} posts with tags, {scale["comments"]:,}
comments, {scale["products"]:,} products in 50 categories.

## Targets

{_markdown_table(("ratio", "value", "target", "verdict"), _target_rows(document))}
{_monolith_note(document.get("monolith_differences"))}
## Tail latency

Every gateway run at {" and ".join(map(str, TAIL_CONNECTIONS))} connections: its p99 at most
{TAIL_BOUND:g} times its p50 (the median of the rounds' own ratios).

{_markdown_table(TAIL_HEADER, _tail_rows(document))}

## Scenarios

{_markdown_table(SCENARIO_HEADER, _scenario_rows(document))}
{charts}{_observability_section(document)}{_events_section(document.get("events"))}"""
    folder.joinpath(f"{name}.md").write_text(markdown)


def _rounds(document: dict[str, Any]) -> str:
    """How the run's rounds went: scenario 11 runs rounds of its own, after the others."""
    interleaved = f"{document.get('repeat', 1)} rounds of all runs interleaved"
    rounds_11 = document.get("rounds_11")
    if not rounds_11:
        return interleaved
    own = f"scenario 11 in {rounds_11} rounds of its own"
    if document.get("turns_11"):
        own += ", in turns of a second"
    others = document.get("bulk") or any(
        not key.startswith("obs_")
        for group in ("throughput", "latency", "concurrency")
        for key in document.get(group, {})
    )
    return f"{interleaved} and {own} after them" if others else own


def _monolith_note(differences: list[str] | None) -> str:
    if not differences:
        return ""
    listed = "\n".join(f"- {difference}" for difference in differences)
    return f"""
The monolith (12) answered these pages unlike the gateway, so its ratio compares different
work:

{listed}
"""


def _observability_section(document: dict[str, Any]) -> str:
    rows = _observability_rows(document)
    if not rows:
        return ""
    rounds_11, turns_11 = document.get("rounds_11"), document.get("turns_11")
    if rounds_11 and turns_11:
        how = f"""{rounds_11} round{"s" if rounds_11 > 1 else ""} of their own. In each round,
every other variant was started afresh beside a fresh neither, and wrk drove the two in turns
of a second ({turns_11} turns each per read, in pairs whose order alternates, each once the
last one's requests were done); a variant's run in a round is the sum of its turns, and a
ratio is the median of the rounds' ratios to neither's turns beside it"""
    else:
        # A run made before scenario 11 had rounds of its own ran it in the others' rounds.
        rounds = (
            f"{rounds_11} rounds of their own, each starting every variant afresh, in an order "
            "turned by one each round"
            if rounds_11
            else "The rounds of all runs"
        )
        how = f"""{rounds}; a ratio is the median of the rounds' ratios to neither's run in the same
round"""
    return f"""
## 11. What observability costs

{how},
beside the middle half of those ratios. CPU/request: what the variant's gateway, users and
blog used per request, from /proc.

{_markdown_table(OBSERVABILITY_HEADER, rows)}
"""


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


_SERVER_NAMES = {"gateway": "gateway (aiohttp pool)", "gateway-httpx": "gateway (httpx pool)"}


def _chart(document: dict[str, Any], path: Path) -> None:
    """Scenario 8's requests per second against connections, and the users service's."""
    concurrency = document["concurrency"]

    def plot(axes: Any) -> None:
        for server, points in concurrency.items():
            axes.plot(
                [p["connections"] for p in points],
                [p["rps"] for p in points],
                marker="o",
                label=_SERVER_NAMES.get(server, server),
            )
        users = document.get("throughput", {}).get("users")
        if users:
            axes.axhline(users["rps"], linestyle="--", color="grey", label="users service directly")
        axes.set_ylim(bottom=0)
        axes.legend()

    _concurrency_chart(concurrency, path, "requests per second", plot)


def _latency_chart(document: dict[str, Any], path: Path) -> None:
    """Scenario 8's latency percentiles against connections: a colour for each percentile, a
    line style for each gateway."""
    concurrency = document["concurrency"]
    styles = ("-", "--", ":", "-.")

    def plot(axes: Any) -> None:
        for style, (server, points) in zip(styles, concurrency.items(), strict=False):
            for colour, percentile in enumerate(PERCENTILES):
                axes.plot(
                    [p["connections"] for p in points],
                    [p["latency_ms"][percentile] for p in points],
                    marker="o",
                    linestyle=style,
                    color=f"C{colour}",
                    label=f"{percentile}, {_SERVER_NAMES.get(server, server)}",
                )
        # From a millisecond to seconds: only a logarithmic scale shows both ends.
        axes.set_yscale("log")
        axes.legend(fontsize="x-small", ncols=2)

    _concurrency_chart(concurrency, path, "latency, milliseconds (wrk)", plot)


def _concurrency_chart(
    concurrency: dict[str, list[dict[str, Any]]],
    path: Path,
    unit: str,
    plot: Callable[[Any], None],
) -> None:
    """A chart of GET /users/{id} through the gateway against connections, drawn by `plot`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    plot(axes)
    connections = [p["connections"] for p in next(iter(concurrency.values()))]
    axes.set_xscale("log", base=2)
    axes.set_xticks(connections, labels=[str(count) for count in connections])
    axes.set_xlabel("concurrent connections")
    axes.set_ylabel(unit)
    axes.set_title("GET /users/{id} through the gateway")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
