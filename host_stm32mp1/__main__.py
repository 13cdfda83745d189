import sys

from host_stm32mp1.cli import main

sys.exit(main())
