"""Interpreter settings for the long-running loops (service, file scoring, benchmarks).

Python's cyclic garbage collector walks every tracked object of the generations it
collects. Once the pipeline is built, the heap holds ~180k objects that live as long as
the process (modules, torch, configuration, model), and every full collection walked them
all again: on the MLP pipeline (``streamgen bench --quick``), 5 full collections over its
65k records cost ~7 us per record, a tenth of the loop. :func:`freeze_heap` moves them out
of the collector's reach once; the collector stays on for everything allocated later.

Examples
--------
>>> import gc
>>> freeze_heap()
>>> gc.get_freeze_count() > 0
True
>>> gc.unfreeze()  # (a test must not leave the interpreter frozen)
"""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Collect once, then exempt every object alive now from later collections.

    Call it when the long-lived objects exist (engine, sources and sinks built, checkpoint
    loaded) and before the loop. A frozen object that becomes garbage is still freed by
    reference counting; only reference cycles among frozen objects would stay until
    :func:`gc.unfreeze`, which is why the collection comes first.
    """
    gc.collect()
    gc.freeze()
