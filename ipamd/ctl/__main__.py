import sys

from ipamd.ctl.cli import main

sys.exit(main())
