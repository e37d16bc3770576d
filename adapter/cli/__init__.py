"""`charge-adapter`: the command line, one module per command family.

- `main`: the entry point (argument parser, `code FILES`) and the one place an `AdapterError`
  becomes an exit code and a line on stderr (`refuse`).
- `service`: `serve`, `replay`, `settings`, `health`; `replay`: the replay command's edge.
- `dead_letters`: the dead-letter worklist; `send`: the MLLP client.
"""
