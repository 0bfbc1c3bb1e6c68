from chassis.migrations import run_env
from payments.adapters.orm import metadata

run_env(metadata)
