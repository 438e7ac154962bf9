"""One error type for everything a user can cause; the CLI maps it to `error: ...` and exit 2."""


class McutextError(Exception):
    """A problem the user can fix: bad input file, unknown board, model too large, ...

    `hint` is an optional second line telling what to try.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised by the CLI's signal handler (as Ctrl-C raises
    KeyboardInterrupt), so that every `finally` and staging folder is cleaned up on the way
    out. `signum` is the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
