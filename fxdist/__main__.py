import sys

from fxdist.cli import main

sys.exit(main())
