"""User-facing error types: anything raised as these is shown as one clear line, never a traceback."""


class LawExplorerError(Exception):
    """An error whose message is meant for the user (CLI: one line on stderr; UI: st.error)."""


class InputError(LawExplorerError):
    """Bad user input: a file, a column, a value or an argument that cannot be used."""


class NotAvailableError(LawExplorerError):
    """A resource (model weights, dataset, device) is not reachable from this machine."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(exc).__name__
