"""`python3 -m benchmarks.device`: see benchmarks/device/script.py."""

import sys

from benchmarks.device.script import main

if __name__ == "__main__":
    sys.exit(main())
