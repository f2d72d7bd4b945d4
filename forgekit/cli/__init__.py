"""The `forge` command line, and the parser the `%forge` magics share.

This package imports the library, never the reverse: the method commands are generated
from the method declarations (forgekit.methods.registry), `forge run` from the same ones.

    app.py       the parser, `main`, how results print
    options.py   option groups every method command shares (model, input, run control)
    methods.py   `forge <method>`, generated from each method's options declaration
    core.py      `forge models`, `forge config`
    evaluate.py  `forge dedup`, `forge diversity`, `forge merge`, `forge unify`
    decontaminate.py  `forge decontaminate`
    run.py       `forge run config.yaml`
    batch.py     `forge batch`
    runs.py      `forge runs`: background runs (list, follow, cancel, records)
"""

from forgekit.cli.app import (
    CommandContext,
    CommandParser,
    HelpShown,
    UsageError,
    build_parser,
    execute,
    main,
    parse,
    render,
)

__all__ = [
    "CommandContext",
    "CommandParser",
    "HelpShown",
    "UsageError",
    "build_parser",
    "execute",
    "main",
    "parse",
    "render",
]
