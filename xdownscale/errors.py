"""Exceptions raised by xdownscale, each naming the problem and the fix."""


class XDownscaleError(ValueError):
    """Base class: bad input or configuration, with a message that says how to fix it."""


class GridError(XDownscaleError):
    """The grid cannot be used as given (sizes, axes, spacing)."""


class ModelNotFoundError(XDownscaleError, KeyError):
    """An unknown model name or a missing checkpoint."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CheckpointError(XDownscaleError):
    """A checkpoint that is not an xdownscale checkpoint or does not fit the data."""


class DataError(XDownscaleError):
    """Input data that cannot be downscaled (all NaN, wrong variable, ...)."""


def suggest(name: str, choices) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or an empty string."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
