import sys

from console.clients.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
