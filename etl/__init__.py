"""mpetl: send offline and historical conversions to GA4 through the Measurement Protocol, and prove
they arrived.

Stages (each a sub-package with one public surface): ``extract`` → ``transform`` → ``load`` →
``reconcile``; ``collector`` is the local MP endpoint with a GA4-export-shaped store. See
docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
