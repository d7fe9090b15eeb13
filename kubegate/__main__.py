from kubegate.cli import main

raise SystemExit(main())
