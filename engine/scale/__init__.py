"""Past one machine: the job backend (``local`` | ``ray``) and C-evaluation encoding sharded over Ray actors.

Ray is imported only when the ``ray`` backend is used; ``local`` (the default) needs nothing started. See
docs/scale.md.
"""

from engine.scale.backend import (
    BACKENDS,
    BackendChoice,
    resolve_backend,
    save_default_backend,
    saved_default_backend,
    unreachable,
)

__all__ = ["BACKENDS", "BackendChoice", "resolve_backend", "save_default_backend", "saved_default_backend", "unreachable"]
