import sys

from console.runner.wrapper import main

if __name__ == "__main__":
    sys.exit(main())
