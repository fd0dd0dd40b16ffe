"""python -m saw_verl.integrations.openrlhf <train_ppo_ray flags> --algo.advantage.estimator saw_gdpo --saw.reward_keys a,b"""

import logging

from saw_verl.errors import SawInputError
from saw_verl.integrations.openrlhf.launcher import main

_console = logging.getLogger("saw_verl")
_console.setLevel(logging.INFO)
_console.addHandler(logging.StreamHandler())
try:
    main()
except SawInputError as error:  # a bad command line: the message, not a traceback (exit status 2, as argparse)
    _console.error("saw_verl: %s", error)
    raise SystemExit(2) from None
