from chassis.migrations import run_env
from storefront.adapters.orm import metadata

run_env(metadata)
