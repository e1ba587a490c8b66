"""A command-line mistake as one paragraph that names the culprit and the closest valid flags.

jsonargparse prints its whole usage (70-odd lines for `fit`) before an error; the CLI builds
its parsers with `exit_on_error=False` and turns the `ArgumentError` into this paragraph
instead (the usage is printed on `--help` only). Its parsers also refuse abbreviations
(`allow_abbrev=False`): argparse would otherwise take `--trainer.max_epoch` for
`--trainer.max_epochs` without a word.
"""

from __future__ import annotations

import argparse
import difflib
import re

from lit_vision.cli.loggers import missing_save_dir
from lit_vision.cli.subcommands import missing_subcommand_message

SUGGESTIONS = 3
_UNRECOGNIZED = "unrecognized arguments: "
# jsonargparse's message when a class (the model, a callback) has no such __init__ argument.
# jsonargparse's message for leading options (`--config FILE`) that no subcommand follows: it
# names Lightning's four only, not this package's own.
_NO_SUBCOMMAND = re.compile(r'expected "subcommand" to be one of .*but it was not provided')
_NOT_ACCEPTED = re.compile(r"Problem with given class_path '([\w.]+)':\s*Option '([\w.]+)' is not accepted")
# A value of the wrong type: 'Parser key "trainer.max_epochs": ... Expected a <class 'int'> ... Given value: abc'.
_BAD_VALUE = re.compile(r'Parser key "([\w.]+)":')
_EXPECTED = re.compile(r"Expected a <class '(?:[\w.]*\.)?(\w+)'>")
_GIVEN = re.compile(r"(?:Given|Got) value: (.*)")
_LITERAL = re.compile(r"Expected a typing\.Literal\[(.*?)\]")


def known_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every long flag `parser` takes (jsonargparse flattens nested sections: --trainer.max_epochs)."""
    return sorted({option for action in parser._actions for option in action.option_strings if option.startswith("--")})


def class_flags(class_path: str, prefix: str) -> list[str]:
    """`prefix + name` for every __init__ argument of the class at `class_path`, as jsonargparse reads it."""
    from jsonargparse import ArgumentParser
    from jsonargparse._util import import_object

    try:
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(import_object(class_path), nested_key="x")
    except Exception:  # an unimportable class: jsonargparse's own message already names it
        return []
    return [prefix + flag.removeprefix("--x.") for flag in known_flags(parser) if flag.startswith("--x.")]


def did_you_mean(culprit: str, candidates: list[str]) -> str:
    """' (did you mean --a?)' for the closest candidates, or '' when none is close."""
    # A truncated flag (abbreviations are off): the flags it starts.
    close = [flag for flag in candidates if flag.startswith(culprit)][:SUGGESTIONS]
    if not close:
        # Flags share long section prefixes (--trainer.), which lift every ratio: keep only
        # those about as close as the closest one.
        scored = sorted(((difflib.SequenceMatcher(None, culprit, flag).ratio(), flag) for flag in candidates), reverse=True)
        best = scored[0][0] if scored else 0.0
        close = [flag for ratio, flag in scored[:SUGGESTIONS] if ratio >= max(0.6, best - 0.05)]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def flag_error_message(error: argparse.ArgumentError, subcommand: str | None, parser: argparse.ArgumentParser) -> str:
    """One paragraph for a parse error of `lit-vision SUBCOMMAND`, `parser` being that
    subcommand's parser (its flags are the candidates for "did you mean")."""
    text = str(error).strip()
    command = f"lit-vision {subcommand}" if subcommand else "lit-vision"
    help_hint = f"`{command} --help` lists every option."
    if subcommand is None and _NO_SUBCOMMAND.search(text):
        return missing_subcommand_message()
    if text.startswith(_UNRECOGNIZED):
        tokens = text[len(_UNRECOGNIZED) :].split()
        flags = [token.split("=", 1)[0] for token in tokens if token.startswith("--")]
        candidates = known_flags(parser)
        named = "; ".join(f"{flag}{did_you_mean(flag, candidates)}" for flag in flags) or " ".join(tokens)
        noun = "flag" if len(flags) == 1 else "flags"
        return f"unknown {noun} {named} for `{command}`. {help_hint}"
    match = _NOT_ACCEPTED.search(text)
    # A bad value for an argument the named class has wins over the base class refusing it
    # (`--trainer.callbacks.init_args.fraction lots`: lightning.Callback has no `fraction`).
    if match and not (_BAD_VALUE.match(text) and _nested_argument(text)):
        class_path, option = match.groups()
        outer = _BAD_VALUE.match(text)
        section = outer.group(1) if outer else "model"
        culprit = f"--{section}.init_args.{option}"
        candidates = class_flags(class_path, f"--{section}.init_args.")
        hint = (
            f"`{command} --model.help {class_path.rsplit('.', 1)[-1]}` lists the model's options."
            if section == "model"
            else help_hint
        )
        return f"unknown flag {culprit}: {class_path} has no argument {option!r}{did_you_mean(culprit, candidates)}. {hint}"
    match = _BAD_VALUE.match(text)
    if match and missing_save_dir(text):  # a file logger in a config file, without save_dir
        return f"{missing_save_dir(text)} (`{command}`). {help_hint}"
    if match:
        key = match.group(1)
        nested = _nested_argument(text)
        if nested:  # name the argument itself, and what it (not the class choice) expects
            key, text = f"{key}.init_args.{nested[0]}", f'Parser key "{key}": {nested[1]}'
        expected = [name.replace("NoneType", "None") for name in _EXPECTED.findall(text)]
        expected += [f"one of {values}" for values in _LITERAL.findall(text)]
        given = _GIVEN.search(text)
        value = f" = {given.group(1).strip()}" if given else ""  # a flag's or a YAML file's value
        wanted = f": expected {' or '.join(dict.fromkeys(expected))}" if expected else f": {_first_reason(text)}"
        return f"{key}{value}{wanted} (`{command}`). {help_hint}"
    # Anything else (a missing value, an unknown subcommand): jsonargparse's lines in one paragraph.
    return f"{_one_paragraph(text)} (`{command}`). {help_hint}"


def _nested_argument(text: str) -> tuple[str, str] | None:
    """(argument, its own error lines) when jsonargparse's error for a class-typed key (`model`)
    comes from one argument of the class tried (`--model.init_args.lr fast`): the outer key alone
    would name the wrong thing, and its "expected" the class choice."""
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if "Problem with given class_path" in line:
            inner = _BAD_VALUE.search(lines[i + 1])
            if inner is None:  # this class refused the option itself: look at the next one
                continue
            indent = len(lines[i + 1]) - len(lines[i + 1].lstrip())
            block = []
            for following in lines[i + 2 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following)
            return inner.group(1), "\n".join(block)
    return None


def _first_reason(text: str) -> str:
    """What is wrong, without the 'Parser key "K":' that the message starts with."""
    after_key = _BAD_VALUE.sub("", text, count=1).strip()
    lines = [line.strip() for line in after_key.splitlines() if line.strip()]
    return lines[0] if lines else text


def _one_paragraph(text: str) -> str:
    lines = [line.strip().lstrip("- ").strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines).replace(":;", ":")
