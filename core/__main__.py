"""``python -m core`` is the ``rankscope`` command."""
from core.cli import main

raise SystemExit(main())
