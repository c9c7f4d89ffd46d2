"""``python -m firmware_tools.cli``: the same as the ``fwtool`` command."""

from firmware_tools.cli import main

main()
