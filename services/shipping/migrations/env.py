from chassis.migrations import run_env
from shipping.adapters.orm import metadata

run_env(metadata)
