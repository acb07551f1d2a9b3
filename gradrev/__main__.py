import sys

from gradrev.tools.cli import main

sys.exit(main())
