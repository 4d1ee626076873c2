"""Errors that reach the user as one line naming the file and the problem."""

from __future__ import annotations


class InputError(Exception):
    """Unreadable or unusable input: a path and what is wrong with it."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class NotALogError(InputError):
    """The file reads, but holds nothing a training log would (a JSON config, a
    tokenizer's settings): an error when the user named the file, skipped when it
    was found in a folder of logs."""


class NoLossError(InputError):
    """A log without any series that is a loss (named or told with --train-loss)."""


class MissingExtraError(ImportError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this feature needs the '{extra}' extra ({module} is not installed): "
            f"pip install 'lossdoctor[{extra}]'"
        )
        self.extra = extra
        self.module = module
