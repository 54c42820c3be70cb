"""`python -m cli`: the `urbansense` command (what `run --workers` starts its ingest children with)."""

from cli.app import main

main()
