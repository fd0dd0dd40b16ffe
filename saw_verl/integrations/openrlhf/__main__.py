"""python -m saw_verl.integrations.openrlhf <train_ppo_ray flags> --algo.advantage.estimator saw_gdpo --saw.reward_keys a,b"""

import logging

from saw_verl.integrations.openrlhf.launcher import main

_console = logging.getLogger("saw_verl")
_console.setLevel(logging.INFO)
_console.addHandler(logging.StreamHandler())
main()
