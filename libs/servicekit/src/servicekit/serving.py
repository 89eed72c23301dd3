"""What every process's app serves with, with or without a database: one route table, and a
garbage collector tuned for a long-running server."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, FastAPI

# The collector's first threshold: allocations between collections of the youngest objects.
# Python's 700 suits scripts; a server with hundreds of requests in flight keeps their objects
# alive across young collections, which then scan and promote them over and over.
SERVING_GC_THRESHOLDS = (10_000, 20, 20)


@contextmanager
def collector_tuned_for_serving() -> Iterator[None]:
    """Garbage collection for a running server; the interpreter's own settings again after.

    Modules, routes, models and schemas live as long as the process, yet every full
    collection traverses them all, and no request moves meanwhile. `gc.freeze()` moves what
    exists once the app has started to a generation the collector leaves alone;
    SERVING_GC_THRESHOLDS then collects less often under load (docs/performance.md).
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def include_routes(app: FastAPI, router: APIRouter) -> None:
    """Add the router's routes to the app's own route table.

    `app.include_router()` keeps the router as one entry of the app's table, which FastAPI
    matches on every request by searching the router's routes, and then searches again to
    pick the route: every request pays for two searches and the bookkeeping of the router's
    context. The routes themselves already carry the router's prefix, tags and dependencies,
    so adding them directly serves the same routes, documented the same way, with one search.
    Routers included with options of their own (a prefix, dependencies) need include_router.
    """
    app.router.routes.extend(router.routes)
