import sys

from fastconv.benchmark import main

sys.exit(main())
