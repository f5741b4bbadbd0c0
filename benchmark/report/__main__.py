"""``python -m benchmark.report``: see ``benchmark.report.cli``."""

from benchmark.report.cli import main

raise SystemExit(main())
