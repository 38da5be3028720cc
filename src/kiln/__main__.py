"""``python -m kiln`` is the ``kiln`` command."""

from kiln.cli.main import main
from kiln.distributed.worker import exit_rank

code = main()
exit_rank(code)  # a torchrun rank other than 0 skips the interpreter's teardown (see there)
raise SystemExit(code)
