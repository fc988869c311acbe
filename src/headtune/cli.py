"""The `headtune` command: a thin door onto `workflow.run`, `inference.predict`, `evaluation.evaluate`
and the architecture registry (`headtune models`).

Flags are generated from the config dataclasses, so a setting is named, typed and
documented once. Every failure ends in one line on stderr: exit 2 for bad input,
1 for a bug in headtune, 130 for Ctrl-C; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import types
import typing

from . import __version__
from .config import EVALUATE_SECTIONS, TRAIN_SECTIONS, EvaluateRun, PredictConfig, RunConfig
from .errors import HeadtuneError, flag

log = logging.getLogger("headtune")


COMMON_FLAGS = ("--debug", "-q", "--quiet")  # every command's own flags, given after the command


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage dump would make the error two lines
        raise HeadtuneError(f"{message} (see {self.prog} --help)")


def _field_type(hint):
    """int for `int | None`, list for `list[str] | None`, ..."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def add_config_flags(parser: argparse.ArgumentParser, config_cls, title: str, skip: tuple[str, ...] = ()) -> None:
    """One `--field-name` flag per dataclass field, its help text from the field's metadata."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        kind = _field_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        # SUPPRESS: an unset flag stays out of the namespace, so the dataclass keeps the only default
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata.get("help", "")}
        if kind is bool:  # a setting that is on by default gets --no-NAME to turn it off
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
            if default:
                kwargs["help"] += " (default: on)"
        else:
            # a field with its own parser (e.g. --lr: a number or "auto") gets the raw string; the dataclass parses
            kwargs["type"] = str if kind is list or "parse" in f.metadata else kind
            if default is not None:  # None means "see the help text", which says what happens instead
                kwargs["help"] += f" (default: {default})"
            kwargs["metavar"] = f.metadata.get("metavar", f.name.split("_")[-1].upper())
            for key in ("nargs", "choices"):
                if key in f.metadata:
                    kwargs[key] = f.metadata[key]
        group.add_argument(flag(f.name), **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="headtune", description="Head-only fine-tuning of frozen Transformer encoders for "
                                                  "text classification, with one cached backbone pass.")
    parser.add_argument("--version", action="version", version=f"headtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _Parser(add_help=False)  # every command's COMMON_FLAGS
    common.add_argument("--debug", action="store_true", help="Show full tracebacks and debug logs.")
    common.add_argument("-q", "--quiet", action="store_true", help="Log warnings and errors only.")

    train = sub.add_parser("train", parents=[common], help="Train the head and write model/, metrics.json, images/.",
                           description="Freeze the backbone, run it once over each split, train the head on the "
                                       "cached features (learning rate and epoch chosen on a validation split), and "
                                       "save a checkpoint that transformers loads.")
    train.add_argument("--config", metavar="FILE", help="A YAML or JSON file of train settings, keyed by the flag's "
                                                        "name with underscores (max_length: 256); flags given on the "
                                                        "command line win.")
    for section, config_cls in TRAIN_SECTIONS.items():
        add_config_flags(train, config_cls, f"{section} settings")

    predict = sub.add_parser("predict", parents=[common], help="Classify texts with a trained model; prints JSON.",
                             description="Print a JSON list with one object per text: {text, <label>_prob..., "
                                         "label} for two labels; {text, label, <label>_prob...} (most probable "
                                         "first) for more or with --top-k; {text, labels, <label>_prob...} for "
                                         "multi-label models. A text cut to --max-length gets \"truncated\": true.")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="Texts to classify; '-' reads stdin, one per line.")
    add_config_flags(predict, PredictConfig, "predict settings")

    evaluate = sub.add_parser("evaluate", parents=[common], help="Score a saved model on a labelled split; "
                                                                  "prints JSON.",
                              description="Print the metrics a run reports (accuracy, F1, per-class results, "
                                          "confusion matrix) for a saved sequence-classification folder on a split "
                                          "of --dataset, and write them with images/CONFUSION_MATRIX.png (and "
                                          "RELIABILITY.png for single-label models).")
    for section, config_cls in EVALUATE_SECTIONS.items():
        add_config_flags(evaluate, config_cls, f"{section} settings")

    sub.add_parser("models", parents=[common], help="List the architecture families headtune knows.",
                   description="The registered architecture families: model types, whether the one-pass "
                               "cached-feature path applies, the last-layer shortcut, and how each pooling is saved.")
    return parser


def read_config_file(path: str) -> dict:
    """Train settings from a YAML or JSON file: {setting: value}, keyed by the flag's name with underscores."""
    try:
        text = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        raise HeadtuneError(f"--config {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise HeadtuneError(f"cannot read --config {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        if path.lower().endswith(".json"):
            values = json.loads(text, object_pairs_hook=_unique_keys)
        else:
            values = _load_yaml(text)
    except Exception as err:  # yaml and json raise several types; all mean "not parseable"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HeadtuneError(f"--config {path} is not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                            f"{reason}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise HeadtuneError(f"--config {path} must map setting names to values (got a {type(values).__name__})")
    kinds = {name: _field_type(hint) for section in TRAIN_SECTIONS.values()
             for name, hint in typing.get_type_hints(section).items()}
    settings = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in kinds:
            raise HeadtuneError(f"unknown setting '{key}' in --config {path}; it takes train settings by their flag's "
                                f"name with underscores, e.g. max_length (see headtune train --help)")
        if name in settings:  # max-length and max_length: one setting written twice
            raise HeadtuneError(f"--config {path} sets '{name}' twice; keep one")
        settings[name] = _number(value, kinds[name])
    return settings


def _unique_keys(pairs: list) -> dict:
    """A JSON object or YAML mapping whose keys are distinct: a setting written twice is a mistake (which one
    was meant?), not a silent 'the last one wins'."""
    keys = [key for key, _ in pairs]
    twice = next((key for key in keys if keys.count(key) > 1), None)
    if twice is not None:
        raise ValueError(f"'{twice}' is set twice; keep one")
    return dict(pairs)


def _load_yaml(text: str):
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):  # the mapping's own keys (a merged `<<:` may be overridden)
            _unique_keys([(self.construct_object(k, deep=deep), None) for k, _ in node.value
                          if k.tag != "tag:yaml.org,2002:merge"])
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=Loader)


def _number(value, kind):
    """A number written as a string in a config file (YAML reads 1e-4 as a string) converted as its flag's
    string would be; anything else is left for the config's own check to accept or refuse."""
    if isinstance(value, str) and kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(value)
    return value


def _predict_texts(args: dict) -> tuple[list[str], str]:
    texts = args.pop("texts")
    source = args.pop("file", None)
    if source is not None and texts:
        raise HeadtuneError("give texts as arguments or with --file, not both")
    if source is None and texts == ["-"]:
        source = "-"
    if source is not None:
        from .inference import read_lines  # one reader for --file and the API's file=

        return read_lines(source), "line"
    if "-" in texts:
        raise HeadtuneError("'-' (read stdin) must be the only text argument")
    return texts, "text"


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("headtune: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    if debug:
        return
    # transformers' own load reports and progress bars would bury ours. A run whose features are cached never
    # imports transformers (~3 s): set what it reads at import, and only touch it here if it is already loaded.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()


class Terminated(KeyboardInterrupt):
    """`kill` (SIGTERM): stop as for Ctrl-C, with the same one line, and exit 143 as shells expect."""


def _on_sigterm(signum, frame):
    raise Terminated()


def console() -> None:
    """The `headtune` command and `python -m headtune`: main(), then end the process at once.

    By the time main returns, everything the command writes is closed (and fsynced where it matters). An ordinary
    exit would then tear down the interpreter and torch's C++ registrations, about 0.4 s on a 2-core CPU (a tenth
    of a warm train run) spent freeing memory that the operating system takes back whole anyway."""
    try:
        code = main()
    except KeyboardInterrupt as stop:  # a second Ctrl-C or SIGTERM while the first one's line was being written
        code = _stop_code(stop)
    for stream in (sys.stdout, sys.stderr):  # None under pythonw
        with contextlib.suppress(AttributeError, OSError, ValueError):  # a reader gone (`| head`), a stream closed
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    # main() may run many times in one process (tests, notebooks): leave the logger and handlers as found
    saved = log.handlers[:], log.level, log.propagate
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main_thread else None
    try:
        return _main(argv)
    finally:
        log.handlers[:], log.level, log.propagate = saved
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    command, cfg = None, None
    try:
        namespace, unknown = build_parser().parse_known_args(argv)
        if unknown:  # argparse would send the user to `headtune --help`, which lists no command's flags
            hint = "; flags go after the command" if any(a in COMMON_FLAGS for a in unknown) else ""
            raise HeadtuneError(f"unrecognized arguments: {' '.join(unknown)} "
                                f"(see headtune {namespace.command} --help{hint})")
        args = vars(namespace)
        command, debug, quiet = args.pop("command"), args.pop("debug"), args.pop("quiet")
        if command == "train":
            config_file = args.pop("config", None)
            settings = {**(read_config_file(config_file) if config_file else {}), **args}  # flags win
            cfg = RunConfig.from_flat(**settings)  # bad settings stop here, before anything slow is imported
        elif command == "evaluate":
            evaluation = EvaluateRun.from_flat(**args)
        _configure_logging(debug, quiet)
        if command in ("evaluate", "predict"):
            from .distributed import runs_alone

            if not runs_alone(command):
                return 0
        if command == "train":
            from .workflow import run

            run(cfg, config_file=config_file)
        elif command == "evaluate":
            from .evaluation import evaluate

            _print_json(evaluate(evaluation, frozenset(args)))
        elif command == "models":
            from .architectures import table

            sys.stdout.write(table() + "\n")
        else:
            from .inference import check_texts, predict

            texts, source = _predict_texts(args)
            _print_json(predict(check_texts(texts, source), **args))
        return 0
    except SystemExit as exit_:  # --help and --version
        return int(exit_.code or 0)
    except HeadtuneError as err:
        if debug_requested(argv):
            raise
        print(f"headtune: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # the reader of the JSON (`| head`) stopped reading: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except KeyboardInterrupt as stop:
        return _interrupted(command, cfg, stop)
    except Exception as err:  # a bug in headtune, not in the user's input
        stop = _interruption_behind(err)
        if stop is not None:  # Ctrl-C or SIGTERM inside a C extension's import, which re-raises it as ImportError
            return _interrupted(command, cfg, stop)
        if debug_requested(argv):
            raise
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"headtune: internal error: {type(err).__name__}: {reason} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _interrupted(command: str | None, cfg: RunConfig | None, stop: KeyboardInterrupt) -> int:
    """Say what the interruption left behind, in one line; the exit code."""
    print(f"headtune: {interrupted_message(command, cfg, isinstance(stop, Terminated))}", file=sys.stderr)
    return _stop_code(stop)


def _stop_code(stop: KeyboardInterrupt) -> int:
    """130 for Ctrl-C (SIGINT), 143 for SIGTERM, as shells report them."""
    return 143 if isinstance(stop, Terminated) else 130


def _interruption_behind(err: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM an exception stands for, if any: pybind11 modules (torch's among them) turn any exception
    raised while they initialise, a signal's included, into `ImportError: initialization failed`, with the signal's
    exception as its cause."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _print_json(value) -> None:
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        raise HeadtuneError("stdout is closed, so there is nowhere to print the JSON; redirect it to a file")
    try:
        json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()  # here, where a full disk (`> /dev/full`) is one line, not at exit
    except BrokenPipeError:
        raise
    except OSError as err:
        raise HeadtuneError(f"cannot write the JSON to stdout: {err.strerror or err}") from None


def interrupted_message(command: str | None, cfg: RunConfig | None, terminated: bool = False) -> str:
    """What Ctrl-C (or SIGTERM) left behind and how to go on, in one line."""
    stopped = "interrupted"
    if terminated:  # under a launcher, SIGTERM most often means another process failed: say so, not only "resume"
        from .distributed import stopped_by_launcher

        stopped = stopped_by_launcher() or stopped
    if command != "train" or cfg is None:
        return f"{stopped}; nothing was written"
    kept = ("nothing is kept (--no-cache): rerun the same command to start again" if cfg.features.no_cache else
            f"backbone features of the finished cache shards are kept in {cfg.features.cache_dir}: "
            f"rerun the same command to resume from them")
    return f"{stopped}; nothing was written to {cfg.output.output_dir}, and {kept}"


def debug_requested(argv: list[str] | None) -> bool:
    return "--debug" in (sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    console()
