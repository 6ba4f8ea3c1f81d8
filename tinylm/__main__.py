"""`python -m tinylm` runs the command-line program."""

from tinylm.cli import main

main()
