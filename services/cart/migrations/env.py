from cart.adapters.orm import metadata
from chassis.migrations import run_env

run_env(metadata)
