from alpha.cli.main import main

raise SystemExit(main())
