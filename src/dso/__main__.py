"""`python -m dso` runs the CLI."""

from dso.cli.main import main

main()
