import sys

from gradrev._cli import main

sys.exit(main())
