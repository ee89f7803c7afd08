"""python -m odecore.experiments CHAPTER [--profile P] [--rerun] (see odecore.experiments)."""
import sys

from odecore.experiments import main

sys.exit(main())
