"""``python -m app_db.cli``: the same as the ``app-db`` command."""

from app_db.cli import main

raise SystemExit(main())
