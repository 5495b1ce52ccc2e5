import sys

from streamgen.cli import main

sys.exit(main())
