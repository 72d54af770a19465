from cproxy.cli import main

raise SystemExit(main())
