import sys

from console.bridges.exporters.runner import main

if __name__ == "__main__":
    sys.exit(main())
