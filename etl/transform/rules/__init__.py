"""The transform's rules, one module each, run in this order by `etl.transform.events.transform_chunk`:

scope (the window and the shard select the rows) → filters → cells → names → identity → times → transaction →
money → params → items → privacy → consent → build.

Each is a vectorised `apply(ctx, …)` over the chunk's `RuleContext`: it adds reasons (reject or
filter) and counts, and returns the columns it produced. The order is the order of a reject's reasons
in rejects.ndjson (docs/ARCHITECTURE.md, "The rules").
"""
