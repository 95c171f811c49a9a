"""User-facing errors.

A UserError is bad input: the CLI prints its message as one line (what was wrong, where, what to do) and exits
with code 2, with no traceback. Anything else escaping is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a file, a flag, a model or a data folder that cannot be used as given."""


class GraphError(UserError):
    """A QGraph that breaks the IR's rules; the message names the op and the tensor."""
