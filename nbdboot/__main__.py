from nbdboot.cli import main

raise SystemExit(main())
