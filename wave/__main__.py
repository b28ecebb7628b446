from wave.cli import main

raise SystemExit(main())
