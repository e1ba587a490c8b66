"""`--seeds 0,1,2` on fit / validate / test: the same command once per seed (`--seed_everything
S`), each run an ordinary one in its own folder, then one summary over them (`summary`) printed
and written to <experiment's log folder>/seeds/<the runs' versions>/summary.{json,csv}.

    lit-vision fit --config configs/quickstart.yaml --seeds 0,1,2
    lit-vision test --config configs/quickstart.yaml --seeds 0,1,2 --ckpt_path last

On validate / test, `--ckpt_path last|best` means each seed's own model: the newest run of the
experiment trained with that seed. A checkpoint file is evaluated once per seed instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from lit_vision import console
from lit_vision.run_folders import newest_checkpoint
from lit_vision.errors import LitVisionError
import lit_vision.studies.runner as runner
import lit_vision.studies.summary as summary
from lit_vision.studies.space import resolved_config

SUBCOMMANDS = ("fit", "validate", "test")


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (distinct integers)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise LitVisionError(f"--seeds {text}: expected distinct integers separated by commas, such as --seeds 0,1,2.")
    return seeds


def take_seeds(argv: list[str]) -> tuple[list[int] | None, list[str]]:
    """Split `--seeds X` / `--seeds=X` out of a command line: (seeds or None, the rest)."""
    rest, seeds, i = [], None, 0
    while i < len(argv):
        token = argv[i]
        if token == "--seeds":
            if i + 1 >= len(argv):
                raise LitVisionError("--seeds needs a value, such as --seeds 0,1,2.")
            seeds, i = parse_seeds(argv[i + 1]), i + 2
            continue
        if token.startswith("--seeds="):
            seeds = parse_seeds(token.split("=", 1)[1])
        else:
            rest.append(token)
        i += 1
    return seeds, rest


def summary_folder(records: list[dict]) -> Path:
    """<experiment's log folder>/seeds/version_A+B+C: named by the runs it sums up, so two
    summaries never share a folder."""
    folders = [Path(r["log_dir"]) for r in records]
    experiment = folders[0].parent  # logs/<experiment>/ or logs/<experiment>/eval/
    versions = "+".join(f.name.removeprefix("version_") for f in folders)
    return experiment / "seeds" / f"version_{versions}"


def run_seeds(
    subcommand: str, args: list[str], seeds: list[int], extra_flags: list[str] = (), checkpoints: dict[int, str] | None = None
) -> tuple[list[dict], int]:
    """Run `lit-vision SUBCOMMAND ARGS --seed_everything S` for each seed, one after another
    (with `checkpoints`, each seed's own `--ckpt_path`). Returns the runs' records and 0, or the
    records so far and the exit code of the run that did not finish (a signal, an error): the
    remaining seeds are not run."""
    records = []
    for seed in seeds:
        console.say(f"seed {seed} ({len(records) + 1} of {len(seeds)}): lit-vision {subcommand} ... --seed_everything {seed}")
        seed_args = args if checkpoints is None else [*without_flag(args, "--ckpt_path"), "--ckpt_path", checkpoints[seed]]
        result = runner.run(subcommand, seed_args, [*extra_flags, "--seed_everything", str(seed)])
        if result.exit_code != 0 or result.record is None:
            return records, result.exit_code or 1
        records.append(result.record)
    return records, 0


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of the last `FLAG X` / `FLAG=X` in `args` (None if absent)."""
    value = None
    for i, token in enumerate(args):
        if token == flag and i + 1 < len(args):
            value = args[i + 1]
        elif token.startswith(flag + "="):
            value = token.split("=", 1)[1]
    return value


def without_flag(args: list[str], flag: str) -> list[str]:
    """`args` less every `FLAG X` / `FLAG=X`."""
    rest, skip = [], False
    for token in args:
        if skip:
            skip = False
        elif token == flag:
            skip = True
        elif not token.startswith(flag + "="):
            rest.append(token)
    return rest


def checkpoints_of_seeds(subcommand: str, args: list[str], seeds: list[int]) -> dict[int, str] | None:
    """For validate / test with `--ckpt_path last|best`: each seed's own checkpoint — of the
    newest run of the experiment trained with that seed (what `fit --seeds` left) — so the
    summary spreads over the trained models, not over one model's evaluation seeds. None
    otherwise (a checkpoint file is evaluated once per seed: the spread of the evaluation's own
    randomness, such as the attacks' random starts)."""
    keyword = flag_value(args, "--ckpt_path")
    if subcommand == "fit" or keyword not in ("last", "best"):
        return None
    code, printed, errors = resolved_config(args, [], subcommand)
    if code != 0:
        raise LitVisionError(f"lit-vision {subcommand} {' '.join(args)}: the CLI refused the command line:\n{errors.strip()}")
    experiment = yaml.safe_load(printed).get("experiment")
    checkpoints = {}
    for seed in seeds:
        checkpoints[seed] = str(newest_checkpoint(experiment, keyword, seed=seed))
        console.say(f"seed {seed}: --ckpt_path {keyword} is {checkpoints[seed]} (the newest run of {experiment!r} trained with seed {seed}).")
    return checkpoints


def wants_seeds(argv: list[str]) -> bool:
    """Whether a `lit-vision fit|validate|test ...` command line asks for --seeds."""
    return any(token == "--seeds" or token.startswith("--seeds=") for token in argv)


def main(subcommand: str, argv: list[str]) -> None:
    """`lit-vision SUBCOMMAND ... --seeds 0,1,2`: the runs, then the summary; exits with the
    status of a run that failed (the summary then covers the runs that finished, if any), or 2
    with one paragraph for bad input."""
    try:
        code = run(subcommand, argv)
    except LitVisionError as error:
        console.say_error(str(error))
        sys.exit(2)
    if code:
        sys.exit(code)


def run(subcommand: str, argv: list[str]) -> int:
    """The runs and their summary; returns the exit status."""
    seeds, args = take_seeds(argv)
    try:  # checked before the runs, not after them: the summary's intervals need it
        import scipy.stats  # noqa: F401
    except ImportError as error:
        raise LitVisionError(f"--seeds needs scipy for its intervals ({error}): pip install 'lit-vision[tune]'.") from None
    if subcommand not in SUBCOMMANDS:
        raise LitVisionError(f"--seeds works with {', '.join(SUBCOMMANDS)}, not with {subcommand}.")
    if any(a in ("--print_config", "--help", "-h") or a.startswith("--print_config=") for a in args):
        raise LitVisionError("--seeds runs the command once per seed: drop it to print the config or the help.")
    if any(a == "--seed_everything" or a.startswith("--seed_everything=") for a in args):
        raise LitVisionError("--seeds and --seed_everything both set the seed: give one of them.")
    if subcommand == "fit" and any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in args):
        # 'last' would resume the previous seed's run from the second seed on.
        raise LitVisionError(
            "fit --seeds starts one new run per seed; --ckpt_path resumes one run. Resume each run on its own "
            "(lit-vision fit ... --ckpt_path FILE) or drop --ckpt_path."
        )
    records, code = run_seeds(subcommand, args, seeds, checkpoints=checkpoints_of_seeds(subcommand, args, seeds))
    records = [r for r in records if r.get("log_dir")]
    if records:
        result = summary.summarise(records, seeds[: len(records)])
        result["command"] = ["lit-vision", subcommand, *argv]
        folder = summary_folder(records)
        json_path, csv_path = summary.write(result, folder)
        print(summary.render(result), flush=True)
        console.say(f"{subcommand} over seeds {','.join(map(str, seeds[: len(records)]))}: summary in {json_path} and {csv_path}.")
    elif code == 0:
        console.say("--seeds: the runs wrote no logs (logger off), so there is nothing to sum up.")
    if code and len(records) < len(seeds):
        console.say(f"seed {seeds[len(records)]} did not finish (exit {code}); later seeds were not run.")
    return code
