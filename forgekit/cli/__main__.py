"""`python -m forgekit.cli ...` is `forge ...`."""

import sys

from forgekit.cli.app import main

sys.exit(main())
