"""Errors meant for people: they carry the exit code and print without a traceback."""

from __future__ import annotations

from . import exitcodes


class UserError(Exception):
    """A mistake the user can fix; printed as its message, exits with `exit_code`."""

    exit_code = exitcodes.USAGE


class ConfigError(UserError):
    """Bad experiment file, bad arguments or a state the command refuses to act on (exit 2)."""

    exit_code = exitcodes.USAGE


class DatasetError(UserError):
    """Missing or inconsistent data (exit 3). Holds every problem found, not only the first."""

    exit_code = exitcodes.DATASET

    def __init__(self, problems: list[str] | str, header: str = "dataset problems") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.header = header
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        lines = [f"{self.header} ({len(self.problems)}):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class NoSpaceError(UserError):
    """The results disk is full (exit 74): wait for space, then resume; nothing was lost."""

    exit_code = exitcodes.NO_SPACE

    def __init__(self, path, free_bytes: int | None, needed_bytes: int | None = None,
                 what: str = "the file") -> None:
        self.path, self.free_bytes, self.needed_bytes = path, free_bytes, needed_bytes
        free = "unknown space" if free_bytes is None else f"{_mb(free_bytes)} MB"
        need = "" if needed_bytes is None else f", {what} needs ~{_mb(needed_bytes)} MB"
        super().__init__(f"no space left on {path}: {free} free{need}. Free space on that disk "
                         "(or point `results:` elsewhere), then resume; the previous files "
                         "are intact")


def _mb(n: int) -> str:
    """Megabytes, with a decimal where whole numbers would read as 0."""
    mb = n / 2**20
    return f"{mb:.0f}" if mb >= 10 else f"{mb:.2f}".rstrip("0").rstrip(".") if mb else "0"
