import sys

from qckit.cli import main

sys.exit(main())
