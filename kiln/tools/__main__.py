"""`python -m kiln.tools ...`: the `kiln` command line without the console script."""

import sys

from kiln.tools.cli import main

sys.exit(main())
