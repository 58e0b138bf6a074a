"""The old entry point of the thread settings, now in ``hebbref.runtime``.

Kept so that code written against it (``hebbref/experiments/distributed.py`` starts each
worker's Numba threads through ``quiet_numba_threads``) keeps working; new code calls
``hebbref.runtime.prepare()``. Importing this module changes nothing.
"""


def quiet_numba_threads():
    """Apply the tuned backend's process settings (``hebbref.runtime.prepare``); True if Numba's threads started passive."""
    from . import runtime

    return any(change["applied"] for change in runtime.prepare() if change["what"].startswith("Numba's"))
