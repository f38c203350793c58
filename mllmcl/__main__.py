from mllmcl.cli import main

raise SystemExit(main())
