"""`python -m bench` is the same as the `dynbench` console script."""
from bench.cli import main

raise SystemExit(main())
