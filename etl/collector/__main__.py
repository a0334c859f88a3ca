"""``python -m etl.collector``: the local MP endpoint as its own process (the same command as
``mpetl collector``; see etl/collector/cli.py)."""

from etl.collector.cli import collector

if __name__ == "__main__":
    collector(prog_name="python -m etl.collector")
