"""What the training commands share: the flags, --resume, --dry-run and --list-backbones."""

from __future__ import annotations

import argparse
import json

from kerasface.cli.common import add_debug_argument


def training_parser(description: str, tasks) -> argparse.ArgumentParser:
    """The parser of a command that trains ``tasks`` (names in ``kerasface.registry.TASKS``, the
    first the default): the shared flags (data, model, optimisation, runtime, run), ``--task``
    among them, then each task's own flags (``Task.add_arguments``)."""
    from kerasface.train.config import add_config_arguments
    from kerasface.train.tasks import task_class

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, list(tasks))
    for name in tasks:
        task_class(name).add_arguments(parser)
    return parser


def training_command(argv, command: str, description: str, defaults: dict | None = None,
                     demo_defaults: dict | None = None, add_arguments=None, after=None, tasks=None) -> int:
    """Parse the arguments of the training command named ``command`` (``defaults``: its own flat defaults,
    under a --config file and flags; ``demo_defaults`` on top of them when the run trains on the
    demo dataset, no --data given) and train, resume or dry-run. ``tasks``: the tasks it trains
    (default: ``defaults``' task), whose flags it offers; ``add_arguments(parser)`` adds the
    command's own flags (a flag named as a config field sets it); ``after(run_dir, args)`` runs
    after a run was trained or resumed."""
    from kerasface.train.config import DEFAULT_TASK, config_from_args

    tasks = list(tasks or [(defaults or {}).get("task") or DEFAULT_TASK])
    parser = training_parser(description, tasks)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="build the model for the dataset's outputs, print its summary and a JSON line of "
                             "parameter counts, exit")
    parser.add_argument("--list-backbones", action="store_true", help="print the registered backbones and exit")
    if add_arguments:
        add_arguments(parser)
    add_debug_argument(parser)
    args = parser.parse_args(argv)

    if args.list_backbones:
        from kerasface.models import list_backbones

        print("\n".join(list_backbones()))
        return 0
    from kerasface.train.run import dry_run, train

    if args.resume:
        run_dir = train(resume=args.resume, epochs=args.epochs, command=command)
    else:
        config = config_from_args(args, defaults, demo_defaults, tasks=tasks)
        if args.dry_run:
            print(json.dumps(dry_run(config)))
            return 0
        run_dir = train(config, command=command)
    if after:
        after(run_dir, args)
    return 0


def study_parser(description: str, task: str, study: str, compared: tuple[str, tuple] | None = None
                 ) -> argparse.ArgumentParser:
    """The parser of a command that runs several trainings of ``task`` (a study): the training
    flags, ``--resume-table DIR``, ``--debug`` and, with ``compared=("losses", names)``, a
    ``--losses`` list of what is compared (default ``names``)."""
    parser = training_parser(description, [task])
    parser.add_argument("--resume-table", metavar="DIR", help=f"a {study} folder to complete")
    if compared:
        flag, names = compared
        parser.add_argument(f"--{flag}", nargs="+", default=list(names),
                            help=f"{flag} to compare (default: {' '.join(names)})")
    add_debug_argument(parser)
    return parser
