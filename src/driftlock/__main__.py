import sys

from driftlock.cli import main

sys.exit(main())
