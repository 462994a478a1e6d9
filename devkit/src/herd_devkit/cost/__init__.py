"""What an environment costs a month (`herd cost`, the cost line of `herd promote`).

`prices` loads the pinned price table, `model` is the arithmetic (pure), `inventory` reads
what an environment runs from a repository tree, rendered as the sync engine renders it.
Only the CLI imports this package, and only inside its commands: the operator never does.
"""
