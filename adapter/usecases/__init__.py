"""Use cases: one module per thing the system does, each over the small store ports it needs.

- `review`: release a held encounter (re-code, or override), one transaction with its audit.
- `close_and_code`: the coder loop (lease what is due, code it, save it).
- `replay`, `replay_dry_run`: read stored messages again through the current mappings.
- `batch`: `charge-adapter code FILES` in memory, no store.
- `dead_letters`: the dead-letter worklist (list, raw, reprocess one after a fix).
- `context`: the one place a `CodingContext` is built.
- `ports`: what they need of the shell besides the store (counting, queueing DFTs).

They take ports and values, never an aiohttp request: the HTTP routes, the workbench and the
CLI are thin edges over them (tests/test_architecture.py keeps aiohttp and the edges out).
"""
