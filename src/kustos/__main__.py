"""``python -m kustos``."""

from kustos.cli.main import main

raise SystemExit(main())
