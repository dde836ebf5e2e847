"""Exception types shared by the whole package."""

from __future__ import annotations

from pathlib import Path


class GraphrecError(Exception):
    """Base class of every error graphrec raises on purpose."""


class ConfigError(GraphrecError, ValueError):
    """An argument, option or configuration value is invalid.

    The message names the argument and what was expected. It subclasses :class:`ValueError`,
    so code that catches ``ValueError`` keeps working; the CLI reports it as one line, while an
    unexpected ``ValueError`` from a bug keeps its traceback.
    """


def _shorten(text: str, width: int = 60) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= width else text[: width - 3] + "..."


class InputFormatError(GraphrecError, ValueError):
    """A file (or in-memory input) does not have the expected format.

    The message names the file, the 1-based line number, the offending content (shortened)
    and what was expected, e.g.::

        edges.txt, line 7: 'a b c d' has 4 fields; expected 2 or 3 (source target [weight])
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        content: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.content = content
        self.problem = problem
        self.expected = expected
        where = self.path or "<input>"
        if line is not None:
            where += f", line {line}"
        msg = f"{where}: "
        if content is not None:
            msg += f"{_shorten(content)!r}: "
        msg += problem
        if expected:
            msg += f"; expected {expected}"
        super().__init__(msg)


class DatasetNotFoundError(GraphrecError, FileNotFoundError):
    """Files of a named dataset are missing under the root the user gave."""

    def __init__(self, dataset: str, root: str | Path, missing: list[str], hint: str = "") -> None:
        self.dataset = dataset
        self.root = str(root)
        self.missing = list(missing)
        lines = [f"dataset {dataset!r}: {len(missing)} file(s) missing under {root}:"]
        lines += [f"  - {Path(root) / m}" for m in missing]
        lines.append("graphrec never downloads data; place these files there and retry.")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class MemoryBudgetError(GraphrecError, MemoryError):
    """A computation would need more memory than the budget the caller set."""


class MissingExtraError(GraphrecError, ImportError):
    """An optional dependency group (``pip`` extra) is not installed.

    The message is one line naming the feature, the extra and the install command, e.g.::

        the Flower adapter needs the 'fl' extra: pip install -e ".[fl]" (from the graphrec clone)
    """

    def __init__(self, feature: str, extra: str) -> None:
        self.extra = extra
        super().__init__(
            f"{feature} needs the '{extra}' extra: pip install -e \".[{extra}]\" "
            "(run in the graphrec clone; 'make install-dev' installs every extra)"
        )
