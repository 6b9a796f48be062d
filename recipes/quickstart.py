#!/usr/bin/env python
"""The quickstart as a recipe: ``python recipes/quickstart.py [--ipc 10 --num_students 3
...]``.

Same as ``gift-hf quickstart``; accepts a YAML/JSON file of options as its only argument.
"""

import sys

from gift_hf.commands.quickstart import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
