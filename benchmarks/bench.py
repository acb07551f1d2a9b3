"""The benchmarks ship inside the package (gradrev/tools/bench.py); this runs them from a clone.

python benchmarks/bench.py [--quick] [--json PATH]      (or: gradrev bench)
"""

import sys

from gradrev.tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
