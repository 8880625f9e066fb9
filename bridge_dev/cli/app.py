"""The segment-bridge command's root: options, the stack it acts on, how results print, and main (every error
mapped to {"code", "message"} in one place)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from bridge_dev.target import LOCAL_ENDPOINT, Target, TargetError, deployed_target, local_target
from bridge_dev.template import NoLocalStack, TemplateError
from segment_bridge import __version__
from segment_bridge.errors import BridgeError

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """The target is found on first use, so commands that need no stack (mapping validate) need none."""

    def __init__(self, find: Callable[[], Target]) -> None:
        self._find = find
        self._target: Target | None = None

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = self._find()
        return self._target


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(command)


CONTROLS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
"""What a terminal may interpret rather than show: C0 (ESC starts CSI and OSC sequences, CR rewrites a
line), DEL, C1 (CSI and OSC in one byte), the line and paragraph separators, the bidi overrides and
isolates (which reorder what is shown), and lone surrogates (which no terminal encoding can print)."""
LINE_CONTROLS = re.compile(CONTROLS.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))
"""The same, but for the newline that separates the lines of a command's own text."""


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_text(text: str) -> str:
    """A value from outside (an event name, an id, a reason) as it may be printed to a terminal: every
    control character escaped visibly (ESC as `\\x1b`, U+202E as `\\u202e`), newlines included."""
    return CONTROLS.sub(_escape, text)


def show(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    """The result: JSON as it is (JSON escapes what it must), or the command's text with every control
    character but its newlines escaped, whatever the text quotes."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(LINE_CONTROLS.sub(_escape, text() if callable(text) else text))


def target_of(ctx: click.Context) -> Target:
    context = ctx.find_object(Context)
    if context is None:  # only when a command is called outside `cli`
        raise click.UsageError("segment-bridge commands run under the segment-bridge group")
    return context.target


def fields_text(rows: list[tuple[str, Any]]) -> str:
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {value_text(value)}" for name, value in rows)


def value_text(value: Any) -> str:
    """One value in a table cell or a field: "-" for nothing, JSON for maps and lists, control characters
    escaped (terminal_text)."""
    if isinstance(value, dict | list):
        return terminal_text(json.dumps(value, ensure_ascii=False, default=str)) if value else "-"
    return "-" if value is None or value == "" else terminal_text(str(value))


def table_text(rows: list[dict[str, Any]], columns: Sequence[str], empty: str) -> str:
    if not rows:
        return empty
    cells = [[value_text(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[n]) for line in cells)) for n, column in enumerate(columns)]
    header = "  ".join(column.upper().ljust(widths[n]) for n, column in enumerate(columns))
    body = ("  ".join(c.ljust(widths[n]) for n, c in enumerate(line)).rstrip() for line in cells)
    return "\n".join([header.rstrip(), *body])


def masked(secret: str) -> str:
    return f"…{secret[-4:]}" if len(secret) > 8 else "…"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--stack",
    envvar="SEGMENT_BRIDGE_STACK",
    help="A deployed stack's name (CloudFormation). Without it: the local stack.",
)
@click.option("--region", envvar=["AWS_REGION", "AWS_DEFAULT_REGION"], help="The deployed stack's region.")
@click.option("--profile", envvar="AWS_PROFILE", help="AWS credentials profile for a deployed stack.")
@click.option(
    "--endpoint",
    envvar="SEGMENT_BRIDGE_ENDPOINT",
    default=LOCAL_ENDPOINT,
    show_default=True,
    help="The local stack's embedded AWS (make dev's --aws-port).",
)
@click.version_option(__version__, prog_name="segment-bridge")
@click.pass_context
def cli(
    ctx: click.Context, stack: str | None, region: str | None, profile: str | None, endpoint: str
) -> None:
    """Operate Segment Bridge: workspaces and keys, mappings, profiles, dead letters, replays."""
    ctx.obj = Context(lambda: deployed_target(stack, region, profile) if stack else local_target(endpoint))


def utc_day(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _error_body(error: BaseException) -> dict[str, Any]:
    """Any exception as {"code", "message"}: the one place the CLI maps errors."""
    if isinstance(error, click.UsageError):
        return {"code": "usage", "message": error.format_message()}
    if isinstance(error, click.ClickException):
        return {"code": "invalid", "message": error.format_message()}
    if isinstance(error, BridgeError):
        return {"code": error.code, "message": error.message}
    if isinstance(error, ValidationError):
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in error.errors(include_url=False)
        )
        return {"code": "invalid", "message": reasons}
    if isinstance(error, NoLocalStack):
        return {"code": "no_stack", "message": f"{error}. Start it with `make dev`, or pass --stack NAME."}
    if isinstance(error, TargetError):
        return {"code": "no_stack", "message": str(error)}
    if isinstance(error, TemplateError):
        return {"code": "invalid_template", "message": str(error)}
    if isinstance(error, FileNotFoundError | IsADirectoryError | PermissionError):
        return {"code": "unreadable_file", "message": f"{error.strerror}: {error.filename}"}
    if isinstance(error, UnicodeDecodeError):
        return {"code": "unreadable_file", "message": f"not UTF-8 text ({error.reason})"}
    if isinstance(error, ValueError | TypeError | ArithmeticError | RecursionError):
        return {"code": "invalid", "message": f"{type(error).__name__}: {error}"}
    if isinstance(error, BotoCoreError | ClientError):
        return {"code": "service_unavailable", "message": str(error)}
    return {"code": "internal_error", "message": f"{type(error).__name__}: {error}"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status. Every exception ends here as an error on stderr (JSON with
    --json), never as a traceback: 2 for wrong usage, 1 for anything else."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="segment-bridge", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return 1
    except Exception as error:  # the one place every error becomes {"code", "message"}
        return _report(error, as_json="--json" in args)
    return 0


def _report(error: Exception, *, as_json: bool) -> int:
    body = _error_body(error)
    status = 2 if isinstance(error, click.UsageError) else 1
    if as_json:
        click.echo(json.dumps(body), err=True)  # ASCII: one line whatever the message quotes
        return status
    line = f"error: {terminal_text(body['message'])}"
    context = getattr(error, "ctx", None) if isinstance(error, click.UsageError) else None
    if context is not None:
        line += f" (see {context.command_path} --help)"
    click.echo(line, err=True)  # one line, whatever the error quotes
    return status


if __name__ == "__main__":
    sys.exit(main())


if TYPE_CHECKING:
    pass
