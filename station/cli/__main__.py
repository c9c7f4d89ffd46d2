"""``python -m station.cli``: the same as the ``station`` command."""

from station.cli import main

main()
