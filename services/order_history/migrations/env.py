from chassis.migrations import run_env
from order_history.adapters.orm import metadata

run_env(metadata)
