"""One error type for everything a user can cause; the CLI maps it to `error: ...` and exit 2."""


class McutextError(Exception):
    """A problem the user can fix: bad input file, unknown board, model too large, ...

    `hint` is an optional second line telling what to try.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint
