import sys

from grokwatch.commands.main import main

sys.exit(main())
