"""rsvl: remote-sensing vision-language workflows (datasets, training, evaluation, promotion)."""

from rsvl.step_exit import install as _install_step_exit

__version__ = "0.1.0"

_install_step_exit()  # only in a KFP step's process: skip the ~2 s interpreter teardown after success
