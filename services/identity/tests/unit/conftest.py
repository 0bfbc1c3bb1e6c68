import sys
from pathlib import Path

# pytest runs with --import-mode=importlib, which leaves test folders off sys.path; the
# fakes module is named after the service so it cannot shadow another service's.
sys.path.insert(0, str(Path(__file__).parent))
