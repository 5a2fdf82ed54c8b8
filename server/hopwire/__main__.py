from hopwire.cli import main

raise SystemExit(main())
