"""`python -m local` (what `make run` runs): the whole system on this machine."""

import sys

from local.system import main

sys.exit(main())
