"""``python -m kiln`` is the ``kiln`` command."""

from kiln.cli.main import main

raise SystemExit(main())
