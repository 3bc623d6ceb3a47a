"""`python -m streams.cli`: the same program as the `contactflow` console script."""

from streams.cli import main

main()
