import sys

from console.exporters.runner import main

if __name__ == "__main__":
    sys.exit(main())
