from legacy.migrate import run_env

run_env()
