from mllmcl.cli.main import main

raise SystemExit(main())
