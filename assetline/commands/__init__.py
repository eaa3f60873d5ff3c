"""The `assetline` subcommands, one module per command or command group; `assetline.cli` assembles them.

`_common` holds what they share: the consoles, the exit codes, the one error
line (`fail`), recipe loading and the preflight checks before assets run.
"""
