"""Subcommands of the shopml console script: each has add_arguments(parser) and run(args)."""
