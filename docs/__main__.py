"""`python -m docs`: rerun every command whose output the docs show, rewrite the blocks
(`--check`: only report the stale ones). See docs/build.py."""

import sys

from docs.build import main

sys.exit(main())
