import sys

from wasync.cli import main

sys.exit(main())
