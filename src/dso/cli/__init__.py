"""The `dso` command line: thin wrappers over the Python API."""
