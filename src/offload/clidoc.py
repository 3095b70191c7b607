"""The CLI reference, docs/cli.md, generated from the parser of ``manage.py offload``.

Written from the parser's actions rather than argparse's help text, so it reads the
same on every Python version; tests/test_cli.py fails when docs/cli.md differs from
what this writes. Needs no settings. Example::

    python -m offload.clidoc docs/cli.md     # rewrite it
    python -m offload.clidoc                 # print it
"""

import argparse
import sys

COMMAND = "python -m offload.clidoc docs/cli.md"


def _expand(action, prog):
    text = action.help or ""
    if "%" in text:
        params = {k: v for k, v in dict(vars(action), prog=prog).items() if v is not argparse.SUPPRESS}
        text = text % params
    return text.replace("|", "\\|")


def _shown(parser):
    return [a for a in parser._actions
            if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)]


def _metavar(action):
    if action.metavar:
        return action.metavar
    if action.choices:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _usage_part(action):
    if not action.option_strings:
        return _metavar(action)
    flag = max(action.option_strings, key=len)
    if action.nargs == 0:
        return f"[{flag}]"
    value = f"[{_metavar(action)}]" if action.nargs == "?" else _metavar(action)
    return f"{flag} {value}" if action.required else f"[{flag} {value}]"


def _flag(action):
    part = _usage_part(action)
    if action.option_strings and not action.required:
        part = part[1:-1]  # "[--burst]" -> "--burst"
    return f"`{part}`"


def render():
    from offload.cli import parser as make_parser

    top = make_parser()
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    out = [
        "# Command-line reference",
        "",
        f"Generated from the parser by `{COMMAND}` (tests/test_cli.py checks it is current).",
        "",
        "`offload COMMAND` (the console script, with `DJANGO_SETTINGS_MODULE` set or",
        "`--settings`) is `python manage.py offload COMMAND`. `offload --help` and",
        "`offload COMMAND --help` need no settings. Django's own options (`--settings`,",
        "`--pythonpath`, `--traceback`, `--skip-checks`, `-v`, `--no-color`, `--force-color`)",
        "go before or after the command. A database that does not answer, does not exist or",
        "is not migrated is one line on stderr naming the fix, and exit status 1.",
        "",
        top.description,
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    for name, sub in commands.choices.items():
        out.append(f"| [`{name}`](#offload-{name}) | {sub.description} |")
    for name, sub in commands.choices.items():
        actions = _shown(sub)
        out += ["", f"## offload {name}", "", sub.description, "", "```",
                " ".join([f"offload {name}", *map(_usage_part, actions)]), "```"]
        if actions:
            out += ["", "| argument | meaning |", "| --- | --- |"]
            out += [f"| {_flag(a)} | {_expand(a, sub.prog)} |" for a in actions]
    return "\n".join(out) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = render()
    if argv:
        with open(argv[0], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
