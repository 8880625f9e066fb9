"""Developer tooling that never ships to Lambda: the local stack, template helpers, the CLI."""
